"""Loop checkpoints on disk: atomic saves, and a corrupt file that names its path and the way out.

``pbrl run`` keeps each unfinished trial's latest state in ``OUT/<trial>/checkpoint/state.pt``
(``FileCheckpointer``) and removes it when the trial completes; Tune trials keep theirs in Tune's
checkpoints (``launch.tune_trainable``). Both load through ``load_state``: a file that cannot be read
raises ``CorruptCheckpoint`` naming it, unless the user asked with ``--restart-corrupt`` to start such
trials from scratch (then one line says so). Loading never executes code: ``torch.load(weights_only=True)``
with only numpy's array-rebuilding globals allowed, so a planted pickle is refused as corrupt.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from pbrl_dist.config.loader import ConfigError
from pbrl_dist.safe_io import atomic_file

STATE_FILE = "state.pt"
CKPT_DIR = "checkpoint"


def _numpy_globals() -> list[Any]:
    """What numpy arrays of plain dtypes need in ``torch.load(weights_only=True)`` (no object arrays)."""
    import numpy as np

    dtypes = [
        getattr(np.dtypes, n)
        for n in dir(np.dtypes)
        if n.endswith("DType") and n not in ("ObjectDType", "VoidDType", "StringDType")
    ]
    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]  # type: ignore[attr-defined]


def safe_load(path: Path) -> Any:
    """``torch.load`` that cannot run code: tensors, numpy arrays of plain dtypes, Python data only."""
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, weights_only=True, map_location="cpu")


class CorruptCheckpoint(ConfigError):
    """A checkpoint file exists but cannot be loaded."""


def load_state(
    path: Path, *, restart_corrupt: bool, shown: str | None = None
) -> dict[str, Any] | None:
    """Return the state saved in ``path``; None when it is missing, or corrupt with ``restart_corrupt``.

    ``shown`` is the path named in messages (default ``path``).
    """
    if not path.exists():
        return None
    try:
        state = safe_load(path)
        if not isinstance(state, dict) or "k" not in state:
            raise ValueError("not a pbrl loop state (no iteration counter k)")
    except Exception as e:
        where = shown or str(path)
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if restart_corrupt:
            print(
                f"    checkpoint {where} is corrupt ({reason}); starting the trial from scratch",
                flush=True,
            )
            return None
        raise CorruptCheckpoint(
            f"checkpoint {where} is corrupt ({reason}); rerun with --restart-corrupt to start "
            "that trial from scratch"
        ) from None
    return state


def save_state(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (a crash mid-save leaves the previous file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:  # a temporary file beside it, synced, renamed; never a link
        torch.save(state, fh)


class FileCheckpointer:
    """``Checkpointer`` of a ``pbrl run`` trial: the latest state in ``trial_dir/checkpoint/state.pt``."""

    def __init__(self, trial_dir: Path, every: int, *, restart_corrupt: bool = False) -> None:
        """Checkpoint every ``every`` outer iterations (and at the end)."""
        self.every = int(every)
        self.path = trial_dir / CKPT_DIR / STATE_FILE
        self.restart_corrupt = restart_corrupt
        self._restored: dict[str, Any] | None = None
        self._done = False

    def restore(self) -> dict[str, Any] | None:
        """The saved state (read once, cached), or None."""
        if not self._done:
            self._done = True
            self._restored = load_state(self.path, restart_corrupt=self.restart_corrupt)
        return self._restored

    def save(self, state: dict[str, Any]) -> None:
        """Persist ``state`` atomically."""
        save_state(state, self.path)

    def clear(self) -> None:
        """Remove the checkpoint (the trial is complete: its result files say everything)."""
        shutil.rmtree(self.path.parent, ignore_errors=True)
