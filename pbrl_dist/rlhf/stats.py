"""Typed counters and metric accumulators of the RLHF loop (what a checkpoint must hold besides nets).

Each accumulator is emptied only by its own ``take()``, which the metrics row calls; nothing else
resets it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Progress:
    """Where the loop is.

    Attributes:
        agent_steps: the agent's env steps so far (initial pair-collection rollout included).
        oracle_steps: PBRL's oracle π̂*'s env steps so far.
        oracle_version: version number of the oracle's weights (rollout workers reload on change).
        next_log: the agent step count at which the next metrics row is due.
    """

    agent_steps: int = 0
    oracle_steps: int = 0
    oracle_version: int = 0
    next_log: int = 0


@dataclass
class EpisodeLog:
    """The agent's finished games: true return and the agent frame count when each ended."""

    returns: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)

    def add(self, returns: list[float], frames: int) -> None:
        """Record the games that ended in a fragment (all at the fragment's frame count)."""
        self.returns.extend(returns)
        self.frames.extend([frames] * len(returns))


@dataclass
class RewardModelStats:
    """Reward-model counters and the held-out scores of fresh pairs since the last row.

    Attributes:
        labels_used: pairs the teacher has labelled.
        queries_skipped: queries the teacher left unanswered (None unless ``method.teacher_skip``).
        epochs: reward-learning epochs run (warm-up included).
        bt_loss: mean BT loss of the last epoch (None before the first).
        correct, count: fresh pairs with a strict label that r_φ ranked right, and their count.
        pred, true: predicted and true returns of the fresh segments.
        last: the last computed accuracy / correlation (kept in rows until new pairs arrive).
        penalty_grad_ratio: PBRL: ‖∇_φ λ·p̂‖ / ‖∇_φ BT‖ on the first minibatch of each reward
            epoch since the last row.
    """

    labels_used: int = 0
    queries_skipped: int | None = None
    epochs: int = 0
    bt_loss: float | None = None
    correct: int = 0
    count: int = 0
    pred: list[float] = field(default_factory=list)
    true: list[float] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)
    penalty_grad_ratio: list[float] = field(default_factory=list)

    def add_heldout(
        self, z_B: torch.Tensor, y_B: torch.Tensor, pred: torch.Tensor, true: torch.Tensor
    ) -> None:
        """Fold in fresh pairs: score differences z, labels y, predicted and true segment returns."""
        strict = y_B != 0.5
        self.correct += int(((z_B > 0) == (y_B > 0.5))[strict].sum())
        self.count += int(strict.sum())
        self.pred.extend(pred.tolist())
        self.true.extend(true.tolist())

    def take(self) -> dict[str, Any]:
        """Return the row's ``rm/*`` metrics and empty the held-out accumulators."""
        if self.count:
            self.last["rm/accuracy"] = self.correct / self.count
        pred, true = np.array(self.pred), np.array(self.true)
        if len(pred) > 2 and pred.std() > 0 and true.std() > 0:
            self.last["rm/return_corr"] = float(np.corrcoef(pred, true)[0, 1])
        self.correct = self.count = 0
        self.pred, self.true = [], []
        skip = self.queries_skipped
        extra: dict[str, float] = {} if skip is None else {"rm/queries_skipped": skip}
        if self.penalty_grad_ratio:
            extra["rm/penalty_grad_ratio"] = float(np.mean(self.penalty_grad_ratio))
            self.penalty_grad_ratio = []
        return {
            **self.last,
            **extra,
            "rm/labels_used": self.labels_used,
            "rm/epochs": self.epochs,
            "rm/bt_loss": self.bt_loss,
        }


@dataclass
class PenaltyStats:
    """Sum and count of the value-penalty estimates p̂ since the last row."""

    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        """Fold in one estimate."""
        self.total += value
        self.count += 1

    def take(self) -> dict[str, float]:
        """Return ``penalty/value`` (the mean since the last row, if any) and reset."""
        out = {"penalty/value": self.total / self.count} if self.count else {}
        self.total, self.count = 0.0, 0
        return out


