"""Our A2C on the true reward beside Young & Tian's (2019) actor-critic curves on MinAtar.

Usage:
    pbrl report RESULTS                    # writes RESULTS/report/rl_curves.csv
    python scripts/compare_young_tian.py RESULTS [RESULTS ...] [--out docs/figures/minatar_a2c_vs_young_tian.png]

Reads every given results folder's ``report/rl_curves.csv`` (IQM over seeds with 95% stratified bootstrap
bands, ``rl/episode_return`` = mean true return of the last 100 episodes), keeps the ``a2c_oracle`` rows of
MinAtar Breakout and SpaceInvaders, draws them over the published curves
(docs/results/young_tian_2019/ac_curves.csv, read off their figure) and prints a table at the frame counts
both have.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "results" / "young_tian_2019" / "ac_curves.csv"
GAMES = {"MinAtar/Breakout-v1": "Breakout", "MinAtar/SpaceInvaders-v1": "SpaceInvaders"}


def ours(folders: list[Path]) -> pd.DataFrame:
    """Return the a2c_oracle learning curves of the folders (one label per folder)."""
    frames = []
    for folder in folders:
        path = folder / "report" / "rl_curves.csv"
        if not path.exists():
            raise SystemExit(f"{path}: missing; run `pbrl report {folder}` first")
        c = pd.read_csv(path)
        c = c[(c["method"] == "a2c_oracle") & c["task"].isin(list(GAMES))].copy()
        c["game"] = c["task"].map(GAMES)
        c["run"] = folder.name
        frames.append(c)
    return pd.concat(frames, ignore_index=True)


def table(mine: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Rows at the frame counts both have: ours (IQM, band, n) and the two published curves."""
    rows = []
    for (game, run), c in mine.groupby(["game", "run"]):
        pub = published[published["game"] == game].set_index("frames_M")
        for _, r in c.iterrows():
            m = round(r["env_frames"] / 1e6, 2)
            if m in pub.index and m > 0 and (m * 10) % 1 == 0:
                rows.append(
                    {
                        "game": game,
                        "run": run,
                        "frames_M": m,
                        "ours_iqm": r["iqm"],
                        "ours_lo": r["lo"],
                        "ours_hi": r["hi"],
                        "n": int(r["n"]),
                        "AC(0.8)": pub.loc[m, "AC(0.8)"],
                        "AC(0)": pub.loc[m, "AC(0)"],
                    }
                )
    return pd.DataFrame(rows)


def draw(mine: pd.DataFrame, published: pd.DataFrame, out: Path) -> None:
    """One panel per game: the published curves (dashed) and ours (IQM with its 95% band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, game in zip(axes, ["Breakout", "SpaceInvaders"], strict=True):
        pub = published[published["game"] == game]
        for col, colour in (("AC(0.8)", "tab:green"), ("AC(0)", "tab:orange")):
            ax.plot(pub["frames_M"], pub[col], "--", color=colour, label=f"Young & Tian {col}")
        ours_colours = iter(["tab:blue", "tab:purple", "tab:brown", "tab:gray"])
        for run, c in mine[mine["game"] == game].groupby("run"):
            x = c["env_frames"] / 1e6
            n = int(c["n"].max())
            colour = next(ours_colours)
            ax.plot(x, c["iqm"], color=colour, label=f"ours, A2C ({run}, IQM of {n} seeds)")
            ax.fill_between(x, c["lo"], c["hi"], color=colour, alpha=0.25)
        ax.set_title(f"MinAtar {game}")
        ax.set_xlabel("frames (millions)")
        ax.set_ylabel("mean return, last 100 episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"figure: {out}")


def main() -> None:
    """Print the table and draw the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/minatar_a2c_vs_young_tian.png")
    args = ap.parse_args()
    published = pd.read_csv(PUBLISHED)
    mine = ours(args.results)
    t = table(mine, published)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(t.round(2).to_string(index=False))
    draw(mine, published, args.out)


if __name__ == "__main__":
    main()
