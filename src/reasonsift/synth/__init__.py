"""reasonsift.synth."""
