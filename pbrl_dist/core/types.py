"""Small shared helpers for the tabular core: shape checks, seeds, dtypes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

DTYPE = torch.float64


def assert_shape(t: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Check the trailing dimensions of ``t`` against ``shape`` (``None`` matches any size).

    Leading (batch) dimensions are allowed and not checked.
    """
    if t.dim() < len(shape):
        raise ValueError(
            f"{name}: expected at least {len(shape)} dims {tuple(shape)}, got {tuple(t.shape)}"
        )
    tail = t.shape[t.dim() - len(shape) :]
    for got, want in zip(tail, shape, strict=True):
        if want is not None and got != want:
            raise ValueError(
                f"{name}: expected trailing shape {tuple(shape)}, got {tuple(t.shape)}"
            )


def derive_seed(seed: int, *keys: object) -> int:
    """Derive an independent 63-bit seed from a base seed and a path of keys.

    Deterministic across processes and machines (no Python ``hash``), so a worker that
    receives ``(seed, "mc", k, chunk)`` draws exactly what the learner would have drawn.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(str(int(seed)).encode())
    for k in keys:
        h.update(b"/")
        h.update(str(k).encode())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def generator(seed: int, *keys: object) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *keys))
    return g
