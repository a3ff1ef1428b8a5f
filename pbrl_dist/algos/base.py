"""What the tabular outer loops share: the method config, the result, projection, Monte Carlo chunking."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from pbrl_dist.cadence import due
from pbrl_dist.core.types import derive_seed
from pbrl_dist.executors.protocols import Chunk, ChunkRunner, McRequest, OracleRequest

MC_FIELDS = ("mc_batch", "mc_horizon", "mc_q_batch", "mc_chunk")


@dataclass
class MethodConfig:
    """Hyperparameters of a tabular method (``algo`` picks the loop; unused fields are ignored by it).

    Attributes:
        name: the method's label in results and figures (e.g. ``pbrl_value``).
        algo: ``pbrl`` (Algorithm 1) or ``indep_pg`` (independent policy gradient baseline).
        penalty: ``value`` or ``bellman`` (PBRL only).
        estimator: ``exact`` (autograd through the model) or ``mc`` (REINFORCE rollouts).
        oracle: ``exact`` (soft policy iteration), ``vi`` (soft value iteration), ``pmd`` or ``pg``.
        oracle_steps: T, the oracle's steps per outer iteration (a cap for ``exact``/``vi``).
        oracle_lr: η (PMD) or β (PG) of the oracle.
        oracle_tol: early-stop tolerance of the oracle.
        warm_start: start each oracle call from the previous output (else from uniform).
        lam: penalty constant λ ≥ 0.
        lr_x: step size α on x.
        lr_y: step size on y.
        num_iters: K, outer iterations.
        log_every: metrics are computed and logged every this many iterations (and at the end).
        logit_bound: Proj_Z is the box [−bound, bound] on every logit (compact convex X × Y).
        init_scale: x, y ~ init_scale·N(0, 1) from the trial seed.
        mc_batch: N, rollouts per Monte Carlo estimate.
        mc_horizon: H, rollout length.
        mc_q_batch: rollouts per (s, b) pair for Monte Carlo Q estimates (Bellman penalty).
        mc_chunk: rollouts per work unit; fixed, so results do not depend on the worker count.
    """

    name: str = "pbrl_value"
    algo: str = "pbrl"
    penalty: str = "value"
    estimator: str = "exact"
    oracle: str = "exact"
    oracle_steps: int = 50
    oracle_lr: float = 1.0
    oracle_tol: float = 1e-10
    warm_start: bool = True
    lam: float = 20.0
    lr_x: float = 0.125
    lr_y: float = 0.125
    num_iters: int = 2000
    log_every: int = 20
    logit_bound: float = 50.0
    init_scale: float = 0.5
    mc_batch: int = 32
    mc_horizon: int = 10
    mc_q_batch: int = 8
    mc_chunk: int = 16

    def outer_iters(self, problem_cfg: Any) -> int:
        """A trial's outer iterations: ``num_iters``, whatever the problem."""
        del problem_cfg
        return self.num_iters

    def checks(self) -> list[tuple[str, bool, str]]:
        """(dotted key, ok, message) for every range rule of this config (the loader reports the
        first that fails; allowed values of ``penalty``/``estimator``/``oracle`` are each loop's
        ``AlgoSpec.choices``)."""
        m = "method."
        return [
            (m + "lam", self.lam >= 0, "must be ≥ 0"),
            (m + "lr_x", self.lr_x > 0, "must be > 0"),
            (m + "lr_y", self.lr_y > 0, "must be > 0"),
            (m + "num_iters", self.num_iters > 0, "must be a positive integer"),
            (m + "log_every", self.log_every > 0, "must be > 0"),
            (m + "oracle_steps", self.oracle_steps > 0, "must be > 0"),
            (m + "oracle_lr", self.oracle_lr > 0, "must be > 0"),
            (m + "logit_bound", self.logit_bound > 0, "must be > 0"),
            (m + "init_scale", self.init_scale >= 0, "must be ≥ 0"),
            *((m + k, getattr(self, k) > 0, "must be > 0") for k in MC_FIELDS),
        ]


def outer_iters(cfg: Any) -> int:
    """Return a trial's number of outer iterations (``iter`` of its last metrics row and checkpoint).

    Every method schema says (``algos.registry.MethodCfg.outer_iters``): ``method.num_iters`` for the
    tabular loops; deep RLHF's A2C updates = env-step budget / batch.
    """
    return int(cfg.method.outer_iters(cfg.problem))


@dataclass
class Result:
    """Final parameters and metrics of one run (``x``/``y`` are None where the upper variable is a
    network, as in deep RLHF)."""

    x: torch.Tensor | None
    y: torch.Tensor | None
    metrics: dict[str, Any]
    final_state: dict[str, np.ndarray] = field(default_factory=dict)


class Checkpointer(Protocol):
    """Saves and restores a loop's whole state (the Tune trainable implements it with ``tune.Checkpoint``).

    The tabular loops have no hidden state: every Monte Carlo draw is seeded by (trial seed, iteration,
    chunk), so the state dict ``{"k", "x", "y", ...}`` is all a resumed run needs to continue bitwise.
    """

    every: int

    def restore(self) -> dict[str, Any] | None:
        """Return the last saved state, or None for a fresh start."""
        ...

    def save(self, state: dict[str, Any]) -> None:
        """Persist ``state`` (called after iteration ``state["k"]``)."""
        ...


