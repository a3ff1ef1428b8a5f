"""Incentive design loops: PBRL with the Nikaido–Isoda penalty, the meta-gradient baseline, the start line.

All three share the problem ``problems.incentive.IncentiveProblem`` (x = incentive logits, θ1, θ2 = the
players' softmax logits) and log the same exact metrics, so Figure 3 compares like with like.
"""

from __future__ import annotations

from typing import Any

import torch

from pbrl_dist.algos.base import (
    COMMON_READS,
    MC_READS,
    ORACLE_READS,
    Checkpointer,
    ChunkRunner,
    MethodConfig,
    Result,
    default_runner,
    estimator_reads,
    maybe_checkpoint,
    mc_pieces,
    project,
    solve_oracles,
    start_state,
    tau_checks,
)
from pbrl_dist.algos.registry import AlgoSpec, register_algo
from pbrl_dist.cadence import due
from pbrl_dist.core.mdp import expected_value
from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.core.zerosum import (
    induced_mdp_player1,
    induced_mdp_player2,
    joint_evaluate,
    nash_equilibrium,
    ni_surrogate,
)
from pbrl_dist.executors.protocols import OracleRequest
from pbrl_dist.metrics import MetricSink
from pbrl_dist.problems.incentive import IncentiveProblem, designer_return

NIGrads = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def ni_exact_grads(
    problem: IncentiveProblem,
    x: torch.Tensor,
    th1: torch.Tensor,
    th2: torch.Tensor,
    pi_hats: tuple[torch.Tensor, torch.Tensor],
    cfg: MethodConfig,
    **_: Any,
) -> NIGrads:
    """Return (∇_x, ∇_θ1, ∇_θ2) of f + λ·ψ̂ by autograd through the exact model, and ψ̂."""
    g = problem.game
    x_, t1, t2 = (v.detach().requires_grad_(True) for v in (x, th1, th2))
    f = problem.upper_objective(x_, t1, t2)
    psi = ni_surrogate(
        g.P_SABS, problem.reward(x_), torch.softmax(t1, -1), torch.softmax(t2, -1),
        pi_hats[0], pi_hats[1], g.rho_S, g.gamma, g.tau,
    )  # fmt: skip
    gx, g1, g2 = torch.autograd.grad(f + cfg.lam * psi, (x_, t1, t2))
    return gx, g1, g2, psi.detach()


def ni_mc_grads(
    problem: IncentiveProblem,
    x: torch.Tensor,
    th1: torch.Tensor,
    th2: torch.Tensor,
    pi_hats: tuple[torch.Tensor, torch.Tensor],
    cfg: MethodConfig,
    *,
    runner: ChunkRunner,
    seed: int,
    k: int,
) -> NIGrads:
    """Return the REINFORCE estimate of (5.12) plus ∇f (three rollout batches; ∇c exact).

    Math:
        ĝ_x = ∇c(x) + λ·(∇̂_x V(π̂1, π2) − ∇̂_x V(π1, π̂2)),  ĝ_θ1 = −∇̂_θ1 V^d − λ·∇̂_θ1 V(π1, π̂2),
        ĝ_θ2 = −∇̂_θ2 V^d + λ·∇̂_θ2 V(π̂1, π2).
    """
    y, pi_hat = torch.cat([th1, th2], -1), torch.cat(pi_hats, -1)
    est = mc_pieces(runner, x, y, pi_hat, cfg, parts=("ni", "designer"), seed=seed, k=k)
    sig = torch.sigmoid(x)
    gx = problem.game.cost_coef * sig * (1 - sig) + cfg.lam * (est["gx_v1"] - est["gx_v2"])
    g1 = est["g1_f"] - cfg.lam * est["g1_v2"]
    g2 = est["g2_f"] + cfg.lam * est["g2_v1"]
    return gx, g1, g2, est["v1"] - est["v2"]


NI_ESTIMATORS = {"exact": ni_exact_grads, "mc": ni_mc_grads}


