"""reasonsift.selection."""
