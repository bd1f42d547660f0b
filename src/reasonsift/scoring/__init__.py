"""Scoring: early-token losses of a pool under seeded weight perturbations (TEMP stage A/B)."""
