"""Independent policy gradient baseline (Daskalakis et al. 2020; Ding et al. 2022; MATH.md §7.1).

Each step, simultaneously and myopically: the upper player descends f, the lower player ascends its own
regularized value, ignoring the other's response:

    x ← Proj(x − α_x·∇_x f(x, π_y)),     y ← Proj(y + α_y·∇_y V_{M_τ(x)}(π_y)).
"""

from __future__ import annotations

import torch

from pbrl_dist.algos.base import (
    COMMON_READS,
    MC_READS,
    Checkpointer,
    ChunkRunner,
    MethodConfig,
    Result,
    default_runner,
    estimator_reads,
    maybe_checkpoint,
    mc_pieces,
    project,
    start_state,
)
from pbrl_dist.algos.registry import AlgoSpec, register_algo
from pbrl_dist.cadence import due
from pbrl_dist.core.mdp import evaluate_policy, expected_value
from pbrl_dist.metrics import MetricSink
from pbrl_dist.problems.base import BilevelProblem


def _exact_grads(
    problem: BilevelProblem, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x_ = x.detach().requires_grad_(True)
    y_ = y.detach().requires_grad_(True)
    f = problem.upper_objective(x_, y).sum()
    # f need not depend on x (reward shaping: f = −V_{M_0}(π_y)); then ∇_x f = 0.
    gx = torch.autograd.grad(f, (x_,))[0] if f.requires_grad else torch.zeros_like(x)
    P_x, r_x = problem.lower_mdp(x.detach())
    v, _ = evaluate_policy(P_x, r_x, torch.softmax(y_, -1), problem.gamma, problem.tau)
    (gv,) = torch.autograd.grad(expected_value(v, problem.rho_S).sum(), (y_,))
    return gx, -gv


def run(
    problem: BilevelProblem,
    cfg: MethodConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: ChunkRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """Run ``cfg.num_iters`` simultaneous gradient steps and return the final iterate (resumable)."""
    runner = default_runner(runner, problem)
    x0, y0 = problem.init_params(seed, cfg.init_scale)
    st = start_state(ckpt, {"x": x0, "y": y0, "row": {}})
    x, y, row = st["x"], st["y"], st["row"]
    for k in range(st["k"], cfg.num_iters):
        if cfg.estimator == "exact":
            gx, gy = _exact_grads(problem, x, y)
        else:
            est = mc_pieces(runner, x, y, None, cfg, parts=("joint",), seed=seed, k=k)
            gx, gy = est["gx_f"], -est["gy_v"]
        x = project(x - cfg.lr_x * gx, cfg.logit_bound)
        y = project(y - cfg.lr_y * gy, cfg.logit_bound)
        if due(k + 1, cfg.log_every, cfg.num_iters):
            row = {"iter": k + 1, **problem.metrics(x, y)}
            sink.log(row)
        maybe_checkpoint(ckpt, k + 1, cfg.num_iters, {"x": x, "y": y, "row": row})
    return Result(x=x, y=y, metrics=row, final_state=problem.final_state(x, y))


ESTIMATORS = ("exact", "mc")
"""``method.estimator`` values: autograd through the model, or REINFORCE rollouts (``mc_pieces``)."""

register_algo(
    AlgoSpec(
        name="indep_pg",
        run=run,
        schema=MethodConfig,
        reads=estimator_reads(COMMON_READS),
        settable=MC_READS,
        choices={"estimator": ESTIMATORS},
        metrics=(),  # the problem's own metrics only
        batchable=lambda cfg: cfg.estimator == "exact",  # Monte Carlo estimates are per game
    )
)
