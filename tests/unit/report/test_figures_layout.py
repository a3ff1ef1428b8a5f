"""Figures fit for a paper: one colour per method in every figure, the legend off the data, a figure
for every problem (a user's unimported one from its rows), no empty figure written (one line says
why), and ``--with`` on two tabular folders drawn together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from pbrl_dist.cli import main
from pbrl_dist.report.figures import (
    CANONICAL_METHODS,
    PALETTE,
    Built,
    build_fig1,
    build_progress,
    build_shaping,
    build_toy_rlhf,
    draw_figures,
    method_colors,
)


def _rows(
    problem: str,
    methods: list[str],
    metrics: dict[str, float],
    *,
    iters: range = range(0, 50, 10),
    seeds: tuple[int, ...] = (0, 1),
    x: str = "iter",
) -> pd.DataFrame:
    """Curves as ``load_results`` gives them: complete trials, one row per logged point."""
    rows = []
    for k, m in enumerate(methods):
        for s in seeds:
            for i in iters:
                row = {
                    "trial": f"{m}__s{s}",
                    "status": "complete",
                    "problem.name": problem,
                    "method.name": m,
                    "method.algo": "pbrl",
                    "seed": s,
                    "iter": i,
                }
                if x != "iter":
                    row[x] = i * 100
                row.update({name: v + k + 0.01 * i + 0.1 * s for name, v in metrics.items()})
                rows.append(row)
    return pd.DataFrame(rows)


def _colors_by_method(built: Built) -> dict[str, str]:
    """Method → the colour of its mean lines, read back from the figure's artists (one per method)."""
    assert built.figure is not None
    seen: dict[str, set[str]] = {}
    for ax in built.figure.axes:
        for line in ax.get_lines():
            label = str(line.get_label())
            if " (n=" in label:
                seen.setdefault(label.split(" (n=")[0], set()).add(to_hex(line.get_color()))
    plt.close(built.figure)
    assert all(len(c) == 1 for c in seen.values()), seen  # one colour in every panel
    return {m: c.pop() for m, c in seen.items()}


def test_method_colors_fixed_for_shipped_names_and_stable_for_others() -> None:
    a = method_colors(["pbrl_value", "my_method", "indep_pg"])
    b = method_colors(["zz_other", "indep_pg", "my_method", "sparse_pg"])
    assert len(set(CANONICAL_METHODS.values())) == len(CANONICAL_METHODS)  # no two share one
    assert a["pbrl_value"] == PALETTE[CANONICAL_METHODS["pbrl_value"]]
    assert a["indep_pg"] == b["indep_pg"] == PALETTE[CANONICAL_METHODS["indep_pg"]]
    assert a["my_method"] == b["my_method"]  # a hashed name keeps its colour in another figure
    many = [f"pbrl_value lam={v}" for v in range(len(PALETTE))]
    assert len(set(method_colors(many).values())) == len(PALETTE)  # distinct up to the palette size
    assert method_colors(many) == method_colors(list(reversed(many)))  # not the rows' order


def test_a_method_keeps_its_colour_across_figures() -> None:
    fig1 = build_fig1(
        _rows(
            "stackelberg",
            ["indep_pg", "pbrl_value"],
            {"upper/leader_return": 1.0, "lower/gap": 0.5},
        )
    )
    shaping = build_shaping(
        _rows(
            "shaping",
            ["pbrl_value", "sparse_pg", "indep_pg"],  # another order, another method first
            {"upper/task_return": 1.0, "lower/gap": 0.5, "upper/retrain_shaped_return": 2.0},
        )
    )
    c1, c2 = _colors_by_method(fig1), _colors_by_method(shaping)
    assert set(c1) == {"indep_pg", "pbrl_value"} and set(c2) == {
        "pbrl_value",
        "sparse_pg",
        "indep_pg",
    }
    assert c1["pbrl_value"] == c2["pbrl_value"] and c1["indep_pg"] == c2["indep_pg"]
    assert c2["sparse_pg"] not in (c2["pbrl_value"], c2["indep_pg"])


@pytest.mark.parametrize("n_methods", [1, 3, 7])
def test_the_legend_sits_off_every_axes(n_methods: int) -> None:
    """Long configuration labels (a search): the legend is inside the figure and on no axes."""
    labels = [
        f"pbrl_value lam={2.4 * (k + 1):.4g} lr_x={0.021 * (k + 1):.4g}" for k in range(n_methods)
    ]
    built = build_fig1(_rows("stackelberg", labels, {"upper/leader_return": 1.0, "lower/gap": 0.5}))
    fig = built.figure
    assert fig is not None
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        assert len(legend.get_texts()) == n_methods
        assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1 and box.y0 >= fig.bbox.y0 - 1
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), (box, ax.get_title())
    finally:
        plt.close(fig)


