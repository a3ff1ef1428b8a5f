"""pbrl_dist."""
