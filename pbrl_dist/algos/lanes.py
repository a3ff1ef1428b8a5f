"""Run a group of tabular trials (seeds, problem instances) as ONE batched computation, lane by lane exact.

A *lane* is one trial of the group: solo problem ``problems[i]`` started from seed ``seeds[i]``. The
lanes' problems are stacked along a leading batch dimension (``ProblemSpec.stack``) and the method's
loop (``AlgoSpec.run``) runs once on the stack. Every computation of a batchable loop on a stacked
problem treats the leading dimension as independent problems and gives each lane exactly the bits
(``torch.equal``) it gets alone: contractions are broadcast products summed over one axis (never
``einsum``, whose BLAS kernel differs between a batched and an unbatched call) and iterative solvers
stop per lane (``core.mdp.keep_done``). So each lane's metrics rows, final parameters and
``final_state`` equal those of the same trial run alone through the unbatched path, at the same thread
count.

A lane whose numbers go NaN does not stop the others: its solver iterations run to their caps and its
rows still reach its sink; whether it *diverged* is the caller's call, per lane (no ``DivergenceGuard``
in here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from pbrl_dist.algos.base import Checkpointer, Result
from pbrl_dist.algos.registry import MethodCfg, algo_specs
from pbrl_dist.executors.protocols import Runner
from pbrl_dist.metrics import MetricSink
from pbrl_dist.problems import get_problem, problem_specs

Stack = Callable[[list[Any]], Any]


def batch_reason(
    problem_name: str, problem_cfgs: Sequence[Any], method_cfg: MethodCfg
) -> str | None:
    """Return None when the lanes (one problem config each) can run as one batch, else why not.

    Batchable: the problem has a ``ProblemSpec.stack``, the method's ``AlgoSpec.batchable`` accepts
    ``method_cfg`` (e.g. ``estimator: exact``), and the lanes' problems stack (same sizes, γ, τ, ...:
    the problems are built and stacked here, which is cheap for tabular problems). Fewer than two
    lanes are batchable as long as the problem and method are.

    Returns:
        None, or a one-line reason.
    """
    spec = get_problem(problem_name)
    if spec is None:
        return f"problem {problem_name!r} is not registered"
    if spec.stack is None:
        return f"problem {problem_name} has no ProblemSpec.stack (its instances cannot be batched)"
    algo_name = method_cfg.algo
    algo = algo_specs().get(str(algo_name))
    if algo is None:
        return f"method.algo={algo_name} is not registered"
    if algo.batchable is None:
        return f"method.algo={algo_name} runs one trial at a time (no AlgoSpec.batchable)"
    if not algo.batchable(method_cfg):
        est = getattr(method_cfg, "estimator", "exact")
        if est != "exact":
            return (
                f"method.algo={algo_name} with method.estimator={est} is not batchable "
                "(Monte Carlo estimates are per game)"
            )
        return f"method.algo={algo_name} is not batchable with these method settings"
    if len(problem_cfgs) < 2:
        return None
    try:
        spec.stack([spec.build(cfg) for cfg in problem_cfgs])
    except ValueError as e:
        first = (str(e).splitlines() or [""])[0]
        return f"the lanes' problems do not stack: {first}"
    return None


def find_stack(problem: Any) -> Stack:
    """Return the ``ProblemSpec.stack`` of the registered problem whose builder lives in the module
    of ``problem``'s class (every built-in problem); raise ``ValueError`` when there is none."""
    module = type(problem).__module__
    for spec in problem_specs().values():
        if spec.stack is not None and getattr(spec.build, "__module__", None) == module:
            return spec.stack
    raise ValueError(
        f"no registered ProblemSpec with a stack builds {type(problem).__name__}; pass stack="
    )


class LaneBatch:
    """The stacked problem of a group, started lane by lane as the solo runs start.

    ``init_params`` ignores its seed: lane i starts from ``problems[i].init_params(seeds[i], scale)``,
    stacked, so it starts exactly as the solo run. ``final_state`` returns nothing (``run_lanes``
    takes each lane's from its solo problem). Everything else is the stacked problem's.
    """

    def __init__(
        self, problems: Sequence[Any], seeds: Sequence[int], *, stack: Stack | None = None
    ) -> None:
        """Stack ``problems`` (lane i = problems[i], seed seeds[i]) with ``stack`` (default: the
        problem's ``ProblemSpec.stack``, ``find_stack``)."""
        if not problems or len(problems) != len(seeds):
            raise ValueError(f"need one seed per problem (got {len(problems)} and {len(seeds)})")
        self.problems = list(problems)
        self.seeds = [int(s) for s in seeds]
        self.stacked = (find_stack(problems[0]) if stack is None else stack)(self.problems)

    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, ...]:
        """Return each lane's solo ``init_params(seeds[i], scale)``, stacked (``seed`` is ignored)."""
        del seed
        inits = [p.init_params(s, scale) for p, s in zip(self.problems, self.seeds, strict=True)]
        return tuple(torch.stack(parts) for parts in zip(*inits, strict=True))

    def final_state(self, *args: Any) -> dict[str, Any]:
        """Nothing: ``run_lanes`` computes each lane's final state from its solo problem."""
        del args
        return {}

    def __getattr__(self, name: str) -> Any:
        """Delegate to the stacked problem."""
        if name == "stacked":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.stacked, name)


