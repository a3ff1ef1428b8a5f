"""Outer loops, one readable file each: PBRL (Algorithm 1) and the independent PG baseline.

``ALGOS`` maps ``method.algo`` to the loop's ``run(problem, cfg, *, seed, sink, runner, ckpt)``;
``METHOD_SCHEMAS`` maps it to the dataclass that types and closes the ``method:`` config block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbrl_dist import rlhf
from pbrl_dist.algos import incentive, indep_pg, pbrl
from pbrl_dist.algos.base import MethodConfig

ALGOS: dict[str, Callable[..., Any]] = {
    "pbrl": pbrl.run,
    "indep_pg": indep_pg.run,
    "pbrl_ni": incentive.run_pbrl_ni,
    "metagrad": incentive.run_metagrad,
    "start_line": incentive.run_start_line,
}
METHOD_SCHEMAS: dict[str, type] = dict.fromkeys(ALGOS, MethodConfig)

# Deep RLHF (A2C oracle / DRLHF / PBRL) brings its own typed config.
ALGOS["rlhf"] = rlhf.run
METHOD_SCHEMAS["rlhf"] = rlhf.RLHFConfig
