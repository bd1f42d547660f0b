"""reasonsift.training."""
