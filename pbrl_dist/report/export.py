"""``pbrl report DIR --export-best FILE``: a sweep file that runs each method's best setting.

The choice is the one ``--confirm-seeds`` makes (``report.confirm.pick_best``): within each method, the
setting (values of the ``method.``/``dist.`` axes) with the best mean final metric over its complete
trials. FILE holds, for every method, the resolved config of one trial of that setting, read from its
``config.yaml``: the shared ``problem:``, ``dist:`` and ``logging:`` blocks, the method fields every
method shares in ``method:`` and the rest in ``methods.<name>:``; the seeds are the record's
``sweep.seeds`` (else the seeds found in DIR). No hyperparameter axis is left; the problem instances
the setting was scored on (``problem.*`` axes, e.g. ``problem.game``) stay a grid with the values
DIR ran, so the file runs the setting where it was chosen. ``pbrl run FILE`` and ``pbrl sweep FILE``
read it as is.

Before FILE is written, it is loaded with the project's loader and every trial is compared with the
chosen trial's config: equal except the seed, the experiment name (``<name>_best``, so the default
results folder is not DIR's) and the instance values; a method field that the method does not read
may come out at its default (the loader refuses to set a field nothing reads), which a comment in FILE
lists. Anything else is refused, and nothing is written.
"""

from __future__ import annotations

import collections
import datetime
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import yaml

from pbrl_dist.config.loader import ConfigError, TrialSpec, load_sweep
from pbrl_dist.report.confirm import pick_best, unique_rows
from pbrl_dist.report.tables import load_results, short
from pbrl_dist.safe_io import atomic_write_text

FLAG = "--export-best"
SHARED_BLOCKS = ("problem", "dist", "logging")
KEEP_SWEEP_KEYS = ("max_failures", "max_concurrent_trials", "max_trials")
"""Keys of the recorded ``sweep:`` block that FILE keeps (resources, not choices)."""
_MISSING = object()


def _record(out: Path) -> dict[str, Any]:
    path = out / "sweep.yaml"
    if not path.is_file():
        raise ConfigError(f"{FLAG}: {path} is missing (was {out} written by pbrl run/sweep?)")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _pop(node: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.get(part)
        node = child if isinstance(child, dict) else {}
    node.pop(last, None)


def _copy(node: Any) -> Any:
    """A deep copy of a YAML document (keys in their order)."""
    return yaml.safe_load(yaml.safe_dump(node, sort_keys=False))


def _key(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip()


def _reads(method: dict[str, Any]) -> frozenset[str]:
    """The fields of a resolved ``method:`` block that its algo's loop reads (``AlgoSpec.fields_read``)."""
    from omegaconf import OmegaConf

    from pbrl_dist.algos.registry import MethodCfg, algo_specs

    spec = algo_specs()[str(method["algo"])]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec.schema), method))
    return spec.fields_read(cast(MethodCfg, cfg))  # an instance of the spec's own schema


