"""Seed groups: what one Tune trial of ``pbrl sweep`` is.

By default (``sweep.trials: group``) a Tune trial is one *configuration* — one method, one grid point,
one draw of the search — over all of its seeds, and over the grid values of ``sweep.group_over`` (the
instances a report averages over, e.g. ``problem.game``). Its members are ordinary trials: each keeps
its own folder, ``config.yaml``, ``metrics.jsonl``, ``result.json`` and W&B run, with the numbers it
has when run alone. What Tune sees is the group: the searcher samples a configuration once for all of
its seeds, and ASHA compares (and stops) whole configurations by their across-seed aggregate.

``sweep.trials: seed`` makes every trial a group of one (one Tune trial per seed).

A group whose members can run as one batched computation (``algos.lanes.batch_reason`` is None:
tabular problems with exact gradients) runs as *lanes* of one batch in one learner; any other group
runs its members side by side, one thread each, in the trial's process, with the group's resources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec
from pbrl_dist.config.schema import SweepBlock
from pbrl_dist.launch.specs import Bundles, respec, search_trial_name, trial_bundles


@dataclass(frozen=True)
class Group:
    """One Tune trial: a configuration over its seeds.

    Attributes:
        name: the group's name (its members' names without the seed and ``group_over`` parts); a
            Tune trial's ``config["trial"]``.
        members: the member trials, in sweep order; identical but for ``seed`` and ``group_over`` keys.
        batched: whether the members run as lanes of one batched computation.
    """

    name: str
    members: tuple[TrialSpec, ...]
    batched: bool = False

    @property
    def size(self) -> int:
        """Number of members (seeds × ``group_over`` values)."""
        return len(self.members)

    def bundles(self) -> Bundles:
        """The group's placement-group bundles.

        Batched: one learner (the members share it) plus one member's actors. Side by side: one
        learner bundle with every member's learner CPUs, then every member's actor bundles.
        """
        first = trial_bundles(self.members[0].cfg)
        if self.batched or self.size == 1:
            return first
        learner = {"CPU": first.bundles[0].get("CPU", 0.0) * self.size}
        actors = tuple(b for m in self.members for b in trial_bundles(m.cfg).bundles[1:])
        return Bundles((learner, *actors), first.strategy)


def _key(t: TrialSpec, over: Sequence[str]) -> str:
    """What a member shares with its group: the resolved config without seed and ``over`` keys."""
    c = {k: v for k, v in t.container.items() if k != "seed"}
    for dotted in over:
        *path, leaf = dotted.split(".")
        node: Any = c
        for p in path:
            node = node.get(p) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and leaf in node:
            # copy the branch before dropping the leaf: the container is the trial's own
            c = _without(c, [*path, leaf])
    return json.dumps(c, sort_keys=True, default=str)


def _without(d: Mapping[str, Any], path: list[str]) -> dict[str, Any]:
    head, *rest = path
    out = dict(d)
    if rest:
        out[head] = _without(d[head], rest)
    else:
        out.pop(head, None)
    return out


def _group_name(first: TrialSpec, over: Sequence[str]) -> str:
    """The first member's name without its seed token (last) and its ``group_over`` tokens."""
    parts = first.name.split("__")
    if parts and parts[-1] == f"s{first.cfg.seed}":
        parts = parts[:-1]
    leaves = {k.split(".")[-1] for k in over}
    kept = [p for p in parts if p.split("=", 1)[0] not in leaves or "=" not in p]
    return "__".join(kept) or first.name


def make_groups(trials: Sequence[TrialSpec], block: SweepBlock) -> list[Group]:
    """The sweep's Tune trials: configurations over their seeds (``sweep.trials``)."""
    if block.trials == "seed":
        return [Group(t.name, (t,)) for t in trials]
    over = [k for k in block.group_over if k in block.grid]
    order: dict[str, list[TrialSpec]] = {}
    for t in trials:
        order.setdefault(_key(t, over), []).append(t)
    groups = []
    for members in order.values():
        # a group of one keeps its member's name (as with sweep.trials=seed)
        name = members[0].name if len(members) == 1 else _group_name(members[0], over)
        groups.append(Group(name, tuple(members), batched=_batched(members)))
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(
            f"sweep.trials: two configurations are both named {dup!r} once their seeds are grouped; "
            "give the methods or grid values distinct names, or set sweep.trials=seed"
        )
    return groups


def _batched(members: Sequence[TrialSpec]) -> bool:
    """Whether the members can run as lanes of one batch (``algos.lanes.batch_reason``)."""
    if len(members) < 2:
        return False
    from pbrl_dist.algos.lanes import batch_reason

    first = members[0].cfg
    return batch_reason(first.problem.name, [m.cfg.problem for m in members], first.method) is None


def group_spec(config: Mapping[str, Any], groups: Mapping[str, Group], trial_id: str) -> Group:
    """The group a Tune trial runs: ``config["trial"]`` with its sampled values, if any, applied to
    every member alike (each member named as a sampled trial is: ``search_trial_name``)."""
    base = groups[config["trial"]]
    sample = dict(config.get("search") or {})
    if not sample:
        return base
    members = tuple(
        respec(m, sample, name=search_trial_name(m.name, sample, trial_id)) for m in base.members
    )
    # a sampled value may decide batching (e.g. method.estimator): judged on the sampled members
    batched = _batched(members)
    return Group(search_trial_name(base.name, sample, trial_id), members, batched=batched)


def sweep_groups(sweep: Sweep, block: SweepBlock) -> list[Group]:
    """``make_groups`` of a loaded sweep."""
    return make_groups(sweep.trials, block)
