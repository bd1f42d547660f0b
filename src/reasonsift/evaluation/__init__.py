"""reasonsift.evaluation: answer extraction and equivalence, benchmark loading, pass@k metrics."""
