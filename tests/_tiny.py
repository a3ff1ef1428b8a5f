"""The tiny sweep file many tests start from: one PBRL trial on a 4-state Stackelberg game.

40 exact iterations, a checkpoint every 10, W&B off; ``tiny_sweep_file`` writes it with the seeds and the
W&B mode a test asks for. Importable from any test (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pbrl_dist.problems.stackelberg import StackelbergProblem

TINY = """\
name: tiny
problem:
  name: stackelberg
  num_states: 4
  num_leader_actions: 3
  num_follower_actions: 3
  sparsity: 0.5
  gamma: 0.8
  tau: 0.2
method:
  name: pbrl_value
  algo: pbrl
  penalty: value
  estimator: exact
  oracle: exact
  lam: 20.0
  lr_x: 0.1
  lr_y: 0.1
  num_iters: 40
  log_every: 10
  mc_batch: 32
  mc_chunk: 16
  mc_horizon: 8
dist:
  checkpoint_every: 10
logging:
  wandb: disabled
  progress_every_s: 1000
sweep:
  seeds: [0]
"""


def tiny_sweep_file(where: Path, *, seeds: str = "[0]", wandb: str = "disabled") -> Path:
    """Write ``where/tiny.yaml`` with these seeds (a YAML list) and W&B mode; return its path."""
    path = where / "tiny.yaml"
    text = TINY.replace("seeds: [0]", f"seeds: {seeds}").replace(
        "wandb: disabled", f"wandb: {wandb}"
    )
    path.write_text(text, encoding="utf-8")
    return path


def small_stackelberg(game: int = 1) -> StackelbergProblem:
    """The 5-state, 3 × 3-action Stackelberg game (sparsity 0.5, γ 0.8, τ 0.2) of the algorithm tests."""
    from pbrl_dist.problems.stackelberg import StackelbergProblem, make_game

    return StackelbergProblem(
        make_game(
            num_states=5,
            num_leader_actions=3,
            num_follower_actions=3,
            sparsity=0.5,
            gamma=0.8,
            tau=0.2,
            game=game,
        )
    )


ONE_TRIAL = """\
name: tiny
problem: {name: stackelberg, num_states: 4, num_leader_actions: 3, num_follower_actions: 3}
method: {name: pbrl_value, algo: pbrl, lam: 20.0, num_iters: 4, log_every: 2}
logging: {wandb: disabled}
sweep: {seeds: [0]}
"""
"""A one-trial sweep file (4 iterations, W&B off), for the tests of what a launch does around its trial."""
