"""Tabular outer loops, one readable file each: PBRL (Algorithm 1), independent PG, incentive design.

Each loop registers one ``AlgoSpec`` (``algos/registry.py``) in its own module: run function, method
schema, the fields it reads and their allowed values. Importing this package registers its own loops;
deep RLHF (``rlhf/``, above this package) registers ``rlhf`` when imported, and ``pbrl_dist.catalog``
imports every built-in (``config/`` imports the catalog). The mappings below are read-only views of
the registry:

- ``ALGOS``: ``method.algo`` → the loop's ``run(problem, cfg, *, seed, sink, runner, ckpt)``;
- ``METHOD_SCHEMAS``: ``method.algo`` → the dataclass that types and closes the ``method:`` block;
- ``ALGO_SPECS``: ``method.algo`` → its ``AlgoSpec``.
"""

from __future__ import annotations

from pbrl_dist.algos import incentive, indep_pg, pbrl  # noqa: F401  (register)
from pbrl_dist.algos.registry import AlgoSpec, AlgoView, algo_specs, register_algo

ALGO_SPECS: AlgoView = AlgoView(lambda s: s)
ALGOS: AlgoView = AlgoView(lambda s: s.run)
METHOD_SCHEMAS: AlgoView = AlgoView(lambda s: s.schema)

__all__ = ["ALGOS", "ALGO_SPECS", "METHOD_SCHEMAS", "AlgoSpec", "algo_specs", "register_algo"]
