"""The RLHF loop's stateful stores: the FIFO buffer of labelled segment pairs and running reward
statistics (moved out of ``core/``, which keeps the pure math: segments, teacher, BT loss).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

import torch

from pbrl_dist.core.preference import PreferenceBatch, SegmentPairs


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
        absorb_action: the action index of absorbing steps (``method.absorbing``), or None.
    """

    def __init__(
        self,
        H: int,
        obs_shape: Sequence[int],
        *,
        obs_dtype: torch.dtype = torch.float32,
        capacity: int = 3000,
        frame_stack: int = 0,
        absorb_action: int | None = None,
    ) -> None:
        """Preallocate all storage."""
        if capacity <= 0 or H <= 0:
            raise ValueError(f"capacity/H: must be > 0, got capacity={capacity}, H={H}")
        self.H = int(H)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = obs_dtype
        self.capacity = int(capacity)
        self.frame_stack = int(frame_stack)
        self.absorb_action = absorb_action
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

    def _pack(self, obs_BH: torch.Tensor, act_BH: torch.Tensor) -> torch.Tensor:
        if not self.frame_stack:
            return obs_BH
        k = self.frame_stack
        if self.absorb_action is not None:
            obs_BH = _blank_frames_after_the_end(obs_BH, act_BH == self.absorb_action)
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
        self._obs1[slots] = self._pack(pairs.obs1_BH.to(cpu, self.obs_dtype), pairs.act1_BH.cpu())
        self._obs2[slots] = self._pack(pairs.obs2_BH.to(cpu, self.obs_dtype), pairs.act2_BH.cpu())
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


def _blank_frames_after_the_end(obs_BH: torch.Tensor, absorbing_BH: torch.Tensor) -> torch.Tensor:
    """Frame-stacked segments: each absorbing step's stack is the previous stack shifted by one blank
    frame, so stacks still shift by one frame per step and the frame storage holds them. r_φ reads no
    observation on absorbing steps (``WithAbsorbing``), so what they hold does not matter; stored as
    all zeros they would break the storage."""
    if not bool(absorbing_BH[:, 1:].any()):
        return obs_BH
    out = obs_BH.clone()
    for t in range(1, obs_BH.shape[1]):
        m = absorbing_BH[:, t]
        if bool(m.any()):
            prev = out[m, t - 1]
            out[m, t] = torch.cat([prev[:, 1:], torch.zeros_like(prev[:, :1])], 1)
    return out
