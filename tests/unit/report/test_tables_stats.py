"""The statistics behind RESULTS.md (``report/tables.py``) on hand-made frames: no results folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbrl_dist.report.tables import (
    _flatten,
    _scalar,
    bootstrap_ci,
    complete_only,
    final_summary,
    format_table,
    iqm,
    left_out,
    metric_columns,
    short,
)


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial": [f"t{i}" for i in range(7)],
            "method.name": ["a", "a", "a", "a", "b", "b", "b"],
            "status": ["complete"] * 4 + ["complete", "complete", "stopped"],
            "upper/x": [1.0, 2.0, 3.0, 10.0, 5.0, 7.0, -100.0],
            "lower/gap": [0.1, 0.2, np.nan, 0.4, 0.0, 0.0, 9.0],
            "perf/iter_per_s": [1.0] * 7,
        }
    )


def test_final_summary_per_group_statistics() -> None:
    s = final_summary(_trials()).set_index(["method.name", "metric"])
    a = s.loc[("a", "upper/x")]
    vals = np.array([1.0, 2.0, 3.0, 10.0])
    assert a["n"] == 4 and a["mean"] == pytest.approx(4.0)
    assert a["std"] == pytest.approx(vals.std(ddof=1))  # sample std across seeds
    assert a["iqm"] == pytest.approx(2.5)  # middle half: 2, 3
    assert (a["ci95_lo"], a["ci95_hi"]) == pytest.approx(bootstrap_ci(vals))
    assert (a["min"], a["max"]) == (1.0, 10.0)
    assert s.loc[("a", "lower/gap"), "n"] == 3  # a NaN is a missing value, not a zero
    b = s.loc[("b", "upper/x")]
    assert b["n"] == 2 and b["mean"] == pytest.approx(6.0)  # the stopped trial is left out
    assert ("a", "perf/iter_per_s") not in s.index  # throughput is not a result


def test_single_trial_has_zero_std_and_a_point_ci() -> None:
    one = _trials().iloc[:1]
    row = final_summary(one).set_index("metric").loc["upper/x"]
    assert row["std"] == 0.0 and row["ci95_lo"] == row["ci95_hi"] == 1.0


def test_iqm_is_robust_to_one_outlier_and_the_ci_covers_the_mean() -> None:
    x = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 100.0])
    assert iqm(x) == pytest.approx(1.0, abs=0.03)
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 1.0, size=200)
    lo, hi = bootstrap_ci(y)
    assert lo < y.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)
    lo90, hi90 = bootstrap_ci(y, level=0.9)
    assert lo < lo90 < hi90 < hi


def test_helpers() -> None:
    t = _trials()
    assert metric_columns(t) == ["upper/x", "lower/gap"]
    assert len(complete_only(t)) == 6 and complete_only(t.drop(columns="status")).shape[0] == 7
    assert left_out(t) == {"stopped": 1}
    assert _flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert _scalar([1.0, 3.0]) == 2.0 and np.isnan(_scalar([])) and _scalar(4) == 4
    assert short(0.123456789) == "0.1235" and short(2.0) == "2.0" and short("x") == "x"


def test_format_table_one_row_per_group() -> None:
    text = format_table(final_summary(_trials()))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["name", "n", "upper/x", "lower/gap"]
    assert lines[1].startswith("a ") and "4 ± 4.1 (max 10)" in lines[1]
    assert lines[2].startswith("b ") and "6 ± 1.4 (max 7)" in lines[2]
    assert format_table(pd.DataFrame()) == "(no results)"


def test_format_table_fits_its_width_and_names_the_columns_left_out() -> None:
    summary = final_summary(_trials())
    full = format_table(summary).splitlines()
    narrow = format_table(summary, width=len(full[0].split("lower/gap")[0]) + 3).splitlines()
    assert narrow[-1] == "(+1 more in summary.csv: lower/gap)"
    assert all(len(line) <= len(full[0].split("lower/gap")[0]) + 3 for line in narrow[:-1])
    assert [ln.split()[:3] for ln in narrow[:-1]] == [ln.split()[:3] for ln in full]
    assert max(map(len, full)) <= 120 and not full[-1].startswith("(+")
