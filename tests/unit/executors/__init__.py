"""Tests of pbrl_dist.executors (a package, so module names stay unique across test folders)."""