def start_state(ckpt: Checkpointer | None, fresh: dict[str, Any]) -> dict[str, Any]:
    """Return the checkpointed state if there is one, else ``fresh`` (with ``k = 0``)."""
    restored = ckpt.restore() if ckpt is not None else None
    return dict(restored) if restored is not None else {"k": 0, **fresh}


def maybe_checkpoint(
    ckpt: Checkpointer | None, k_done: int, num_iters: int, state: dict[str, Any]
) -> None:
    """Save after every ``ckpt.every`` iterations and at the end."""
    if ckpt is not None and due(k_done, ckpt.every, num_iters):
        ckpt.save({"k": k_done, **state})


def mc_estimate(
    runner: ChunkRunner,
    x: torch.Tensor,
    y: torch.Tensor,
    pi_hat_SA: torch.Tensor | None,
    *,
    parts: tuple[str, ...],
    total: int,
    chunk: int,
    horizon: int,
    seed: int,
    k: int | str,
) -> dict[str, Any]:
    """Split ``total`` rollouts into fixed chunks, run them, and average the pieces (weights n_c / N).

    The chunk boundaries and seeds depend only on (seed, k, total, chunk), and the sum is taken in chunk
    order, so the estimate is bitwise the same whatever runs the chunks.
    """
    num = math.ceil(total / chunk)
    chunks = tuple(
        Chunk(min(chunk, total - i * chunk), derive_seed(seed, "mc", k, i)) for i in range(num)
    )
    outs = runner.run_chunks(McRequest(x, y, pi_hat_SA, parts, chunks, horizon))
    acc: dict[str, Any] = {}
    for c, out in zip(chunks, outs, strict=True):
        w = c.rollouts / total
        for key, val in out.items():
            acc[key] = acc[key] + val * w if key in acc else val * w
    return acc


def mc_pieces(
    runner: ChunkRunner,
    x: torch.Tensor,
    y: torch.Tensor,
    pi_hat_SA: torch.Tensor | None,
    cfg: MethodConfig,
    *,
    parts: tuple[str, ...],
    seed: int,
    k: int | str,
    total: int | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """``mc_estimate`` with the method's batch, chunk and horizon (``total``/``chunk`` override them)."""
    return mc_estimate(
        runner,
        x,
        y,
        pi_hat_SA,
        parts=parts,
        total=cfg.mc_batch if total is None else total,
        chunk=cfg.mc_chunk if chunk is None else chunk,
        horizon=cfg.mc_horizon,
        seed=seed,
        k=k,
    )


def solve_oracles(runner: ChunkRunner, requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
    """Run independent oracle solves on the runner.

    The ray runner with oracle actors runs them in parallel; the local one runs them here, one after the
    other. Both call the same ``core.oracles.ORACLES`` functions, so the numbers agree.
    """
    return list(runner.solve_many(requests))


def default_runner(runner: ChunkRunner | None, problem: Any) -> ChunkRunner:
    """Return ``runner``, or a ``LocalChunkRunner`` over ``problem`` (loops called without a runner)."""
    if runner is not None:
        return runner
    from pbrl_dist.executors.local import LocalChunkRunner

    return LocalChunkRunner(problem)


def project(z: torch.Tensor, bound: float) -> torch.Tensor:
    """Return Proj_Z(z) for the box Z = [−bound, bound]^d."""
    return z.clamp(-bound, bound)


COMMON_READS = frozenset({"num_iters", "log_every", "init_scale", "lr_x", "lr_y", "logit_bound"})
"""``MethodConfig`` fields every tabular loop reads (besides ``name`` and ``algo``)."""
MC_READS = frozenset({"mc_batch", "mc_chunk", "mc_horizon"})
"""Fields a tabular loop reads only with ``method.estimator: mc`` (an exact gradient draws no rollouts,
so a grid axis over them multiplies only the Monte Carlo methods). A sweep may still set them for an
exact method (``AlgoSpec.settable``): one file sets them once and switches ``estimator``."""


def estimator_reads(
    always: frozenset[str], mc: frozenset[str] = MC_READS
) -> Callable[[Any], frozenset[str]]:
    """``AlgoSpec.reads`` of a loop with a ``method.estimator``: ``always`` and ``estimator``, and ``mc``
    when the estimator is Monte Carlo."""

    def reads(cfg: Any) -> frozenset[str]:
        return always | {"estimator"} | (mc if cfg.estimator != "exact" else frozenset())

    return reads


ORACLE_READS = frozenset({"oracle", "oracle_steps", "oracle_lr", "oracle_tol", "warm_start", "lam"})
"""Fields of a penalty loop with a best-response oracle."""
TABULAR_METRICS = ("upper/objective", "penalty/value", "penalty/bellman")
"""What the tabular PBRL loop adds to the problem's metrics (``penalty/<method.penalty>`` only)."""


def tau_checks(cfg: Any, *, bellman: bool) -> list[tuple[str, bool, str]]:
    """``AlgoSpec.checks`` of the penalty loops: the rules on the problem's entropy temperature τ that
    the method's settings make (``cfg``: the whole trial config; a problem without ``tau`` has none)."""
    tau = getattr(cfg.problem, "tau", None)
    if tau is None:
        return []
    out = []
    if bellman and cfg.method.penalty == "bellman":
        out.append(("problem.tau", tau > 0, "must be > 0 with method.penalty=bellman"))
    if cfg.method.oracle == "exact":
        out.append(("problem.tau", tau > 0, "must be > 0 with method.oracle=exact (use vi)"))
    return out
