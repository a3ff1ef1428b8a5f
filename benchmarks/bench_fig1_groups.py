"""The full Figure 1 sweep through ``pbrl sweep``: seed groups against one Tune trial per seed.

Runs, one after the other on this machine, each as the user types it (a fresh process that starts its
own embedded Ray), W&B off:

  groups:  pbrl sweep sweeps/fig1_stackelberg.yaml                  (sweep.trials: group, the default)
  seeds:   pbrl sweep ... sweep.trials=seed                         (the baseline: 90 Tune trials)
  run:     pbrl run   sweeps/fig1_stackelberg.yaml                  (the numbers' reference, no Ray)

prints each one's wall time (process start to exit) and checks that every one of the 90 trials has the
same metrics rows and final numbers in every folder (exact equality, timing fields aside). With
``--repeats N`` the group sweep runs N times (the machine is shared and noisy), and its times and
their median are printed.

    .venv/bin/python benchmarks/bench_fig1_groups.py [--no-baseline] [--repeats N] [--out DIR]
                                                     [--reference RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = str(ROOT / "sweeps" / "fig1_stackelberg.yaml")
PBRL = str(Path(sys.executable).parent / "pbrl")


def timed(args: list[str]) -> float:
    """Run ``pbrl ARGS``; return its wall seconds (raises when it fails)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.run([PBRL, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pbrl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    last = [x for x in proc.stdout.splitlines() if "finished" in x]
    print(f"  {last[-1] if last else ''}", flush=True)
    return wall


def numbers(out: Path) -> dict[str, tuple[list[dict], dict]]:
    """Each trial's metrics rows (``perf/`` fields aside) and final numbers."""
    got = {}
    for cfg in sorted(out.glob("*/config.yaml")):
        t = cfg.parent
        rows = [json.loads(x) for x in (t / "metrics.jsonl").read_text().splitlines() if x]
        rows = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
        got[t.name] = (rows, json.loads((t / "result.json").read_text())["final"])
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-baseline", action="store_true", help="skip the one-trial-per-seed sweep")
    ap.add_argument("--repeats", type=int, default=1, help="runs of the group sweep")
    ap.add_argument("--out", help="folder for the results folders (default: a temporary one)")
    ap.add_argument(
        "--reference",
        help="a finished `pbrl run` folder of this sweep to compare with (skips running it again)",
    )
    args = ap.parse_args()
    where = Path(args.out or tempfile.mkdtemp(prefix="bench_fig1_"))
    groups = ["sweep", SWEEP, "--no-report"]
    once = {}
    if not args.no_baseline:
        once["seeds"] = ["sweep", SWEEP, "--no-report", "sweep.trials=seed"]
    if not args.reference:
        once["run"] = ["run", SWEEP, "--no-report"]
    print(f"Figure 1 sweep (90 runs, 2000 iterations each), {os.cpu_count()} CPUs, W&B off")
    wall: dict[str, list[float]] = {}
    for r in range(args.repeats):
        print(f"groups #{r + 1}: pbrl sweep {' '.join(groups[2:])}", flush=True)
        out = where / ("groups" if r == 0 else f"groups_{r + 1}")
        wall.setdefault("groups", []).append(timed([*groups, "--out", str(out)]))
    for name, cmd in once.items():
        print(f"{name}: pbrl {' '.join(cmd[:1] + cmd[2:])}", flush=True)
        wall[name] = [timed([*cmd, "--out", str(where / name)])]
    ref = numbers(Path(args.reference) if args.reference else where / "run")
    assert len(ref) == 90, f"pbrl run wrote {len(ref)} trials"
    for name, times in wall.items():
        same = numbers(where / name) == ref
        each = " ".join(f"{t:.1f}" for t in times)
        print(
            f"{name:7s} {statistics.median(times):7.1f} s (median; each: {each})   "
            f"numbers identical to pbrl run's: {same}"
        )
        assert same, name
    med = {k: statistics.median(v) for k, v in wall.items()}
    if "seeds" in med:
        print(f"groups vs one Tune trial per seed: {med['seeds'] / med['groups']:.2f}x faster")


if __name__ == "__main__":
    main()
