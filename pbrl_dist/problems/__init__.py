"""Applications: each file builds x, the lower MDP map x ↦ M_τ(x), f and the exact metrics.

``PROBLEMS`` maps the config's ``problem.name`` to (config dataclass, builder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbrl_dist.problems import stackelberg

PROBLEMS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "stackelberg": (stackelberg.StackelbergConfig, stackelberg.build),
}
