"""Preference learning for RLHF (Sec. 2.2 / 6.2): segments, teacher, Bradley–Terry loss (pure math;
the stateful preference buffer and reward statistics live in ``pbrl_dist.rlhf.buffer``).

Reference: Shen, Yang & Chen (PBRL), eq. (2.6) and Sec. 6.2; Christiano et al. 2017 ("Deep RL
from human preferences"), App. A (segment length 25, 3000-pair buffer, reward std 0.05).

A segment is σ = ((s_0, a_0), …, (s_{H−1}, a_{H−1})) cut from the agent's own rollouts. The
Bradley–Terry model of eq. (2.6) scores a pair by the summed predicted reward:

    P_x(σ¹ ≻ σ²) = exp(Σ_t r_x(s¹_t, a¹_t)) / (exp(Σ_t r_x(s¹_t, a¹_t)) + exp(Σ_t r_x(s²_t, a²_t)))
                 = sigmoid(Σ_t r_x(s¹_t, a¹_t) − Σ_t r_x(s²_t, a²_t)),

and the upper-level loss is the cross-entropy with the label y ∈ {0, ½, 1} (y = 1 ⇔ σ¹ preferred):

    f = −E[ y·log P_x(σ¹ ≻ σ²) + (1 − y)·log P_x(σ² ≻ σ¹) ].

Segment boundaries: segments never cross an episode boundary. With ``done_TN[t, n]`` meaning "the
transition taken at step t in env n ended an episode", the window t0 … t0+H−1 is valid iff
``done_TN[t0 : t0+H−1, n]`` are all False; the last step of a segment may itself be terminal.

Everything here is torch/numpy only; every random draw comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

# -------------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------------


@dataclass
class SegmentPairs:
    """B pairs of length-H segments with their true (teacher-side) returns.

    Attributes:
        obs1_BH: (B, H, *obs_shape) observations of segment 1.
        act1_BH: (B, H) int64 actions of segment 1.
        obs2_BH: (B, H, *obs_shape) observations of segment 2.
        act2_BH: (B, H) int64 actions of segment 2.
        ret1_B: (B,) float32 true return Σ_t r(s¹_t, a¹_t) of segment 1.
        ret2_B: (B,) float32 true return of segment 2.
    """

    obs1_BH: torch.Tensor
    act1_BH: torch.Tensor
    obs2_BH: torch.Tensor
    act2_BH: torch.Tensor
    ret1_B: torch.Tensor
    ret2_B: torch.Tensor

    def __len__(self) -> int:
        """Return the number of pairs B."""
        return int(self.act1_BH.shape[0])


@dataclass
class PreferenceBatch(SegmentPairs):
    """Labelled pairs: ``SegmentPairs`` plus the label y_B ∈ {0, ½, 1} (1 ⇔ segment 1 preferred).

    Attributes:
        y_B: (B,) float32 labels.
        ids_B: (B,) int64 insertion ids (0, 1, 2, … in the order pairs entered the buffer).
    """

    y_B: torch.Tensor
    ids_B: torch.Tensor

    def to(self, device: torch.device | str) -> PreferenceBatch:
        """Return a copy with every tensor moved to ``device``."""
        return PreferenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def valid_segment_starts(done_TN: torch.Tensor, H: int) -> torch.Tensor:
    """Mark the (t0, n) where a length-H segment fits without crossing an episode end.

    Math:
        valid[t0, n] = 1{t0 + H ≤ T} · Π_{t=t0}^{t0+H−2} (1 − done[t, n])

    Args:
        done_TN: (T, N) bool, True where the transition at step t ended an episode (terminated or
            truncated, whatever boundaries the caller wants segments not to cross).
        H: segment length, 1 ≤ H ≤ T.

    Returns:
        (T − H + 1, N) bool mask of valid start times.

    Invariants:
        a segment may end on a terminal step but never contains one before its last step.
    """
    if done_TN.dim() != 2:
        raise ValueError(f"done_TN: expected shape (T, N), got {tuple(done_TN.shape)}")
    T, N = done_TN.shape
    if not 1 <= H <= T:
        raise ValueError(f"H: segment length must be in [1, T={T}], got {H}")
    d = done_TN.to(torch.int64)
    # cs[t] = number of done flags in steps < t; a window counts steps t0 … t0+H−2.
    cs = torch.cat([torch.zeros(1, N, dtype=torch.int64, device=d.device), d.cumsum(0)], 0)
    W = T - H + 1
    inner = cs[H - 1 : H - 1 + W] - cs[:W]
    return inner == 0


def sample_segment_indices(
    done_TN: torch.Tensor, *, H: int, num: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``num`` segment windows uniformly among the valid ones.

    Draws without replacement when there are at least ``num`` valid windows, otherwise with
    replacement (so a very short rollout still yields the requested count).

    Args:
        done_TN: (T, N) bool episode-end flags (see ``valid_segment_starts``).
        H: segment length.
        num: number of windows to draw.
        generator: CPU torch generator for the draw.

    Returns:
        (t0_B, n_B): int64 start times and env indices, each (num,), on CPU.

    Raises:
        ValueError: if no valid window exists.
    """
    valid_WN = valid_segment_starts(done_TN, H).cpu()
    flat = valid_WN.reshape(-1).nonzero().squeeze(1)
    if flat.numel() == 0:
        raise ValueError(
            f"done_TN: no window of H={H} steps without an episode end; collect a longer rollout"
        )
    if flat.numel() >= num:
        pick = torch.randperm(flat.numel(), generator=generator)[:num]
    else:
        pick = torch.randint(flat.numel(), (num,), generator=generator)
    chosen = flat[pick]
    N = valid_WN.shape[1]
    return chosen // N, chosen % N


