"""The tiny deep-RLHF config the loop's tests start from: the toy gridworld, ≈ 1 s per run.

Importable from any test (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from pbrl_dist.problems.rlhf import ToyRLHFConfig
from pbrl_dist.rlhf import RLHFConfig

ROOT = Path(__file__).resolve().parents[1]
TOY_SWEEP = ROOT / "sweeps" / "rlhf_toy.yaml"
FIG2 = ROOT / "sweeps" / "fig2_atari_rlhf.yaml"

# A toy config small enough for ≈ 1 s per run that still exercises every piece (labelling events,
# reward epochs, the oracle, the upper term, several log rows).
TINY = RLHFConfig(
    total_env_steps=1600,
    lr=5e-3,
    clip_true_reward=False,
    rm_dropout=0.3,
    initial_pairs=16,
    initial_rollout_steps=40,
    warmup_epochs=2,
    pairs_per_epoch=4,
    rm_every=4,
    rm_batch_size=8,
    buffer_size=48,
    segment_length=10,
    pair_window_steps=20,
    upper_coef_decay_every=20,
    log_every_steps=200,
)
TOY = ToyRLHFConfig(num_envs=4, episode_length=30)