def lane_problem(
    problems: Sequence[Any], seeds: Sequence[int], *, stack: Stack | None = None
) -> LaneBatch:
    """Return the ``LaneBatch`` of lanes (``problems[i]``, ``seeds[i]``): the problem a runner for the
    batched run is made for (``executors.make_runner``), and what ``run_lanes`` runs the loop on."""
    return LaneBatch(problems, seeds, stack=stack)


def lane_row(row: Mapping[str, Any], lane: int, num_lanes: int) -> dict[str, Any]:
    """Return the row lane ``lane`` would have logged alone: a list value of length ``num_lanes`` →
    its ``lane``-th element; any other value (``iter``, ...) as it is."""
    return {
        k: v[lane] if isinstance(v, list) and len(v) == num_lanes else v for k, v in row.items()
    }


class LaneSplit:
    """A ``MetricSink`` that forwards to ``sinks[i]`` the row lane i would have logged alone.

    Every lane's sink gets every row, NaN or not. If a sink raises, the others still get the row;
    the first exception is raised afterwards (which ends the whole batch: pass sinks that do not
    raise, and judge divergence per lane).
    """

    def __init__(self, sinks: Sequence[MetricSink]) -> None:
        """One sink per lane."""
        self.sinks = list(sinks)

    def log(self, row: Mapping[str, Any]) -> None:
        """Split ``row`` and forward each lane's part."""
        n = len(self.sinks)
        first: Exception | None = None
        for i, sink in enumerate(self.sinks):
            try:
                sink.log(lane_row(row, i, n))
            except Exception as e:
                first = first or e
        if first is not None:
            raise first


def run_lanes(
    problems: Sequence[Any],
    method_cfg: Any,
    seeds: Sequence[int],
    *,
    sinks: Sequence[MetricSink],
    runner: Runner | None = None,
    ckpt: Checkpointer | None = None,
    stack: Stack | None = None,
    batch: LaneBatch | None = None,
) -> list[Result]:
    """Run lane i = (``problems[i]``, ``seeds[i]``) of a group as one batched run; one ``Result`` each.

    The registered loop ``AlgoSpec.run`` of ``method_cfg.algo`` runs once on a ``LaneBatch`` (check
    ``batch_reason`` first). ``sinks[i]`` receives the rows lane i would have logged alone. ``ckpt``
    saves and restores the loop's batched state (one state for all lanes); resuming from it is
    bitwise exact. The loop's ``seed`` argument is ``seeds[0]``: a batchable loop uses its seed only
    through ``init_params``. ``runner`` (default: a local one) is made for the ``LaneBatch``
    (``lane_problem``); ``batch``, when given, is that very ``LaneBatch`` (else it is built here).

    Returns:
        per lane: its slices of the loop's tensor fields (x, y), its part of the last row, and
        ``problems[i].final_state(x_i, y_i)`` (what ``final_state.npz`` of the solo run holds).
    """
    n = len(problems)
    if not (n == len(seeds) == len(sinks)):
        raise ValueError(
            f"need one seed and one sink per problem (got {n}, {len(seeds)}, {len(sinks)})"
        )
    if batch is None:
        batch = LaneBatch(problems, seeds, stack=stack)
    elif batch.problems != list(problems) or batch.seeds != [int(s) for s in seeds]:
        raise ValueError("batch is not the LaneBatch of these problems and seeds")
    run = algo_specs()[method_cfg.algo].run
    res: Result = run(
        batch, method_cfg, seed=int(seeds[0]), sink=LaneSplit(sinks), runner=runner, ckpt=ckpt
    )
    out = []
    for i, problem in enumerate(problems):
        lane = {
            f.name: getattr(res, f.name)[i].clone()
            for f in dataclasses.fields(res)
            if isinstance(getattr(res, f.name), torch.Tensor)
        }
        lane_res = dataclasses.replace(res, **lane, metrics=lane_row(res.metrics, i, n))
        lane_res.final_state = problem.final_state(lane_res.x, lane_res.y)
        out.append(lane_res)
    return out