def absorbing_steps(done_BH: torch.Tensor) -> torch.Tensor:
    """Mark the steps of each segment that come after its first episode end.

    Math:
        absorbing[b, t] = 1{∃ t' < t: done[b, t']}

    Args:
        done_BH: (B, H) bool episode-end flags of the segments' transitions.

    Returns:
        (B, H) bool; the step that ends the episode is itself not absorbing.
    """
    d = done_BH.to(torch.int64)
    return (d.cumsum(1) - d) > 0


def gather_segments(
    x_TN: torch.Tensor, t0_B: torch.Tensor, n_B: torch.Tensor, H: int
) -> torch.Tensor:
    """Cut segments x[t0 : t0+H, n] out of a time-major rollout tensor.

    Args:
        x_TN: (T, N, *rest) rollout tensor (observations, actions, rewards, …).
        t0_B: (B,) int64 start times.
        n_B: (B,) int64 env indices.
        H: segment length.

    Returns:
        (B, H, *rest) tensor.
    """
    t_BH = t0_B.to(x_TN.device)[:, None] + torch.arange(H, device=x_TN.device)[None, :]
    return x_TN[t_BH, n_B.to(x_TN.device)[:, None]]


def sample_segment_pairs(
    *,
    obs_TN: torch.Tensor,
    actions_TN: torch.Tensor,
    true_rewards_TN: torch.Tensor,
    done_TN: torch.Tensor,
    num_pairs: int,
    H: int,
    generator: torch.Generator,
    absorb_action: int | None = None,
) -> SegmentPairs:
    """Sample ``num_pairs`` pairs of length-H segments from one rollout.

    Without ``absorb_action`` a segment never crosses an episode end (it may end on one). With it, a
    segment may start at any step and contain an episode end: the steps after the first end are the
    absorbing state (Kostrikov et al. 2019), stored as observation zeros, action ``absorb_action``
    and true reward 0, so the teacher sees a game that ends early and r_φ learns what ending is worth.

    Math:
        ret_b = Σ_{t=0}^{H−1} r(s_{t0_b + t}, a_{t0_b + t}) with the true game reward r
        (r = 0 on absorbing steps).

    Args:
        obs_TN: (T, N, *obs_shape) observations s_t (the observation the action a_t was taken in).
        actions_TN: (T, N) int actions.
        true_rewards_TN: (T, N) true rewards r_t of the transitions.
        done_TN: (T, N) bool, True where transition t ended an episode.
        num_pairs: number of pairs B.
        H: segment length.
        generator: CPU torch generator.
        absorb_action: the action index that marks absorbing steps (|A|), or None.

    Returns:
        ``SegmentPairs`` on the device of ``obs_TN``; 2B distinct windows when the rollout has them.
    """
    pairs, _ = sample_segment_pairs_and_rewards(
        obs_TN=obs_TN,
        actions_TN=actions_TN,
        true_rewards_TN=true_rewards_TN,
        done_TN=done_TN,
        num_pairs=num_pairs,
        H=H,
        generator=generator,
        absorb_action=absorb_action,
    )
    return pairs


