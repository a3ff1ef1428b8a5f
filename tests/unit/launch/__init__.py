"""Tests of pbrl_dist.launch (a package: tests/integration has a test_wandb_sink.py too)."""