def test_a_user_problem_folder_gets_a_figure_from_its_rows(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``problem.target`` problem that ``pbrl report`` does not import: its rows' metrics are drawn."""
    cfg = fake.specs()[0].container
    fake.record({"seeds": [0]})
    problem = {"name": "my_tax", "target": str(fake.root / "absent.py") + ":SPEC"}  # never imported
    for m in ("pbrl_value", "indep_pg"):
        c = {**cfg, "problem": problem, "method": {**cfg["method"], "name": m}}
        rows = [{**r, "upper/principal_return": r["iter"] * 0.1} for r in rows_of(1.0, 40)]
        fake.trial(f"{m}__s0", c, rows)
    assert main(["report", str(fake.out)]) == 0
    out = capsys.readouterr().out
    fig = fake.out / "figures" / "my_tax.png"
    assert fig.stat().st_size > 10_000 and f"figure: {fig}" in out
    (note,) = [line for line in out.splitlines() if line.startswith("figure my_tax.png")]
    assert "upper/principal_return" in note and "lower/gap" in note


def test_a_registered_problem_without_a_figure_gets_its_progress_metrics() -> None:
    """``gym_rlhf`` names no figure: its progress metric against env frames."""
    curves = _rows("gym_rlhf", ["pbrl", "drlhf"], {"rl/episode_return": 5.0}, x="perf/env_frames")
    built = build_progress(curves)
    assert built.name == "gym_rlhf.png" and built.figure is not None
    (ax,) = built.figure.axes
    assert ax.get_title() == "rl/episode_return" and ax.get_xlabel() == "env frames"
    plt.close(built.figure)


def test_an_empty_figure_is_not_written_and_one_line_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Atari smoke: no episode has ended, so no ``rl/episode_return`` row in any game."""
    curves = _rows("atari_rlhf", ["pbrl", "drlhf"], {"lower/entropy": 2.0}, x="perf/env_frames")
    curves = pd.concat(
        [curves.assign(**{"problem.game": g}) for g in ("Seaquest", "BeamRider")], ignore_index=True
    )
    assert draw_figures(curves, tmp_path / "figures") == []
    assert not (tmp_path / "figures" / "fig2_atari_rlhf.png").exists()
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("figure fig2_atari_rlhf.png: not written: no rl/episode_return value")
    assert "no episode has ended yet" in line


def test_a_panel_without_data_is_left_out_and_the_others_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Toy RLHF with A2C only: no reward model, so no ``rm/accuracy`` panel."""
    curves = _rows("toy_rlhf", ["a2c_oracle"], {"rl/episode_return": 5.0}, x="perf/env_frames")
    built = build_toy_rlhf(curves)
    assert built.figure is not None and [ax.get_title() for ax in built.figure.axes] == [
        "True episode return"
    ]
    plt.close(built.figure)
    (path,) = draw_figures(curves, tmp_path)
    assert path == tmp_path / "rlhf_toy.png" and path.exists()
    (line,) = capsys.readouterr().out.splitlines()
    assert "panel 'Reward model: accuracy on fresh pairs' left out: no rm/accuracy value" in line


def test_a_curve_of_one_point_is_a_marker() -> None:
    """A smoke run logging once per trial (the shaping smoke) still shows its values."""
    curves = _rows(
        "shaping",
        ["pbrl_value", "sparse_pg"],
        {"upper/task_return": 1.0, "lower/gap": 0.5, "upper/retrain_shaped_return": 2.0},
        iters=range(30, 31),
    )
    built = build_shaping(curves)
    assert built.figure is not None and len(built.figure.axes) == 3
    lines = [line for ax in built.figure.axes for line in ax.get_lines() if line.get_gid() is None]
    assert lines and all(line.get_marker() == "o" for line in lines)
    plt.close(built.figure)


def test_with_on_two_tabular_folders_reports_both_settings(
    tmp_path: Path, rows_of: Any, fake_at: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs of one sweep file with ``method.lam=5`` and ``method.lam=50``: same trial names,
    same methods; ``method.lam`` tells them apart (a report axis), the added trials keep their path."""
    folders = []
    for lam, level in ((5.0, 1.0), (50.0, 3.0)):
        (tmp_path / f"lam{lam:g}").mkdir()
        f = fake_at(tmp_path / f"lam{lam:g}")
        f.record({"seeds": [0]})
        for spec in f.specs():
            c = {**spec.container, "method": {**spec.container["method"], "lam": lam}}
            f.trial(f"{c['method']['name']}__s0", c, rows_of(level, 40))
        folders.append(f)
    a, b = folders
    assert main(["report", str(a.out), "--with", str(b.out)]) == 0
    out = capsys.readouterr().out
    assert "told apart by method.lam" in out
    fig = a.out / "figures" / "fig1_stackelberg.png"
    assert fig.stat().st_size > 10_000 and f"figure: {fig}" in out
    summary = pd.read_csv(a.out / "report" / "summary.csv")
    rows = summary[summary["metric"] == "upper/leader_return"]
    got = {(r["method.name"], r["method.lam"]): r["mean"] for r in rows.to_dict("records")}
    assert got == {
        ("pbrl_value", 5.0): 1.0,
        ("pbrl_value", 50.0): 3.0,
        ("indep_pg", 5.0): 1.0,
        ("indep_pg", 50.0): 3.0,
    }
    assert not (b.out / "report").exists()  # the added folder is only read