def sample_segment_pairs_and_rewards(
    *,
    obs_TN: torch.Tensor,
    actions_TN: torch.Tensor,
    true_rewards_TN: torch.Tensor,
    done_TN: torch.Tensor,
    num_pairs: int,
    H: int,
    generator: torch.Generator,
    absorb_action: int | None = None,
) -> tuple[SegmentPairs, torch.Tensor]:
    """``sample_segment_pairs`` (same draws, same pairs) plus the segments' true step rewards.

    Returns:
        (pairs, rew_2BH): ``rew_2BH[:B]`` are segment 1's true rewards per step (float32, 0 on
        absorbing steps), ``rew_2BH[B:]`` segment 2's; what a myopic teacher weighs.
    """
    T, N = actions_TN.shape[:2]
    for name, t in (("obs_TN", obs_TN), ("true_rewards_TN", true_rewards_TN), ("done_TN", done_TN)):
        if tuple(t.shape[:2]) != (T, N):
            raise ValueError(f"{name}: leading shape {tuple(t.shape[:2])} != actions_TN's {(T, N)}")
    starts_from = done_TN if absorb_action is None else torch.zeros_like(done_TN)
    t0, n = sample_segment_indices(starts_from, H=H, num=2 * num_pairs, generator=generator)
    obs = gather_segments(obs_TN, t0, n, H)
    act = gather_segments(actions_TN, t0, n, H).to(torch.int64)
    rew = gather_segments(true_rewards_TN, t0, n, H).to(torch.float32)
    if absorb_action is not None:
        absorbing = absorbing_steps(gather_segments(done_TN, t0, n, H))
        obs = obs.masked_fill(absorbing.reshape(*absorbing.shape, *[1] * (obs.dim() - 2)), 0)
        act = act.masked_fill(absorbing, absorb_action)
        rew = rew.masked_fill(absorbing, 0.0)
    ret = rew.sum(1)
    B = num_pairs
    return SegmentPairs(obs[:B], act[:B], obs[B:], act[B:], ret[:B], ret[B:]), rew


# ------------------------------------------------------------------------------------------------
# Synthetic teacher
# --------------------------------------------------------------------------------------------------


