"""Non-finite is a state, not a number (issue #20, point 3), driven through the ``pbrl`` command line.

A trial whose metrics go NaN or ±inf ends as *diverged*: ``result.json`` names the metric and the
iteration, the progress line and the exit status (3) say so, ``--resume`` never runs it again,
``metrics.jsonl`` keeps the non-finite values as JSON numbers, and ``pbrl report`` leaves the trial
out, says how many, and shows the ``n`` that entered each statistic. λ = 1e308 makes the penalized
objective overflow on the tiny Stackelberg game; λ = 20 runs normally.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _tiny import TINY

from pbrl_dist.cli import main

MIXED = TINY.replace("  seeds: [0]", "  seeds: [0, 1]\n  grid:\n    method.lam: [20.0, 1.0e308]")
DIVERGED_EXIT = 3


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A sweep of 4 trials: λ = 20 (complete) and λ = 1e308 (diverges), seeds 0 and 1."""
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED, encoding="utf-8")
    return path


def _result(trial_dir: Path) -> dict[str, Any]:
    return json.loads((trial_dir / "result.json").read_text(encoding="utf-8"))


def _rows(trial_dir: Path) -> list[dict[str, Any]]:
    lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines]


def _first_non_finite(rows: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(metric, iteration) of the first NaN/±inf value in the rows, as the file says."""
    for row in rows:
        for k, v in row.items():
            vals = v if isinstance(v, list) else [v]
            if any(isinstance(x, float) and not math.isfinite(x) for x in vals):
                return k, int(row["iter"])
    return None


def _trials(out: Path, status: str) -> list[Path]:
    return sorted(
        p.parent for p in out.glob("*/result.json") if _result(p.parent).get("status") == status
    )


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_run_trial_ends_a_non_finite_trial_as_diverged_naming_metric_and_iteration(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, stdout, stderr = _run(capsys, ["run", str(mixed), "--out", str(out), "--no-report"])
    assert rc == DIVERGED_EXIT, stdout + stderr
    diverged, complete = _trials(out, "diverged"), _trials(out, "complete")
    assert [p.name for p in diverged] == sorted(p.name for p in out.glob("*lam=1.0e308*"))
    assert len(complete) == 2 and all("lam=20.0" in p.name for p in complete)
    assert "2/4 trials diverged" in stderr
    for tdir in diverged:
        res = _result(tdir)
        text = (tdir / "metrics.jsonl").read_text(encoding="utf-8")
        rows = _rows(tdir)
        # metrics.jsonl keeps non-finite floats as JSON numbers, not strings
        assert '"nan"' not in text and '"inf"' not in text and "NaN" in text
        where = _first_non_finite(rows)
        assert where is not None
        assert (res["metric"], res["iter"]) == where
        assert rows[-1]["iter"] == res["iter"]  # the loop stopped at the diverged row
        assert isinstance(res["final"][res["metric"]], float)
        assert math.isnan(res["final"][res["metric"]])
        # the progress line names the metric and the iteration
        line = f"diverged: {res['metric']} = nan at iteration {res['iter']}"
        assert line in stdout
        assert not (tdir / "checkpoint").exists()  # a final state keeps no checkpoint
        assert not (tdir / "final_state.npz").exists()
        # pandas reads the file's NaN back as a float column
        frame = pd.read_json(io.StringIO(text), lines=True)
        assert frame[res["metric"]].dtype == float and frame[res["metric"]].isna().all()
    for tdir in complete:
        assert _first_non_finite(_rows(tdir)) is None
        assert _rows(tdir)[-1]["iter"] == _result(tdir)["final"]["iter"]


def test_run_local_resume_never_runs_a_diverged_trial_again(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(mixed), "--out", str(out), "--no-report"]) == DIVERGED_EXIT
    before = {p: p.read_bytes() for p in out.glob("*/*") if p.is_file()}
    for _ in range(2):
        rc, stdout, _err = _run(capsys, ["run", "--resume", "--out", str(out), "--no-report"])
        assert rc == DIVERGED_EXIT
        assert stdout.count("(final; not run again)") == 2
        assert stdout.count("complete already, skipped") == 2
        after = {p: p.read_bytes() for p in out.glob("*/*") if p.is_file()}
        changed = [p for p in before if after.get(p) != before[p] and p.name != "config.yaml"]
        assert not changed


def test_report_leaves_diverged_trials_out_and_its_n_is_what_entered(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(mixed), "--out", str(out), "--no-report"]) == DIVERGED_EXIT
    n_div, complete = len(_trials(out, "diverged")), _trials(out, "complete")
    rc, stdout, stderr = _run(capsys, ["report", str(out)])
    assert rc == 0, stderr
    assert f"left out {n_div} of {n_div + len(complete)} trials: {n_div} diverged" in stdout
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert set(summary["method.lam"]) == {20.0}  # no row of the diverged configuration
    for metric, grp in summary.groupby("metric"):
        want = [_result(t)["final"][metric] for t in complete]
        assert int(grp["n"].iloc[0]) == len(want)
        assert grp["mean"].iloc[0] == pytest.approx(sum(want) / len(want))

    # A complete trial without one metric: that metric's n is 1, and the table says so.
    res = complete[0] / "result.json"
    data = _result(complete[0])
    dropped = next(k for k in data["final"] if "/" in k)
    del data["final"][dropped]
    res.write_text(json.dumps(data), encoding="utf-8")
    rc, stdout, _err = _run(capsys, ["report", str(out)])
    assert rc == 0
    summary = pd.read_csv(out / "report" / "summary.csv")
    n_of = dict(zip(summary["metric"], summary["n"], strict=True))
    assert n_of[dropped] == len(complete) - 1
    assert all(n == len(complete) for m, n in n_of.items() if m != dropped)
    assert f"n={len(complete) - 1}" in stdout


def test_report_reads_the_strings_older_pbrl_wrote_and_leaves_such_trials_out(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Older pbrl wrote NaN as the string "nan" and such trials as complete: the report crashed
    (ufunc 'isfinite') or counted them in n. Now they are diverged, and the rest is reported."""
    out = tmp_path / "out"
    assert main(["run", str(mixed), "--out", str(out), "--no-report"]) == DIVERGED_EXIT
    complete = _trials(out, "complete")
    for tdir in _trials(out, "diverged"):
        old = tdir.parent / (tdir.name + "_old")
        shutil.copytree(tdir, old)
        shutil.rmtree(tdir)
        rows = _rows(old)
        as_old = lambda v: str(v) if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        (old / "metrics.jsonl").write_text(
            "".join(json.dumps({k: as_old(v) for k, v in r.items()}) + "\n" for r in rows),
            encoding="utf-8",
        )
        final = {k: as_old(v) for k, v in rows[-1].items()}
        (old / "result.json").write_text(
            json.dumps({"trial": old.name, "status": "complete", "final": final}), encoding="utf-8"
        )
        assert '"nan"' in (old / "metrics.jsonl").read_text(encoding="utf-8")
    rc, stdout, stderr = _run(capsys, ["report", str(out)])
    assert rc == 0, stderr
    assert "left out 2 of 4 trials: 2 diverged" in stdout
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert set(summary["n"]) == {len(complete)}


@pytest.mark.ray
def test_tune_trainable_ends_a_diverged_trial_cleanly_and_resume_keeps_it(
    mixed: Path, tmp_path: Path
) -> None:
    """``pbrl sweep``: the diverged trial ends once (no retry as a failure), exit 3, and a
    ``--resume`` neither runs it again nor changes its files."""
    sweep = tmp_path / "one_seed.yaml"
    sweep.write_text(MIXED.replace("seeds: [0, 1]", "seeds: [0]"), encoding="utf-8")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    pbrl = str(Path(sys.executable).parent / "pbrl")
    run = subprocess.run(
        [pbrl, "sweep", str(sweep), "--out", str(out), "--no-report"],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    said = run.stdout + run.stderr
    assert run.returncode == DIVERGED_EXIT, said[-3000:]
    [tdir] = _trials(out, "diverged")
    assert "lam=1.0e308" in tdir.name and len(_trials(out, "complete")) == 1
    res = _result(tdir)
    assert (res["metric"], res["iter"]) == _first_non_finite(_rows(tdir))
    assert f"{tdir.name} diverged: {res['metric']} = nan at iteration {res['iter']}" in said
    assert "1/2 trials finished (0 errored, 1 diverged: left out of the report)" in said
    starts = [
        json.loads(x)
        for x in (tdir / "tune_attempts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len([s for s in starts if "pid" in s]) == 1  # never retried as a failure
    before = {p: p.read_bytes() for p in tdir.iterdir() if p.is_file()}
    again = subprocess.run(
        [pbrl, "sweep", "--resume", "--out", str(out), "--no-report"],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert again.returncode == DIVERGED_EXIT, (again.stdout + again.stderr)[-3000:]
    for p, data in before.items():
        if p.name not in ("tune_attempts.jsonl", "config.yaml"):
            assert p.read_bytes() == data, p.name
    assert _result(tdir)["status"] == "diverged"


def test_rlhf_loop_a_nan_loss_ends_the_trial_as_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deep RLHF: a NaN policy loss is logged as a number (it was dropped from the row before, so the
    trial completed with the metric silently missing) and ends the trial as diverged."""
    from pbrl_dist.rlhf.a2c import A2CStats, A2CTrainer

    step = A2CTrainer.step

    def nan_policy_loss(self: A2CTrainer, *args: Any, **kwargs: Any) -> A2CStats:
        s = step(self, *args, **kwargs)
        return A2CStats(math.nan, s.value_loss, s.entropy, s.upper_loss)

    monkeypatch.setattr(A2CTrainer, "step", nan_policy_loss)
    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "out"
    rc = main(
        ["run", str(root / "sweeps" / "rlhf_toy.yaml"), "--smoke", "--out", str(out), "--no-report"]
    )
    assert rc == DIVERGED_EXIT, capsys.readouterr().err
    for trial in sorted(out.glob("*/result.json")):
        res = json.loads(trial.read_text(encoding="utf-8"))
        assert res["status"] == "diverged" and res["metric"] == "lower/policy_loss", res
