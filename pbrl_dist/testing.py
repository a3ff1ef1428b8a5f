"""Helpers shipped for tests: finite differences, random tabular models, Monte Carlo tolerance checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pbrl_dist.core.types import DTYPE, generator


def fd_grad(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Return the central finite-difference gradient of scalar ``f`` at ``x`` (float64)."""
    x = x.detach().clone().to(DTYPE)
    g = torch.zeros_like(x)
    flat, gflat = x.view(-1), g.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + eps
        fp = float(f(x))
        flat[i] = old - eps
        fm = float(f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def random_mdp(
    S: int = 4, A: int = 3, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return a random (P_SAS, r_SA, rho_S) with U[0,1] rewards and a full-support ρ."""
    gen = generator(seed, "random_mdp")
    P = torch.rand(S, A, S, generator=gen, dtype=DTYPE)
    P = P / P.sum(-1, keepdim=True)
    r = torch.rand(S, A, generator=gen, dtype=DTYPE)
    rho = torch.rand(S, generator=gen, dtype=DTYPE) + 0.5
    return P, r, rho / rho.sum()


def random_logits(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """Return ``scale``·N(0, 1) logits."""
    return scale * torch.randn(*shape, generator=generator(seed, "logits"), dtype=DTYPE)


def mc_within(
    batch_means: torch.Tensor, exact: torch.Tensor, *, z: float = 5.0, bias: float = 0.0
) -> tuple[bool, float]:
    """Check a Monte Carlo estimate against its exact value coordinate-wise.

    ``batch_means`` holds M independent batch estimates (M, ...). The overall mean must lie within
    z standard errors (estimated from the spread of the batch means) plus a known bias bound.

    Returns:
        (ok, worst standardized error).
    """
    m = batch_means.shape[0]
    mean = batch_means.mean(0)
    se = batch_means.std(0, unbiased=True) / np.sqrt(m)
    err = (mean - exact).abs()
    ok = bool((err <= z * se + bias + 1e-12).all())
    worst = float((err / (se + 1e-300)).max())
    return ok, worst


class MemoryCheckpointer:
    """In-memory ``Checkpointer`` that can simulate a crash right after saving at iteration ``crash_after``.

    Resume tests run a loop with it until the simulated crash, then run the loop again with the same object,
    which restores the saved state, and compare against an uninterrupted run.
    """

    def __init__(self, every: int, crash_after: int | None = None) -> None:
        """Save every ``every`` iterations; raise once after the first save at or past ``crash_after``."""
        self.every, self.crash_after = every, crash_after
        self.saved: dict[str, Any] | None = None

    def restore(self) -> dict[str, Any] | None:
        """Return the last saved state (None before the first save)."""
        return self.saved

    def save(self, state: dict[str, Any]) -> None:
        """Keep a deep copy of ``state``; raise ``RuntimeError("simulated crash")`` once when due."""
        self.saved = copy.deepcopy(state)
        if self.crash_after is not None and state["k"] >= self.crash_after:
            self.crash_after = None
            raise RuntimeError("simulated crash")