def _deterministic_labels(
    diff_B: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    return (diff_B > 0).to(torch.float32)


def _bt_labels(
    diff_B: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    if generator is None:
        raise ValueError("generator: the 'bt' teacher samples labels and needs a generator")
    p_B = torch.sigmoid(diff_B.to(torch.float64) / temperature)
    u_B = torch.rand(diff_B.shape, generator=generator, dtype=torch.float64)
    return (u_B < p_B.cpu()).to(torch.float32).to(diff_B.device)


TEACHER_MODES: dict[str, Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]] = {
    "deterministic": _deterministic_labels,
    "bt": _bt_labels,
}


def teacher_labels(
    ret1_B: torch.Tensor,
    ret2_B: torch.Tensor,
    *,
    mode: str = "deterministic",
    temperature: float = 1.0,
    error_rate: float = 0.0,
    tie_threshold: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Label segment pairs from their true returns (the synthetic teacher of Christiano et al.).

    Math:
        Δ = ret1 − ret2
        tie:            |Δ| ≤ tie_threshold  ⇒  y = ½   (exact ties with threshold 0)
        deterministic:  y = 1{Δ > 0}
        bt:             y ~ Bernoulli(sigmoid(Δ / temperature))   (Bradley–Terry teacher, (2.6))
        error:          with probability error_rate a non-tie label is flipped, y ← 1 − y

    Args:
        ret1_B: (B,) true returns of segment 1.
        ret2_B: (B,) true returns of segment 2.
        mode: "deterministic" (paper: prefer the higher true return) or "bt".
        temperature: Bradley–Terry temperature β > 0 (mode "bt" only).
        error_rate: flip probability ε ∈ [0, 1).
        tie_threshold: |Δ| at or below this is a tie (label ½).
        generator: CPU torch generator; required when mode == "bt" or error_rate > 0.

    Returns:
        (B,) float32 labels in {0, ½, 1}.

    Invariants:
        swapping the segments maps y → 1 − y (deterministic mode, ε = 0); ties give ½.
    """
    if mode not in TEACHER_MODES:
        raise ValueError(f"mode: expected one of {sorted(TEACHER_MODES)}, got {mode!r}")
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    if not 0.0 <= error_rate < 1.0:
        raise ValueError(f"error_rate: must be in [0, 1), got {error_rate}")
    if tie_threshold < 0:
        raise ValueError(f"tie_threshold: must be >= 0, got {tie_threshold}")
    if ret1_B.shape != ret2_B.shape or ret1_B.dim() != 1:
        raise ValueError(
            f"ret1_B/ret2_B: expected equal (B,) shapes, got {ret1_B.shape}, {ret2_B.shape}"
        )
    diff_B = ret1_B.to(torch.float64) - ret2_B.to(torch.float64)
    y_B = TEACHER_MODES[mode](diff_B, temperature, generator)
    if error_rate > 0:
        if generator is None:
            raise ValueError("generator: error_rate > 0 needs a generator")
        flip = torch.rand(diff_B.shape, generator=generator, dtype=torch.float64) < error_rate
        y_B = torch.where(flip.to(y_B.device), 1.0 - y_B, y_B)
    tie = diff_B.abs() <= tie_threshold
    return torch.where(tie, torch.full_like(y_B, 0.5), y_B)


def myopic_returns(rew_BH: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return the myopic teacher's segment score Σ_t γ^(H−1−t)·r_t (B,) in float64 (B-Pref).

    The last step of a segment weighs 1 and earlier steps less: the teacher remembers the end of
    a segment best (Lee et al. 2021, "B-Pref", the *myopic* teacher).
    """
    H = rew_BH.shape[1]
    w_H = gamma ** torch.arange(H - 1, -1, -1, dtype=torch.float64, device=rew_BH.device)
    return (rew_BH.to(torch.float64) * w_H).sum(1)


@dataclass(frozen=True)
class SyntheticTeacher:
    """Config-holder for ``teacher_labels`` (defaults = the paper's perfect teacher), with the
    irrational teachers of B-Pref (Lee et al. 2021) as settings.

    Attributes:
        mode: "deterministic" or "bt" (B-Pref's *stochastic* teacher, rationality β = 1/temperature).
        temperature: Bradley–Terry temperature (mode "bt").
        error_rate: label flip probability (B-Pref's *mistake* teacher, ε).
        tie_threshold: |ret1 − ret2| at or below this is a tie.
        gamma: myopic discount γ ∈ (0, 1] (B-Pref's *myopic* teacher): the label compares
            Σ_t γ^(H−1−t)·r_t instead of the plain segment returns (1: not myopic).
        skip: B-Pref's *skip* teacher, ε_skip ≥ 0: a query whose two segments both have a true
            return at or below ε_skip·m is not answered (dropped before labelling), m = the mean
            true segment return of the queried batch (0: never skips).
        equal: B-Pref's *equal* teacher, ε_equal ≥ 0: a pair whose true returns differ by less
            than ε_equal·m is labelled ½ (0: only exact ties, as ``tie_threshold``).

    B-Pref sets m from the agent's average episode return scaled to the segment length; here m is
    the same quantity measured on the queried segments themselves (cut from the agent's recent
    rollouts), so the thresholds need no episode-length constant. As in B-Pref, the skip and equal
    rules read the undiscounted returns and the mistake flip comes before the equal rule.
    """

    mode: str = "deterministic"
    temperature: float = 1.0
    error_rate: float = 0.0
    tie_threshold: float = 0.0
    gamma: float = 1.0
    skip: float = 0.0
    equal: float = 0.0

    def label(
        self,
        rew1_BH: torch.Tensor,
        rew2_BH: torch.Tensor,
        ret1_B: torch.Tensor,
        ret2_B: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer B queries: return (answered_B bool, y_K) with K = answered_B.sum() labels.

        ``rew*_BH`` are the segments' true step rewards and ``ret*_B`` their sums (as
        ``sample_segment_pairs`` computed them); with the default settings this is exactly
        ``self(ret1_B, ret2_B)`` on every pair (same labels, same generator draws).
        """
        ret1 = ret1_B.to(torch.float64)
        ret2 = ret2_B.to(torch.float64)
        margin = float(torch.cat([ret1, ret2]).mean()) if ret1.numel() else 0.0
        keep_B = torch.ones_like(ret1, dtype=torch.bool)
        if self.skip > 0:
            keep_B = torch.maximum(ret1, ret2) > self.skip * margin
        if not bool(keep_B.any()):
            return keep_B, torch.zeros(0, dtype=torch.float32, device=ret1_B.device)
        if self.gamma < 1.0:
            s1, s2 = (
                myopic_returns(rew1_BH[keep_B], self.gamma),
                myopic_returns(rew2_BH[keep_B], self.gamma),
            )
        else:
            s1, s2 = ret1_B[keep_B], ret2_B[keep_B]
        y_K = self(s1, s2, generator=generator)
        if self.equal > 0:
            alike = (ret1[keep_B] - ret2[keep_B]).abs() < self.equal * margin
            y_K = torch.where(alike.to(y_K.device), torch.full_like(y_K, 0.5), y_K)
        return keep_B, y_K

    def __call__(
        self, ret1_B: torch.Tensor, ret2_B: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return labels y_B for the pairs (see ``teacher_labels``)."""
        return teacher_labels(
            ret1_B,
            ret2_B,
            mode=self.mode,
            temperature=self.temperature,
            error_rate=self.error_rate,
            tie_threshold=self.tie_threshold,
            generator=generator,
        )


# ------------------------------------------------------------------------------------------------
# Bradley–Terry loss
# --------------------------------------------------------------------------------------------------


def bt_logits(r1_BH: torch.Tensor, r2_BH: torch.Tensor) -> torch.Tensor:
    """Return the Bradley–Terry logit z = Σ_t r¹_t − Σ_t r²_t; P(σ¹ ≻ σ²) = sigmoid(z) (eq. (2.6)).

    Args:
        r1_BH: (B, H) predicted rewards r_x(s¹_t, a¹_t).
        r2_BH: (B, H) predicted rewards for segment 2.

    Returns:
        (B,) logits.
    """
    if r1_BH.shape != r2_BH.shape or r1_BH.dim() != 2:
        raise ValueError(
            f"r1_BH/r2_BH: expected equal (B, H) shapes, got {r1_BH.shape}, {r2_BH.shape}"
        )
    return r1_BH.sum(1) - r2_BH.sum(1)


def bt_loss(
    r1_BH: torch.Tensor, r2_BH: torch.Tensor, y_B: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Bradley–Terry cross-entropy of eq. (2.6), computed stably with logsigmoid.

    Math:
        z = Σ_t r_x(s¹_t, a¹_t) − Σ_t r_x(s²_t, a²_t)
        ℓ = −[ y·log σ(z) + (1 − y)·log σ(−z) ]
        ∂ℓ/∂r¹_t = σ(z) − y,   ∂ℓ/∂r²_t = y − σ(z)

    Reference: PBRL eq. (2.6) (upper-level objective f of the RLHF problem).

    Args:
        r1_BH: (B, H) predicted rewards along segment 1.
        r2_BH: (B, H) predicted rewards along segment 2.
        y_B: (B,) labels in [0, 1], 1 ⇔ segment 1 preferred.
        reduction: "mean" (scalar), "sum" (scalar) or "none" ((B,) per-pair losses, e.g. for the
            score-function term ∇_y f of PBRL).

    Returns:
        The loss (scalar or (B,)).

    Invariants:
        ℓ ≥ 0; ℓ(z=0) = log 2; ℓ with y = ½ is minimised at z = 0; finite for |z| ≫ 100.
    """
    z_B = bt_logits(r1_BH, r2_BH)
    if y_B.shape != z_B.shape:
        raise ValueError(f"y_B: expected shape {tuple(z_B.shape)}, got {tuple(y_B.shape)}")
    y_B = y_B.to(z_B.dtype)
    loss_B = -(y_B * F.logsigmoid(z_B) + (1.0 - y_B) * F.logsigmoid(-z_B))
    if reduction == "none":
        return loss_B
    if reduction == "mean":
        return loss_B.mean()
    if reduction == "sum":
        return loss_B.sum()
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def preference_accuracy(
    r1_BH: torch.Tensor, r2_BH: torch.Tensor, y_B: torch.Tensor
) -> torch.Tensor:
    """Fraction of non-tie pairs whose predicted preference matches the label (NaN if all ties).

    Args:
        r1_BH: (B, H) predicted rewards of segment 1.
        r2_BH: (B, H) predicted rewards of segment 2.
        y_B: (B,) labels.

    Returns:
        Scalar tensor.
    """
    z_B = bt_logits(r1_BH, r2_BH)
    strict = y_B != 0.5
    agree = (z_B > 0) == (y_B > 0.5)
    return agree[strict].to(torch.float32).mean()


# ------------------------------------------------------------------------------------------------
# Reward normalisation
# --------------------------------------------------------------------------------------------------


def normalize_rewards(
    r: torch.Tensor,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    target_std: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Shift and scale predicted rewards to zero mean and standard deviation ``target_std``.

    Math:
        r̃ = target_std · (r − μ) / (σ + eps)

    Reference: Christiano et al. 2017 App. A.1 (r̂ normalised to zero mean, std 0.05).

    Args:
        r: predicted rewards (any shape).
        mean: running mean μ (scalar).
        std: running standard deviation σ (scalar).
        target_std: the standard deviation after normalisation.
        eps: guards σ = 0.

    Returns:
        Tensor like ``r``.
    """
    mean = mean.to(r.device, r.dtype)
    std = std.to(r.device, r.dtype)
    return target_std * (r - mean) / (std + eps)
