"""``pbrl report DIR --confirm-seeds N``: re-run each method's best setting on N fresh seeds.

The sweep's axes (grid and search keys, read from ``DIR/sweep.yaml``) under ``method.``/``dist.`` are
hyperparameters; those under ``problem.`` (``problem.game``) are problem instances and, like the seeds,
are averaged over, never chosen (``pbrl_dist.report.confirm``). Within every method, the setting with
the best mean final metric over its complete trials (seeds × instances) is chosen; its config (from one
of its trials' ``config.yaml`` per instance) is re-run on seeds never used in ``DIR``, on every instance
of the grid, locally like ``pbrl run``, into ``DIR/confirm/``. The point: a winner picked on the same
seeds it was scored on is optimistically biased; fresh seeds give an honest number per method.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec
from pbrl_dist.launch.local import TrialsDiverged, run_local
from pbrl_dist.launch.specs import respec, spec_from_container
from pbrl_dist.report.confirm import fresh_seeds, mean_ci, pick_best, unique_rows
from pbrl_dist.report.tables import load_results, short
from pbrl_dist.safe_io import atomic_write_text

CONFIRM_JSON = "confirm.json"
"""The summary of a confirmation, in ``DIR/confirm/``."""


def spec_from_dir(trial_dir: Path) -> TrialSpec:
    """Rebuild a validated ``TrialSpec`` from a trial folder's ``config.yaml``."""
    container = yaml.safe_load((trial_dir / "config.yaml").read_text(encoding="utf-8"))
    return spec_from_container(trial_dir.name, container)


def _block(out: Path) -> dict[str, Any]:
    rec_path = out / "sweep.yaml"
    if not rec_path.exists():
        raise ConfigError(
            f"--confirm-seeds: {rec_path} is missing (was {out} written by pbrl run/sweep?)"
        )
    rec = yaml.safe_load(rec_path.read_text(encoding="utf-8")) or {}
    return rec.get("sweep") or {}


def _axes(block: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys([*(block.get("grid") or {}), *(block.get("search") or {})]))


def _name_value(axis: str, value: Any, grid: dict[str, Any]) -> str:
    """How a trial name spells ``value``: as the grid lists it (``lam=20``, like ``pbrl run``), else
    shortened (a sampled search value)."""
    for raw in grid.get(axis) or []:
        try:
            if raw == value:
                return str(raw)
        except (TypeError, ValueError):
            continue
    return short(value)


def confirm_name(method: str, point: dict[str, Any], seed: int, grid: dict[str, Any]) -> str:
    """Name of a re-run trial: ``<method>__<axis=value>...__s<seed>``, like a grid trial of ``pbrl run``."""
    parts = [method, *(f"{k.split('.')[-1]}={_name_value(k, v, grid)}" for k, v in point.items())]
    return re.sub(r"[^\w=.,+-]", "_", "__".join([*parts, f"s{seed}"]))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _scalar(v: Any) -> float | None:
    if isinstance(v, list):
        return float(sum(v) / len(v)) if v else None
    return None if v is None else float(v)


def _choose(
    out: Path, metric: str | None, mode: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, str, str, list[str], list[str], dict]:
    """Load, rank within methods; return (all trials, each method's best setting, metric, mode,
    hyperparameter axes, instance axes, sweep block)."""
    _, everything = load_results(out)
    block = _block(out)
    try:
        best, metric, mode, hyper, instances = pick_best(
            everything, _axes(block), metric, mode, flag="--confirm-seeds"
        )
    except ValueError as e:
        raise ConfigError(f"{e} (in {out})") from None
    return everything, best, metric, mode, hyper, instances, block