def run_pbrl_ni(
    problem: IncentiveProblem,
    cfg: MethodConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: ChunkRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """PBRL with the NI penalty, (5.12)-(5.13).

    Math:
        π̂1 ≈ π1*(x, π2), π̂2 ≈ π2*(x, π1) by two independent warm-started oracles;
        (x, θ) ← Proj((x, θ) − α·(∇f + λ·∇ψ̂)),  ψ̂ = V_x(π̂1, π2) − V_x(π1, π̂2)   (Lemma 12(a)).
    """
    runner = default_runner(runner, problem)
    g = problem.game
    x0, a0, b0 = problem.init_params(seed, cfg.init_scale)
    st = start_state(
        ckpt,
        {
            "x": x0,
            "th1": a0,
            "th2": b0,
            "br1": torch.zeros_like(a0),
            "br2": torch.zeros_like(b0),
            "row": {},
        },
    )
    x, th1, th2, br1, br2, row = st["x"], st["th1"], st["th2"], st["br1"], st["br2"], st["row"]
    for k in range(st["k"], cfg.num_iters):
        # --- lower level: the two best responses, independent oracle calls (parallel on oracle actors) ---
        with torch.no_grad():
            r_x = problem.reward(x)
            P1, r1 = induced_mdp_player1(g.P_SABS, r_x, torch.softmax(th2, -1), g.tau)
            P2, r2 = induced_mdp_player2(g.P_SABS, r_x, torch.softmax(th1, -1), g.tau)
        kw = dict(num_steps=cfg.oracle_steps, step_size=cfg.oracle_lr, tol=cfg.oracle_tol)
        start1 = br1 if cfg.warm_start else torch.zeros_like(br1)
        start2 = br2 if cfg.warm_start else torch.zeros_like(br2)
        br1, br2 = solve_oracles(
            runner,
            [
                OracleRequest(cfg.oracle, P1, r1, g.rho_S, g.gamma, g.tau, start1, kw),
                OracleRequest(cfg.oracle, P2, r2, g.rho_S, g.gamma, g.tau, start2, kw),
            ],
        )

        # --- penalized upper step (5.13) ---
        pi_hats = (torch.softmax(br1, -1), torch.softmax(br2, -1))
        gx, g1, g2, psi = NI_ESTIMATORS[cfg.estimator](
            problem,
            x,
            th1,
            th2,
            pi_hats,
            cfg,
            runner=runner,
            seed=seed,
            k=k,
        )
        x = project(x - cfg.lr_x * gx, cfg.logit_bound)
        th1 = project(th1 - cfg.lr_y * g1, cfg.logit_bound)
        th2 = project(th2 - cfg.lr_y * g2, cfg.logit_bound)

        if due(k + 1, cfg.log_every, cfg.num_iters):
            row = {"iter": k + 1, **problem.metrics(x, th1, th2), "penalty/ni": float(psi.detach())}
            sink.log(row)
        state = {"x": x, "th1": th1, "th2": th2, "br1": br1, "br2": br2, "row": row}
        maybe_checkpoint(ckpt, k + 1, cfg.num_iters, state)
    return Result(
        x=x, y=torch.cat([th1, th2], -1), metrics=row, final_state=problem.final_state(x, th1, th2)
    )


def metagrad_step(
    problem: IncentiveProblem, x: torch.Tensor, th1: torch.Tensor, th2: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One meta-gradient step: the players' PG update and the designer's gradient through it.

    Math:
        θ1' = θ1 + β·∇_θ1 V_x(θ),  θ2' = θ2 − β·∇_θ2 V_x(θ);   g_x = d/dx [V^d(θ'(x)) − c(x)]
        (Yang et al. 2021, tabular adaptation, MATH.md §7.3; exact, by double backpropagation).

    Returns:
        (g_x, θ1', θ2', V^d(θ')) with g_x an ascent direction for the designer.
    """
    g = problem.game
    x_, t1, t2 = (v.detach().requires_grad_(True) for v in (x, th1, th2))
    v, _ = joint_evaluate(
        g.P_SABS, problem.reward(x_), torch.softmax(t1, -1), torch.softmax(t2, -1), g.gamma, g.tau
    )
    g1, g2 = torch.autograd.grad(expected_value(v, g.rho_S), (t1, t2), create_graph=True)
    t1n, t2n = t1 + beta * g1, t2 - beta * g2
    vd = designer_return(g, torch.softmax(t1n, -1), torch.softmax(t2n, -1))
    obj = vd - g.cost_coef * torch.sigmoid(x_).sum()
    (gx,) = torch.autograd.grad(obj, x_)
    return gx, t1n.detach(), t2n.detach(), vd.detach()


def run_metagrad(
    problem: IncentiveProblem,
    cfg: MethodConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: ChunkRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """Meta-gradient incentive design: designer ascent through the players' one-step PG update (β = lr_y)."""
    del runner
    x0, a0, b0 = problem.init_params(seed, cfg.init_scale)
    st = start_state(ckpt, {"x": x0, "th1": a0, "th2": b0, "row": {}})
    x, th1, th2, row = st["x"], st["th1"], st["th2"], st["row"]
    for k in range(st["k"], cfg.num_iters):
        gx, th1, th2, _ = metagrad_step(problem, x, th1, th2, cfg.lr_y)
        x = project(x + cfg.lr_x * gx, cfg.logit_bound)
        th1, th2 = project(th1, cfg.logit_bound), project(th2, cfg.logit_bound)
        if due(k + 1, cfg.log_every, cfg.num_iters):
            row = {"iter": k + 1, **problem.metrics(x, th1, th2)}
            sink.log(row)
        maybe_checkpoint(ckpt, k + 1, cfg.num_iters, {"x": x, "th1": th1, "th2": th2, "row": row})
    return Result(
        x=x, y=torch.cat([th1, th2], -1), metrics=row, final_state=problem.final_state(x, th1, th2)
    )


def run_start_line(
    problem: IncentiveProblem,
    cfg: MethodConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: ChunkRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """No incentive design: x stays at its start and the players sit at the regularized Nash equilibrium.

    A constant incentive shifts every reward equally and does not change the equilibrium, so this is the
    designer's return without incentive design; it is logged at every log step as a flat line.
    """
    del runner, ckpt
    g = problem.game
    x, _, _ = problem.init_params(seed, cfg.init_scale)
    ne = nash_equilibrium(g.P_SABS, problem.reward(x), g.gamma, g.tau)
    th1, th2 = torch.log(ne.pi1_SA), torch.log(ne.pi2_SB)
    m = problem.metrics(x, th1, th2)
    row: dict[str, Any] = {}
    for k_done in range(cfg.log_every, cfg.num_iters + cfg.log_every, cfg.log_every):
        row = {"iter": min(k_done, cfg.num_iters), **m}
        sink.log(row)
    return Result(
        x=x, y=torch.cat([th1, th2], -1), metrics=row, final_state=problem.final_state(x, th1, th2)
    )


_NI_METRICS = ("penalty/ni",)  # what run_pbrl_ni adds to the problem's metrics
register_algo(
    AlgoSpec(
        name="pbrl_ni",
        run=run_pbrl_ni,
        schema=MethodConfig,
        reads=estimator_reads(COMMON_READS | ORACLE_READS),
        settable=MC_READS,
        choices={"estimator": tuple(NI_ESTIMATORS), "oracle": tuple(ORACLES)},
        metrics=_NI_METRICS,
        checks=lambda cfg: tau_checks(cfg, bellman=False),
    )
)
register_algo(
    AlgoSpec(
        name="metagrad",
        run=run_metagrad,
        schema=MethodConfig,
        reads=COMMON_READS,
        metrics=(),
    )
)
register_algo(
    AlgoSpec(
        name="start_line",
        run=run_start_line,
        schema=MethodConfig,
        reads=frozenset({"num_iters", "log_every", "init_scale"}),
        metrics=(),
    )
)
