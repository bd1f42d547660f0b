"""reasonsift.evaluation."""