def _method_blocks(
    methods: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(shared ``method:`` block, ``methods.<name>`` blocks) that give each method its resolved fields.

    A field is set only where some method reads it (the loader refuses a field nothing reads): equal
    for every method → shared; else each reader gets its own value, over a shared value that the
    methods not reading it already hold (so their configs match too, where they agree).
    """
    reads = {m: _reads(block) for m, block in methods.items()}
    shared: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {m: {} for m in methods}
    keys = list(dict.fromkeys(k for block in methods.values() for k in block if k != "name"))
    for k in keys:
        readers = [m for m in methods if k in reads[m]]
        if not readers:
            continue
        values = {m: block.get(k, _MISSING) for m, block in methods.items()}
        if (
            all(v is not _MISSING for v in values.values())
            and len({_key(v) for v in values.values()}) == 1
        ):
            shared[k] = values[readers[0]]
            continue
        base: Any = _MISSING
        idle = [values[m] for m in methods if m not in readers and values[m] is not _MISSING]
        if idle and all(v is not _MISSING for v in values.values()):
            common = collections.Counter(_key(v) for v in idle).most_common(1)[0][0]
            base = next(v for v in idle if _key(v) == common)
            shared[k] = base
        for m in readers:
            if base is _MISSING or _key(values[m]) != _key(base):
                own[m][k] = values[m]
    return shared, own


def _same_blocks(chosen: dict[str, dict[str, Any]], instances: Sequence[str]) -> dict[str, Any]:
    """The ``problem``/``dist``/``logging`` blocks all chosen configs share (instance keys removed)."""
    blocks: dict[str, Any] = {}
    first = next(iter(chosen))
    for block in SHARED_BLOCKS:
        per = {}
        for m, c in chosen.items():
            b = _copy(c.get(block) or {})
            for axis in instances:
                if axis.startswith(block + "."):
                    _pop(b, axis.split(".", 1)[1])
            per[m] = b
        for m, b in per.items():
            for k in dict.fromkeys([*per[first], *b]):
                if _key(b.get(k)) != _key(per[first].get(k)):
                    raise ConfigError(
                        f"{FLAG}: the best settings of {first} and {m} differ in {block}.{k} "
                        f"({per[first].get(k)!r} vs {b.get(k)!r}); a sweep file has one {block}: "
                        "block (export one method's folder, or set it per method by hand)"
                    )
        if per[first]:
            blocks[block] = per[first]
    return blocks


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where the nested mappings ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in dict.fromkeys([*a, *b]):
            out += _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{prefix}{k}.")
        return out
    same = a is not _MISSING and b is not _MISSING and _key(a) == _key(b)
    return [] if same else [prefix.rstrip(".")]


def _verify(
    text: str,
    chosen: dict[str, dict[str, Any]],
    instances: Sequence[str],
    expected_count: int,
) -> tuple[list[TrialSpec], dict[str, list[str]]]:
    """Load ``text`` with the project's loader; return its trials and, per method, the unread method
    fields that come out other than in the chosen config. Raises ``ConfigError`` on any other difference."""
    with tempfile.TemporaryDirectory(prefix="pbrl_export_") as tmp:
        path = Path(tmp) / "best.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            trials = load_sweep(path).trials
        except ConfigError as e:
            raise ConfigError(
                f"{FLAG}: the exported file does not load ({e}); nothing written"
            ) from None
    unread: dict[str, list[str]] = {}
    for t in trials:
        m = t.cfg.method.name
        want = _copy(chosen[m])
        want["seed"], want["exp"] = t.container["seed"], t.container.get("exp")
        for axis in instances:
            section, rest = axis.split(".", 1)
            value = _get(t.container, axis)
            node = want.setdefault(section, {})
            *parents, last = rest.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        reads = _reads(chosen[m]["method"])
        for key in _diff(want, t.container):
            if key.startswith("method.") and key.split(".", 1)[1] not in reads:
                unread.setdefault(m, [])
                if key not in unread[m]:
                    unread[m].append(key)
                continue
            raise ConfigError(
                f"{FLAG}: trial {t.name} of the exported file would run {key}="
                f"{_get(t.container, key)!r}, not the chosen {_get(want, key)!r}; nothing written"
            )
    if len(trials) != expected_count or {t.cfg.method.name for t in trials} != set(chosen):
        raise ConfigError(
            f"{FLAG}: the exported file has {len(trials)} trials, expected {expected_count}; "
            "nothing written"
        )
    return trials, unread


def _instance_grid(
    everything: pd.DataFrame, instances: Sequence[str], grid: dict[str, Any]
) -> dict[str, list[Any]]:
    """Each instance axis with the values DIR's sweep gridded (else those found in DIR)."""
    out: dict[str, list[Any]] = {}
    for axis in instances:
        if isinstance(grid.get(axis), list):
            out[axis] = list(grid[axis])
        else:
            out[axis] = [v[0] for v in unique_rows(everything, [axis])]
    return out


def export_best(
    out: Path,
    file: Path,
    *,
    metric: str | None = None,
    mode: str | None = None,
    overwrite: bool = False,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Write ``file``: a sweep file running each method's best setting in ``out`` (module docstring).

    Returns what was written: metric, mode, axes, seeds and per method the chosen trial and its mean.
    Raises ``ConfigError`` (one line; nothing written) when ``file`` exists without ``overwrite``,
    nothing in ``out`` can be chosen, or the file would not reproduce the chosen configs.
    """
    file = Path(file)
    check_export_target(file, overwrite=overwrite)
    rec = _record(out)
    block = rec.get("sweep") or {}
    grid = block.get("grid") or {}
    axes = list(dict.fromkeys([*grid, *(block.get("search") or {})]))
    _, everything = load_results(out)
    try:
        best, metric, mode, hyper, instances = pick_best(
            everything, axes, metric, mode, flag=f"{FLAG}: {out}"
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None

    chosen: dict[str, dict[str, Any]] = {}
    picked: dict[str, dict[str, Any]] = {}
    # Methods in the order the sweep ran them (the record's trial list), not by score.
    order = {str(t): i for i, t in enumerate(rec.get("trials") or [])}
    first = everything.assign(_at=[order.get(str(t), len(order)) for t in everything["trial"]])
    rank = first.groupby("method.name")["_at"].min().to_dict()
    rows = sorted(best.to_dict("records"), key=lambda r: rank.get(r["method.name"], len(order)))
    for row in rows:
        m = str(row["method.name"])
        trial = str(row["trials"][0])
        chosen[m] = yaml.safe_load((out / trial / "config.yaml").read_text(encoding="utf-8"))
        picked[m] = {
            "trial": trial,
            "setting": {k: _plain(row[k]) for k in hyper},
            "mean": float(row["mean"]),
            "n": int(row["n"]),
            "compared": int(row["compared"]),
        }
    exp = str(next(iter(chosen.values())).get("exp") or rec.get("name") or out.name)
    seeds = [int(s) for s in block.get("seeds") or []] or sorted(
        {int(s) for s in everything["seed"].dropna()}
    )
    inst_grid = _instance_grid(everything, instances, grid)
    shared, own = _method_blocks({m: c["method"] for m, c in chosen.items()})
    blocks = _same_blocks(chosen, instances)
    sweep: dict[str, Any] = {"seeds": seeds}
    if inst_grid:
        sweep["grid"] = inst_grid
    sweep |= {k: block[k] for k in KEEP_SWEEP_KEYS if k in block}
    data: dict[str, Any] = {
        "name": f"{exp}_best",
        "description": f"best setting of each method of {exp} by {metric} ({mode})",
        "problem": blocks.get("problem", {}),
        "method": shared,
        "methods": {m: own[m] for m in chosen},
        **{k: blocks[k] for k in ("dist", "logging") if k in blocks},
        "sweep": sweep,
    }
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    count = len(chosen) * len(seeds)
    for values in inst_grid.values():
        count *= len(values)
    trials, unread = _verify(body, chosen, instances, count)

    left = sorted(set(everything["method.name"].astype(str)) - set(chosen))
    when = (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    how = [
        f"sweep {rec.get('name', exp)} from {rec.get('source', '?')}",
        *(["--smoke"] if rec.get("smoke") else []),
        *([f"overrides {' '.join(map(str, rec['overrides']))}"] if rec.get("overrides") else []),
        *([f"launch {rec['launch_id']}"] if rec.get("launch_id") else []),
    ]
    over = " × ".join(["seeds", *instances])
    lines = [
        f"# Each method's best setting in {out.resolve()}, exported by `pbrl report {out} "
        f"{FLAG} {file}` on {when}.",
        f"# source: {', '.join(how)}",
        f"# chosen like --confirm-seeds: the best mean final {metric} (mode {mode}) over {over} of "
        f"each setting's complete trials; hyperparameter axes: {', '.join(hyper) or 'none'}",
    ]
    for m, p in picked.items():
        setting = " ".join(f"{k.split('.')[-1]}={short(v)}" for k, v in p["setting"].items())
        lines.append(
            f"#   {m}{' ' + setting if setting else ''}: mean {p['mean']:.4g} over {p['n']} trials "
            f"(best of {p['compared']} settings); config of trial {p['trial']}"
        )
    if left:
        lines.append(f"# left out (no complete trial reports {metric}): {', '.join(left)}")
    for m, keys in unread.items():
        lines.append(f"# {m}: not set, since {m} does not read them: {', '.join(keys)}")
    lines += [
        f"# Every trial runs its method's chosen config except the seed ({seeds})"
        + (f" and {', '.join(instances)} (every value of the source)" if instances else "")
        + f": {len(trials)} trials.",
        f"#   pbrl run {file}   (or pbrl sweep {file})",
    ]
    atomic_write_text(file, "\n".join(lines) + "\n" + body)
    print(f"\nexported the best setting of {len(chosen)} method(s) by {metric} ({mode}) -> {file}")
    for line in lines[3 : 3 + len(picked)]:
        print(line[2:])
    print(f"  run it: pbrl run {file}")
    return {
        "metric": metric,
        "mode": mode,
        "hyperparameter_axes": hyper,
        "instance_axes": instances,
        "seeds": seeds,
        "methods": picked,
        "trials": len(trials),
    }


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def check_export_target(file: Path, *, overwrite: bool) -> None:
    """Refuse (one line) an existing ``file`` without ``overwrite``, a folder, or a missing parent."""
    if file.exists() or file.is_symlink():
        if not overwrite:
            raise ConfigError(f"{FLAG} {file}: exists; pass --overwrite to replace it")
        if file.is_dir():
            raise ConfigError(f"{FLAG} {file}: is a folder, not a sweep file")
    if not file.parent.is_dir():
        raise ConfigError(f"{FLAG} {file}: no folder {file.parent}")
