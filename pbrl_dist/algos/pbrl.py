"""PBRL, Algorithm 1 of Shen, Yang & Chen: projected gradient descent on F_λ(x, y) = f(x, π_y) + λ·penalty.

Each outer iteration k:
    1. oracle: π̂_k ≈ π*_{x_k} by T steps of an oracle on M_τ(x_k), warm-started from π̂_{k−1};
    2. estimate ∇F_λ by plugging π̂_k into the penalty gradient (value (C.31) or Bellman (C.34)),
       exactly (autograd through the model) or by Monte Carlo (REINFORCE rollouts);
    3. (x, y) ← Proj_Z((x, y) − α·∇̂F_λ)      (4.4).
The estimator is picked from ``ESTIMATORS`` by (penalty, estimator), never by branches in the math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pbrl_dist.algos.base import (
    COMMON_READS,
    MC_READS,
    ORACLE_READS,
    TABULAR_METRICS,
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
    tau_checks,
)
from pbrl_dist.algos.registry import AlgoSpec, register_algo
from pbrl_dist.cadence import due
from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.core.penalties import PENALTY_SURROGATES, bellman_surrogate_from_q
from pbrl_dist.metrics import MetricSink
from pbrl_dist.problems.base import BilevelProblem

# (gx, gy, penalty estimate, f) of F_λ at (x, y) given the oracle output π̂.
GradEstimate = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Estimator = Callable[..., GradEstimate]


def exact_grads(
    problem: BilevelProblem,
    x: torch.Tensor,
    y: torch.Tensor,
    pi_hat: torch.Tensor,
    cfg: MethodConfig,
    **_: Any,
) -> GradEstimate:
    """Return ∇F_λ with the penalty surrogate of ``cfg.penalty`` differentiated through the exact model.

    Math:
        ∇̂F_λ = ∇f(x, π_y) + λ·∇ŝ(x, y; π̂),  ŝ = the value or Bellman surrogate (``core.penalties``).
    """
    x_ = x.detach().requires_grad_(True)
    y_ = y.detach().requires_grad_(True)
    P_x, r_x = problem.lower_mdp(x_)
    f = problem.upper_objective(x_, y_)
    pen = PENALTY_SURROGATES[cfg.penalty](
        P_x, r_x, torch.softmax(y_, -1), pi_hat, problem.rho_S, problem.gamma, problem.tau
    )
    # Batched games are independent: summing their objectives keeps each game's gradient separate.
    gx, gy = torch.autograd.grad((f + cfg.lam * pen).sum(), (x_, y_))
    return gx, gy, pen.detach(), f.detach()


def mc_value_grads(
    problem: BilevelProblem,
    x: torch.Tensor,
    y: torch.Tensor,
    pi_hat: torch.Tensor,
    cfg: MethodConfig,
    *,
    runner: ChunkRunner,
    seed: int,
    k: int | str,
) -> GradEstimate:
    """Return the REINFORCE estimate of ∇F_λ for the value penalty (Lemma 7, (C.31)).

    Math:
        ĝ_x = ∇̂_x f + λ·(∇̂_x V_x(π̂) − ∇̂_x V_x(π_y)),   ĝ_y = ∇̂_y f − λ·∇̂_y V_x(π_y);
        two independent rollout batches: (π_x, π_y) and (π_x, π̂).
    """
    est = mc_pieces(runner, x, y, pi_hat, cfg, parts=("joint", "hat"), seed=seed, k=k)
    gx = est["gx_f"] + cfg.lam * (est["gx_v_hat"] - est["gx_v"])
    gy = est["gy_f"] - cfg.lam * est["gy_v"]
    f = problem.upper_objective(x, y).detach()
    return gx, gy, est["v_hat"] - est["v"], f


def mc_bellman_grads(
    problem: BilevelProblem,
    x: torch.Tensor,
    y: torch.Tensor,
    pi_hat: torch.Tensor,
    cfg: MethodConfig,
    *,
    runner: ChunkRunner,
    seed: int,
    k: int | str,
) -> GradEstimate:
    """Return the Monte Carlo estimate of ∇F_λ for the Bellman penalty (Lemma 9, (C.34)).

    Math:
        ĝ_x = ∇̂_x f + λ·Σ_s ρ(s)·⟨π̂(s) − π_y(s), ∇̂_x Q^π̂(s,·)⟩;
        ∂ĝ/∂π(s) = ρ(s)·(τ·(log π_y(s) + 1) − Q̂^π̂(s,·)), chained through the softmax of y.
        Q̂ and ∇̂_x Q̂ come from ``mc_q_batch`` rollouts started at every (s, b).
    """
    est = mc_pieces(runner, x, y, None, cfg, parts=("joint",), seed=seed, k=k)
    q_est = mc_pieces(
        runner, x, y, pi_hat, cfg, parts=("q_hat",), seed=seed, k=f"{k}/q",
        total=cfg.mc_q_batch, chunk=cfg.mc_q_batch,
    )  # fmt: skip
    rho, tau = problem.rho_S, problem.tau
    q_hat, gx_q = q_est["q_hat"], q_est["gx_q_hat"]
    sigma = torch.softmax(y, -1)
    gx = est["gx_f"] + cfg.lam * torch.einsum("s,sb,sbta->ta", rho, pi_hat - sigma, gx_q)
    # ∇_y of the Bellman surrogate with the Monte Carlo Q̂ plugged in (core/penalties.py, (C.34)).
    y_ = y.detach().requires_grad_(True)
    pen = bellman_surrogate_from_q(q_hat.detach(), torch.softmax(y_, -1), pi_hat, rho, tau)
    (gy_pen,) = torch.autograd.grad(pen, (y_,))
    gy = est["gy_f"] + cfg.lam * gy_pen
    pen = pen.detach()
    f = problem.upper_objective(x, y).detach()
    return gx, gy, pen, f


ESTIMATORS: dict[tuple[str, str], Estimator] = {
    ("value", "exact"): exact_grads,
    ("bellman", "exact"): exact_grads,
    ("value", "mc"): mc_value_grads,
    ("bellman", "mc"): mc_bellman_grads,
}


def run(
    problem: BilevelProblem,
    cfg: MethodConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: ChunkRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """Run Algorithm 1 for ``cfg.num_iters`` outer iterations and return the final iterate z_K.

    With ``ckpt``, the loop resumes from the last saved state and saves every ``ckpt.every`` iterations.
    """
    runner = default_runner(runner, problem)
    estimator = ESTIMATORS[(cfg.penalty, cfg.estimator)]
    # A runner may run the oracle elsewhere (the ray executor's oracle actors); same function, same numbers.
    oracle = runner.oracle(cfg.oracle)
    x0, y0 = problem.init_params(seed, cfg.init_scale)
    st = start_state(ckpt, {"x": x0, "y": y0, "oracle_logits": torch.zeros_like(y0), "row": {}})
    x, y, oracle_logits = st["x"], st["y"], st["oracle_logits"]
    row: dict[str, Any] = st["row"]
    for k in range(st["k"], cfg.num_iters):
        # --- lower level: oracle best response on M_τ(x_k) ---
        with torch.no_grad():
            P_x, r_x = problem.lower_mdp(x)
        start = oracle_logits if cfg.warm_start else torch.zeros_like(y)
        oracle_logits = oracle(
            P_x,
            r_x,
            problem.rho_S,
            problem.gamma,
            problem.tau,
            start,
            num_steps=cfg.oracle_steps,
            step_size=cfg.oracle_lr,
            tol=cfg.oracle_tol,
        )
        pi_hat = torch.softmax(oracle_logits, -1)

        # --- penalty + upper gradient, projected step (4.4) ---
        gx, gy, pen, f = estimator(problem, x, y, pi_hat, cfg, runner=runner, seed=seed, k=k)
        x = project(x - cfg.lr_x * gx, cfg.logit_bound)
        y = project(y - cfg.lr_y * gy, cfg.logit_bound)

        if due(k + 1, cfg.log_every, cfg.num_iters):
            row = {
                "iter": k + 1,
                **problem.metrics(x, y),
                f"penalty/{cfg.penalty}": pen.tolist(),
                "upper/objective": (f + cfg.lam * pen).tolist(),
            }
            sink.log(row)
        maybe_checkpoint(
            ckpt, k + 1, cfg.num_iters, {"x": x, "y": y, "oracle_logits": oracle_logits, "row": row}
        )
    return Result(x=x, y=y, metrics=row, final_state=problem.final_state(x, y))


_READS_VALUE = estimator_reads(COMMON_READS | ORACLE_READS | {"penalty"})
_READS_BELLMAN = estimator_reads(
    COMMON_READS | ORACLE_READS | {"penalty"}, MC_READS | {"mc_q_batch"}
)


def _reads(cfg: Any) -> frozenset[str]:
    """The method fields this loop reads: the Q̂ rollouts (``mc_q_batch``) only for the Monte Carlo
    Bellman penalty."""
    return (_READS_BELLMAN if cfg.penalty == "bellman" else _READS_VALUE)(cfg)


register_algo(
    AlgoSpec(
        name="pbrl",
        run=run,
        schema=MethodConfig,
        reads=_reads,
        settable=MC_READS | {"mc_q_batch"},
        choices={
            "penalty": tuple(dict.fromkeys(p for p, _ in ESTIMATORS)),
            "estimator": tuple(dict.fromkeys(e for _, e in ESTIMATORS)),
            "oracle": tuple(ORACLES),
        },
        metrics=TABULAR_METRICS,
        checks=lambda cfg: tau_checks(cfg, bellman=True),
        batchable=lambda cfg: cfg.estimator == "exact",  # Monte Carlo estimates are per game
    )
)