@dataclass
class CouplingStats:
    """What PBRL's coupling terms did since the last row: is the oracle better than the agent
    (p̂ > 0), and how large is each term next to the one it is added to.

    Attributes:
        score_loss: c·L_score of each agent update that applied the score term.
        score_grad_ratio: ‖∇_θ c·L_score‖ / ‖∇_θ A2C loss‖ at those updates.
        p_hat: p̂ = V_φ(π̂*) − V_φ(π_θ) measured before each reward epoch (dropout off).
        p_hat_epochs: reward epochs with a p̂ measured, over the whole run.
        p_hat_positive: of those, the epochs with p̂ > 0 (the penalty acts only then).
    """

    score_loss: list[float] = field(default_factory=list)
    score_grad_ratio: list[float] = field(default_factory=list)
    p_hat: list[float] = field(default_factory=list)
    p_hat_epochs: int = 0
    p_hat_positive: int = 0

    def add_p_hat(self, value: float) -> None:
        """Fold in the p̂ measured before a reward epoch."""
        self.p_hat.append(value)
        self.p_hat_epochs += 1
        self.p_hat_positive += int(value > 0)

    def take(self) -> dict[str, float]:
        """Return the row's means since the last row (absent when nothing was measured) and the
        run's fraction of reward epochs with p̂ > 0; empty the since-last-row lists."""
        out: dict[str, float] = {}
        for key, values in (
            ("upper/score_loss", self.score_loss),
            ("upper/score_grad_ratio", self.score_grad_ratio),
            ("penalty/p_hat", self.p_hat),
        ):
            if values:
                out[key] = float(np.mean(values))
        if self.p_hat_epochs:
            out["penalty/p_hat_positive"] = self.p_hat_positive / self.p_hat_epochs
        self.score_loss, self.score_grad_ratio, self.p_hat = [], [], []
        return out


@dataclass
class ReturnNormalizer:
    """Stable-Baselines3 ``VecNormalize``'s reward scaling: each env keeps a discounted return
    G ← γ·G + r (0 after an episode end); every step the running variance of all envs' G is updated
    and the step's rewards are divided by its square root (+ ε), clipped to ±``clip``.

    Attributes:
        returns: G of each env.
        mean, var, count: running statistics of G (count starts at SB3's 1e-4).
    """

    returns: list[float] = field(default_factory=list)
    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-4

    def __call__(
        self, rewards_TN: torch.Tensor, dones_TN: torch.Tensor, *, gamma: float, clip: float = 10.0
    ) -> torch.Tensor:
        """Return the scaled rewards (T, N) of a fragment and advance the statistics."""
        r = rewards_TN.to(torch.float64).numpy()
        d = dones_TN.numpy()
        g = np.asarray(self.returns if self.returns else np.zeros(r.shape[1]), dtype=np.float64)
        out = np.empty_like(r)
        for t in range(r.shape[0]):
            g = g * gamma + r[t]
            b_mean, b_var, n = float(g.mean()), float(g.var()), float(g.size)
            total = self.count + n
            delta = b_mean - self.mean
            self.mean += delta * n / total
            m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
            self.var, self.count = m2 / total, total
            out[t] = np.clip(r[t] / np.sqrt(self.var + 1e-8), -clip, clip)
            g = np.where(d[t], 0.0, g)
        self.returns = g.tolist()
        return torch.from_numpy(out.astype(np.float32))


def state_of(obj: Any) -> dict[str, Any]:
    """Return a deep copy of a stats dataclass as a plain dict (checkpoints)."""
    return dataclasses.asdict(obj)


def load_into(cls: type, state: dict[str, Any]) -> Any:
    """Rebuild a stats dataclass from ``state_of``'s dict (copied)."""
    return cls(**dataclasses.asdict(cls(**state)))
