"""Scale out: run a stage's work units on a Ray cluster (docs/scaling.md)."""
