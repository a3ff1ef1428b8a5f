"""Preference learning for RLHF (Sec. 2.2 / 6.2): segments, teacher, buffer, Bradley–Terry loss.

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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

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
) -> SegmentPairs:
    """Sample ``num_pairs`` pairs of length-H segments from one rollout (no episode crossing).

    Math:
        ret_b = Σ_{t=0}^{H−1} r(s_{t0_b + t}, a_{t0_b + t}) with the true game reward r.

    Args:
        obs_TN: (T, N, *obs_shape) observations s_t (the observation the action a_t was taken in).
        actions_TN: (T, N) int actions.
        true_rewards_TN: (T, N) true rewards r_t of the transitions.
        done_TN: (T, N) bool, True where transition t ended an episode.
        num_pairs: number of pairs B.
        H: segment length.
        generator: CPU torch generator.

    Returns:
        ``SegmentPairs`` on the device of ``obs_TN``; 2B distinct windows when the rollout has them.
    """
    T, N = actions_TN.shape[:2]
    for name, t in (("obs_TN", obs_TN), ("true_rewards_TN", true_rewards_TN), ("done_TN", done_TN)):
        if tuple(t.shape[:2]) != (T, N):
            raise ValueError(f"{name}: leading shape {tuple(t.shape[:2])} != actions_TN's {(T, N)}")
    t0, n = sample_segment_indices(done_TN, H=H, num=2 * num_pairs, generator=generator)
    obs = gather_segments(obs_TN, t0, n, H)
    act = gather_segments(actions_TN, t0, n, H).to(torch.int64)
    ret = gather_segments(true_rewards_TN, t0, n, H).to(torch.float32).sum(1)
    B = num_pairs
    return SegmentPairs(obs[:B], act[:B], obs[B:], act[B:], ret[:B], ret[B:])


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


@dataclass(frozen=True)
class SyntheticTeacher:
    """Config-holder for ``teacher_labels`` (defaults = the paper's perfect teacher).

    Attributes:
        mode: "deterministic" or "bt".
        temperature: Bradley–Terry temperature (mode "bt").
        error_rate: label flip probability.
        tie_threshold: |ret1 − ret2| at or below this is a tie.
    """

    mode: str = "deterministic"
    temperature: float = 1.0
    error_rate: float = 0.0
    tie_threshold: float = 0.0

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
# FIFO preference buffer
# --------------------------------------------------------------------------------------------------


class PreferenceBuffer:
    """FIFO buffer of labelled segment pairs in preallocated CPU tensors (keeps the last capacity).

    Storage: slot i holds pair ``ids[i]``; new pairs go to slot ``num_added % capacity``, so once
    full the oldest pair is overwritten. With ``frame_stack = k > 0`` observations must be stacked
    frames (k, h, w) whose stack shifts by one frame per step (true inside an episode for ale-py's
    stacks); a segment is then stored as H + k − 1 single frames instead of H·k (≈3.6× less memory
    for Atari: 3000 pairs ≈ 1.2 GB instead of 4.2 GB) and rebuilt on read.

    Args:
        H: segment length.
        obs_shape: shape of one observation.
        obs_dtype: observation dtype (torch.uint8 for Atari, torch.float32 for the toy env).
        capacity: maximum number of pairs kept (K117: 3000).
        frame_stack: 0 to store observations as they are, or k (= obs_shape[0]) to store frames.
    """

    def __init__(
        self,
        H: int,
        obs_shape: Sequence[int],
        *,
        obs_dtype: torch.dtype = torch.float32,
        capacity: int = 3000,
        frame_stack: int = 0,
    ) -> None:
        """Preallocate all storage."""
        if capacity <= 0 or H <= 0:
            raise ValueError(f"capacity/H: must be > 0, got capacity={capacity}, H={H}")
        self.H = int(H)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = obs_dtype
        self.capacity = int(capacity)
        self.frame_stack = int(frame_stack)
        if self.frame_stack:
            if len(self.obs_shape) < 2 or self.obs_shape[0] != self.frame_stack:
                raise ValueError(
                    f"frame_stack: obs_shape {self.obs_shape} must start with "
                    f"frame_stack={frame_stack}"
                )
            obs_store = (self.capacity, self.H + self.frame_stack - 1, *self.obs_shape[1:])
            # idx_HK[h, c] = frame index of channel c of step h in the stored frame sequence.
            self._idx_HK = torch.arange(self.H)[:, None] + torch.arange(self.frame_stack)[None, :]
        else:
            obs_store = (self.capacity, self.H, *self.obs_shape)
        self._obs1 = torch.zeros(obs_store, dtype=obs_dtype)
        self._obs2 = torch.zeros(obs_store, dtype=obs_dtype)
        self._act1 = torch.zeros(self.capacity, self.H, dtype=torch.int64)
        self._act2 = torch.zeros(self.capacity, self.H, dtype=torch.int64)
        self._y = torch.zeros(self.capacity, dtype=torch.float32)
        self._ret1 = torch.zeros(self.capacity, dtype=torch.float32)
        self._ret2 = torch.zeros(self.capacity, dtype=torch.float32)
        self._ids = torch.full((self.capacity,), -1, dtype=torch.int64)
        self.num_added = 0

    _ARRAYS = ("_obs1", "_obs2", "_act1", "_act2", "_y", "_ret1", "_ret2", "_ids")

    def __len__(self) -> int:
        """Return the number of pairs currently stored."""
        return min(self.num_added, self.capacity)

    # --- write ---------------------------------------------------------------------------------

    def _pack(self, obs_BH: torch.Tensor) -> torch.Tensor:
        if not self.frame_stack:
            return obs_BH
        k = self.frame_stack
        if not torch.equal(obs_BH[:, 1:, : k - 1], obs_BH[:, :-1, 1:]):
            raise ValueError(
                "obs: frame_stack storage needs stacks that shift by one frame per step "
                "(a segment crossed an episode boundary, or the stack is not oldest-first)"
            )
        # First step's full stack, then the newest frame of each later step.
        return torch.cat([obs_BH[:, 0], obs_BH[:, 1:, k - 1]], dim=1)

    def _unpack(self, stored: torch.Tensor) -> torch.Tensor:
        if not self.frame_stack:
            return stored
        return stored[:, self._idx_HK]

    def add(self, pairs: SegmentPairs, y_B: torch.Tensor) -> None:
        """Append labelled pairs, overwriting the oldest ones when full.

        Args:
            pairs: B segment pairs (any device; copied to CPU).
            y_B: (B,) labels.
        """
        B = len(pairs)
        want = (B, self.H, *self.obs_shape)
        for name, o in (("obs1_BH", pairs.obs1_BH), ("obs2_BH", pairs.obs2_BH)):
            if tuple(o.shape) != want:
                raise ValueError(f"{name}: expected shape {want}, got {tuple(o.shape)}")
        if tuple(y_B.shape) != (B,):
            raise ValueError(f"y_B: expected shape {(B,)}, got {tuple(y_B.shape)}")
        if self.capacity < B:  # only the last `capacity` survive anyway
            skip = B - self.capacity
            self.num_added += skip
            pairs = SegmentPairs(*(getattr(pairs, f.name)[skip:] for f in fields(SegmentPairs)))
            y_B = y_B[skip:]
            B = self.capacity
        slots = (self.num_added + torch.arange(B)) % self.capacity
        cpu = torch.device("cpu")
        self._obs1[slots] = self._pack(pairs.obs1_BH.to(cpu, self.obs_dtype))
        self._obs2[slots] = self._pack(pairs.obs2_BH.to(cpu, self.obs_dtype))
        self._act1[slots] = pairs.act1_BH.to(cpu, torch.int64)
        self._act2[slots] = pairs.act2_BH.to(cpu, torch.int64)
        self._y[slots] = y_B.to(cpu, torch.float32)
        self._ret1[slots] = pairs.ret1_B.to(cpu, torch.float32)
        self._ret2[slots] = pairs.ret2_B.to(cpu, torch.float32)
        self._ids[slots] = self.num_added + torch.arange(B)
        self.num_added += B

    # --- read ----------------------------------------------------------------------------------

    def chronological_slots(self) -> torch.Tensor:
        """Return the storage slots of the stored pairs, oldest first."""
        n = len(self)
        start = self.num_added - n
        return (start + torch.arange(n)) % self.capacity

    def get(self, slots: torch.Tensor) -> PreferenceBatch:
        """Return the pairs stored at ``slots`` (int64 indices into storage) as a batch."""
        return PreferenceBatch(
            obs1_BH=self._unpack(self._obs1[slots]),
            act1_BH=self._act1[slots],
            obs2_BH=self._unpack(self._obs2[slots]),
            act2_BH=self._act2[slots],
            ret1_B=self._ret1[slots],
            ret2_B=self._ret2[slots],
            y_B=self._y[slots],
            ids_B=self._ids[slots],
        )

    def all_pairs(self) -> PreferenceBatch:
        """Return every stored pair, oldest first."""
        return self.get(self.chronological_slots())

    def sample(self, batch_size: int, generator: torch.Generator) -> PreferenceBatch:
        """Draw a minibatch uniformly with replacement.

        Args:
            batch_size: number of pairs.
            generator: CPU torch generator.

        Returns:
            ``PreferenceBatch`` on CPU.
        """
        n = len(self)
        if n == 0:
            raise ValueError("PreferenceBuffer.sample: the buffer is empty")
        return self.get(torch.randint(n, (batch_size,), generator=generator))

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[PreferenceBatch]:
        """Yield minibatches over one random permutation of the stored pairs (one reward epoch).

        Args:
            batch_size: pairs per minibatch (the last one may be smaller).
            generator: CPU torch generator.

        Yields:
            ``PreferenceBatch`` on CPU.
        """
        perm = torch.randperm(len(self), generator=generator)
        for i in range(0, perm.numel(), batch_size):
            yield self.get(perm[i : i + batch_size])

    # --- checkpoint ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to resume exactly (storage layout included)."""
        n = len(self)
        state: dict[str, Any] = {name: getattr(self, name)[:n].clone() for name in self._ARRAYS}
        state.update(
            num_added=self.num_added,
            capacity=self.capacity,
            H=self.H,
            obs_shape=self.obs_shape,
            frame_stack=self.frame_stack,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``; the buffer must have been built with the same config."""
        for key in ("capacity", "H", "frame_stack"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"{key}: checkpoint has {state[key]}, buffer has {getattr(self, key)}"
                )
        if tuple(state["obs_shape"]) != self.obs_shape:
            raise ValueError(
                f"obs_shape: checkpoint has {state['obs_shape']}, buffer has {self.obs_shape}"
            )
        self.num_added = int(state["num_added"])
        n = len(self)
        for name in self._ARRAYS:
            getattr(self, name)[:n] = state[name]


# ------------------------------------------------------------------------------------------------
# Reward normalisation
# --------------------------------------------------------------------------------------------------


class RunningMeanStd:
    """Running mean and variance (Chan et al. parallel update, float64) of a scalar stream."""

    def __init__(self) -> None:
        """Start from an empty stream (mean 0, var 1, count 0)."""
        self.mean = torch.zeros((), dtype=torch.float64)
        self.var = torch.ones((), dtype=torch.float64)
        self.count = 0.0

    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch of values (any shape, flattened).

        Math:
            δ = m_b − m,  n' = n + n_b,  m' = m + δ·n_b/n',
            M2' = var·n + var_b·n_b + δ²·n·n_b/n',  var' = M2'/n'
        """
        x = x.detach().to(torch.float64).reshape(-1).cpu()
        nb = x.numel()
        if nb == 0:
            return
        mb = x.mean()
        vb = x.var(unbiased=False)
        if self.count == 0:
            self.mean, self.var, self.count = mb, vb, float(nb)
            return
        n = self.count
        tot = n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / tot
        self.var = (self.var * n + vb * nb + delta**2 * n * nb / tot) / tot
        self.count = tot

    @property
    def std(self) -> torch.Tensor:
        """Return the running standard deviation (float64 scalar)."""
        return self.var.sqrt()

    def state_dict(self) -> dict[str, Any]:
        """Return the statistics."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the statistics."""
        self.mean = state["mean"].clone().to(torch.float64)
        self.var = state["var"].clone().to(torch.float64)
        self.count = float(state["count"])


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


# ------------------------------------------------------------------------------------------------
# Schedule (K117 numbers)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceSchedule:
    """When to ask for pairs and how long to train the reward model (MATH.md §7.2).

    Attributes:
        initial_pairs: pairs labelled before training starts (K117: 576).
        warmup_epochs: reward-model epochs on the initial pairs (K117: 500).
        pairs_per_epoch: new pairs per reward-learning epoch (K117: 16).
        buffer_size: only the last this many pairs are kept (K117 and Christiano: 3000).
        segment_length: H, steps per segment (PROPOSAL 25, Christiano Atari).
        batch_size: pairs per reward-model minibatch (PROPOSAL 32, mrahtz).
    """

    initial_pairs: int = 576
    warmup_epochs: int = 500
    pairs_per_epoch: int = 16
    buffer_size: int = 3000
    segment_length: int = 25
    batch_size: int = 32

    def __post_init__(self) -> None:
        """Validate ranges, naming the offending field."""
        for f in fields(self):
            v = getattr(self, f.name)
            lo = 0 if f.name in ("warmup_epochs", "pairs_per_epoch") else 1
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"PreferenceSchedule.{f.name}: expected an int >= {lo}, got {v!r}")
        if self.initial_pairs > self.buffer_size:
            raise ValueError(
                f"PreferenceSchedule.initial_pairs ({self.initial_pairs}) exceeds buffer_size "
                f"({self.buffer_size})"
            )

    def total_pairs_after(self, reward_epochs: int) -> int:
        """Return the number of labels requested after ``reward_epochs`` post-warm-up epochs."""
        return self.initial_pairs + self.pairs_per_epoch * max(0, reward_epochs)