def confirm_best(
    out: Path,
    n: int,
    *,
    metric: str | None = None,
    mode: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pick each method's best setting in ``out`` and re-run it on ``n`` fresh seeds into ``out/confirm``.

    Returns (and writes to ``out/confirm/confirm.json``) the metric, mode, axes, fresh seeds and, per
    method, the chosen setting, its grid mean and the confirmation mean with its 95% bootstrap CI.
    """
    if n < 1:
        raise ConfigError(f"--confirm-seeds: must be ≥ 1 (got {n})")
    everything, best, metric, mode, hyper, instances, block = _choose(out, metric, mode)
    seeds = fresh_seeds({int(s) for s in everything["seed"].dropna()}, n)
    grid = block.get("grid") or {}
    order = [a for a in _axes(block) if a in hyper or a in instances]
    records = best.to_dict("records")
    # Every instance of the grid (every problem.* value combination in the folder, any status).
    grid_instances = [
        dict(zip(instances, t, strict=True)) for t in unique_rows(everything, instances)
    ]
    specs: list[TrialSpec] = []
    owner: dict[str, int] = {}  # re-run trial name -> index in ``records``
    for i, row in enumerate(records):
        sub = everything[_same_setting(everything, row, ["method.name", *hyper])]
        sub = sub.sort_values("complete", ascending=False, kind="stable")  # scored trials first
        for inst in grid_instances or [{}]:
            here = sub[_same_setting(sub, inst, instances)]
            # The setting's own trial on this instance; else (an interrupted grid never reached
            # it) another trial of the setting moved to this instance.
            base_row = (here if not here.empty else sub).iloc[0]
            base = spec_from_dir(out / str(base_row["trial"]))
            point = {a: inst[a] if a in inst else _plain(base_row[a]) for a in order}
            for s in seeds:
                name = confirm_name(str(row["method.name"]), point, s, grid)
                while name in owner:  # two values that print alike: keep names unique
                    name += "_"
                owner[name] = i
                specs.append(respec(base, {"seed": s, **inst}, name=name))

    over = " × ".join(["seeds", *instances])
    print(
        f"\nbest setting of each method by {metric} ({mode}), mean over {over} "
        f"(hyperparameter axes: {', '.join(hyper) or 'none'}):"
    )
    for row in records:
        print(
            f"  {_setting(row, hyper)}: grid mean {row['mean']:.4g} over {row['n']} trials "
            f"(seeds {row['seeds']}; best of {row['compared']} settings)"
        )
    print(
        f"re-running {len(records)} setting(s) on {n} fresh seeds {seeds}"
        + (f" × every {', '.join(instances)} of the grid" if instances else "")
        + f": {len(specs)} trials -> {out / 'confirm'}"
    )
    sweep = Sweep(
        name=f"{specs[0].cfg.exp}_confirm",
        path=out / "sweep.yaml",
        trials=specs,
        block={"seeds": seeds},
        raw={},
    )
    if overwrite:  # ours, but not a file run_local knows: it would refuse to replace the folder
        (out / "confirm" / CONFIRM_JSON).unlink(missing_ok=True)
    try:
        rows = run_local(sweep, out / "confirm", overwrite=overwrite)
    except TrialsDiverged as e:  # a diverged seed has no value: the others are the confirmation
        print(f"confirmation: {e}; left out", flush=True)
        rows = e.rows
    values: list[list[float | None]] = [[] for _ in records]
    names: list[list[str]] = [[] for _ in records]
    for spec, r in zip(specs, rows, strict=True):
        name = str(r.get("trial", spec.name))
        values[owner[name]].append(_scalar(r.get(metric)))
        names[owner[name]].append(name)

    methods = []
    print(f"confirmation on fresh seeds: {metric}, mean ± half-width of the 95% bootstrap CI")
    for row, vals, trial_names in zip(records, values, names, strict=True):
        got = [v for v in vals if v is not None]
        mean, lo, hi = mean_ci(got) if got else (float("nan"),) * 3
        methods.append(
            {
                "method": str(row["method.name"]),
                "config": {k: _plain(row[k]) for k in ["method.name", *hyper]},
                "settings_compared": int(row["compared"]),
                "grid_mean": float(row["mean"]),
                "grid_n": int(row["n"]),
                "grid_seeds": [int(s) for s in row["seeds"]],
                "instances": grid_instances,
                "confirm_trials": trial_names,
                "confirm_values": vals,
                "confirm_mean": mean,
                "confirm_ci95": [lo, hi],
            }
        )
        print(
            f"  {_setting(row, hyper)}: {mean:.4g} ± {(hi - lo) / 2:.2g} "
            f"[{lo:.4g}, {hi:.4g}] (n={len(got)}); on the grid's own seeds it was {row['mean']:.4g}"
        )
    summary = {
        "metric": metric,
        "mode": mode,
        "hyperparameter_axes": hyper,
        "instance_axes": instances,
        "confirm_seeds": seeds,
        "methods": methods,
    }
    atomic_write_text(out / "confirm" / CONFIRM_JSON, json.dumps(summary, indent=1), root=out)
    return summary


def _same_setting(frame: pd.DataFrame, row: dict[str, Any], keys: list[str]) -> pd.Series:
    """Rows of ``frame`` whose ``keys`` equal ``row``'s (NaN equal to NaN)."""
    mask = pd.Series(True, index=frame.index)
    for k in keys:
        v = row[k]
        mask &= frame[k].isna() if pd.isna(v) else frame[k] == v
    return mask


def _setting(row: dict[str, Any], hyper: list[str]) -> str:
    shown = " ".join(f"{k.split('.')[-1]}={short(row[k])}" for k in hyper)
    return f"{row['method.name']}" + (f" {shown}" if shown else "")
