"""Structured configs and loading: schema ⊕ sweep YAML ⊕ CLI dotlist → validated trial configs."""

from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec, load_sweep

__all__ = ["ConfigError", "Sweep", "TrialSpec", "load_sweep"]
