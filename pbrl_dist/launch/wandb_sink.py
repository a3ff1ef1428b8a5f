"""W&B logging: one run per launch of a trial, offline unless online can work, never a reason to fail.

What a run carries (``init_kwargs``), read from the trial and the launch's ``sweep.yaml`` record:

- group = ``<sweep name>/<smoke|full>-<8 hex of the launch id>`` (``wandb_group``): every launch of
  a sweep file (``--smoke``, a ``method.lam=5`` override, the full run) is its own group, and
  ``--resume`` keeps the launch id, so a resumed launch lands in the same group with the same runs;
  job_type = the method name; name = the trial name; notes = the command that launched it;
  tags = [method, problem, ``smoke`` | ``full``, the estimator (``exact`` | ``mc``) where the
  method reads one];
- config = the trial's resolved config flattened to dotted keys (``method.lam``, ``problem.tau``,
  ``seed``; the values of its ``config.yaml``), plus ``swept`` (the keys that vary between the
  launch's trials: grid axes with more than one value, search axes, ``seed`` with more than one
  seed, ``method.name`` with more than one method) and ``launch.id``, ``launch.kind``
  (smoke | full), ``launch.overrides`` (the command-line overrides, one string) — so W&B's
  group-by, parallel coordinates and run table need no hand work;
- x axis (``define_metric``): every metric is drawn against ``step_metric(spec)``: ``env_frames``
  for a loop whose rows carry it (deep RLHF: agent env frames), else ``iter`` (tabular loops);
- summary: the last value of every metric (W&B's default), plus ``status`` at the end: ``complete``,
  ``diverged`` (with ``diverged_metric`` and ``diverged_iter``), ``failed`` or ``interrupted``
  (``end_summary``);
- run id = ``run_id(launch_id, trial)``: a readable stem of the trial name plus a hash of the
  launch id (``new_launch_id()``, made once per ``pbrl run`` / ``pbrl sweep`` launch, kept in the
  results folder and reused by ``--resume``) and the trial name. Two launches, or two trials, never
  share a run; a retried or resumed trial continues its own run (``resume="allow"``);
- **offline** by default: the run is written inside the trial's results folder
  (``OUT/<trial>/wandb/offline-run-*``, with its ``run-*.wandb`` file), so it travels with the
  results; upload later with ``wandb sync OUT/*/wandb/offline-run-*``;
- **online** when ``logging.wandb=online`` or ``WANDB_MODE=online``, and only if there is an API key
  (``WANDB_API_KEY``, or the one ``wandb login`` stored in netrc for the API host) and the API host
  (``WANDB_BASE_URL``, default ``https://api.wandb.ai``) answers a TCP connection within a few
  seconds; otherwise offline, and one line says why. ``decide_mode`` makes this decision once per
  sweep (the driver passes it to every trial), so no trial waits for ``wandb.init``'s network timeout;
- **disabled** when ``logging.wandb=disabled`` or ``WANDB_MODE=disabled`` (tests set the latter);
- if ``wandb.init`` fails, the trial goes on with its local logs and prints one line saying so (an
  online start that fails is retried once offline, so the trial still leaves a W&B record);
- **no step twice, none lost**: ``step`` = the row's ``iter``. A resumed or retried trial reopens
  its run (same id, ``resume="allow"``) and first reads the last step already logged
  (``logged_steps``: the run's own ``run-<id>.wandb`` files under ``OUT/<trial>/wandb``, every
  launch of it; online, also the step W&B resumed at). ``WandbSink.catch_up`` then logs the rows of
  metrics.jsonl W&B lacks (a kill can lose rows W&B had not written yet), and every later row with a
  step at or before the last one logged is skipped, so the run's history is the undisturbed run's,
  strictly increasing.

Why not Ray's own W&B integration (``ray.air.integrations.wandb``)? ``WandbLoggerCallback`` lives in
the Tune driver (``log_trial_result`` feeds a per-trial ``_WandbLoggingActor``), so ``pbrl run``, which
has no Tune and, on the local backend, no Ray at all, would log nothing; it names runs by Tune's
``trial.trial_id`` (with ``resume=False``), not by our launch id, writes the W&B folder under Tune's
``trial.local_path`` rather than ``OUT/<trial>``, and its ``_handle_result`` silently drops values
that fail ``_is_allowed_type``, i.e. our per-game list metrics. ``setup_wandb`` does run inside the
trial, but it imports Ray/Tune/pyarrow, takes id, name and group from the Ray Train session
(``get_session()``, absent under ``pbrl run``), sets ``WANDB_START_METHOD=fork``, and its
``_set_api_key`` raises ``ValueError`` when online has no key, with no reachability check or offline
fallback. So both entry points call ``open_wandb`` from ``run_trial`` instead: the same code, ids and
folders whether a trial runs under ``pbrl run`` or in a Tune trial process.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import netrc
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.metrics import Diverged, scalar_metrics

DEFAULT_BASE_URL = "https://api.wandb.ai"
SYNC_HINT = "`wandb sync OUT/*/wandb/offline-run-*` uploads the runs later"
_ID_STEM = 40  # chars of the trial name kept in a run id (+ "-" + 12 hex: 53 <= 64)


def new_launch_id() -> str:
    """Return a fresh launch id (12 random hex digits): one per ``pbrl run`` / ``pbrl sweep`` launch."""
    return secrets.token_hex(6)


def run_id(launch_id: str, trial: str) -> str:
    """Return the W&B run id of one launch of a trial: ``<trial name stem>-<12 hex>``.

    The same (launch, trial) gives the same id, so a retried or resumed trial continues its own run;
    another launch or another trial gives another id. Only ``[A-Za-z0-9_-]``, at most 53 characters.
    """
    digest = hashlib.blake2b(f"{launch_id}\0{trial}".encode(), digest_size=6).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", trial)[:_ID_STEM] or "trial"
    return f"{stem}-{digest}"


def _requested_mode(setting: str) -> str:
    """The mode asked for by ``logging.wandb`` and ``WANDB_MODE`` (disabled > online > offline)."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if setting == "disabled" or env in ("disabled", "dryrun-disabled"):
        return "disabled"
    if setting == "online" or env in ("online", "run"):
        return "online"
    return "offline"


def _base_url() -> str:
    url = os.environ.get("WANDB_BASE_URL", "").strip().rstrip("/") or DEFAULT_BASE_URL
    return url if "://" in url else f"https://{url}"


def _netrc_path() -> Path:
    if path := os.environ.get("NETRC"):
        return Path(path).expanduser()
    unix = Path("~/.netrc").expanduser()
    windows = Path("~/_netrc").expanduser()
    return windows if not unix.exists() and windows.exists() else unix


def _has_api_key(base_url: str) -> bool:
    """Whether ``WANDB_API_KEY`` is set or netrc holds a key for the API host (the key is not read out)."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    parts = urlsplit(base_url)
    try:
        table = netrc.netrc(str(_netrc_path()))
    except (OSError, netrc.NetrcParseError):
        return False
    for machine in dict.fromkeys((parts.netloc, parts.hostname)):
        auth = table.authenticators(machine) if machine else None
        if auth and auth[2]:
            return True
    return False


def _reachable(base_url: str, timeout_s: float) -> str | None:
    """None if a TCP connection to the URL's host:port opens within ``timeout_s``, else why not.

    The connection (name lookup included, which ``socket`` cannot time out) runs in a daemon thread
    that is waited for at most ``timeout_s``.
    """
    parts = urlsplit(base_url)
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"bad port in {base_url}"
    if not host:
        return f"no host in {base_url}"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(None)
        except OSError as e:
            outcome.append(f"{type(e).__name__}: {e.strerror or e}")

    thread = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return f"no answer within {timeout_s:g} s"
    return outcome[0]


def decide_mode(setting: str, *, timeout_s: float = 3.0) -> tuple[str, str | None]:
    """Return (mode, note) for a whole sweep: ``logging.wandb``, ``WANDB_MODE``, key and network.

    ``disabled`` and ``offline`` are returned as asked. ``online`` needs an API key
    (``WANDB_API_KEY``, or a netrc entry for the API host, as ``wandb login`` writes it) and a
    ``WANDB_BASE_URL`` host (default api.wandb.ai:443) that accepts a TCP connection within
    ``timeout_s``; otherwise the mode is ``offline`` and ``note`` says why in one line. Returns within
    about ``timeout_s`` seconds even without any network.
    """
    mode = _requested_mode(setting)
    if mode != "online":
        return mode, None
    url = _base_url()
    if not _has_api_key(url):
        return "offline", (
            "W&B online was asked for but there is no API key (WANDB_API_KEY, or `wandb login` for "
            f"{urlsplit(url).netloc}); logging offline, {SYNC_HINT}"
        )
    why = _reachable(url, timeout_s)
    if why is not None:
        return "offline", (
            f"W&B online was asked for but {url} is not reachable ({why}); logging offline, "
            f"{SYNC_HINT}"
        )
    return "online", None


FRAMES = "env_frames"  # the x axis of RL rows (metrics.METRICS)
RECORD = "sweep.yaml"  # the launch's record in the results folder (launch/results.py)
_GROUP_ID = 8  # hex digits of the launch id in the group name
_MAX_RECORD_BYTES = 1 << 22


def launch_record(out: Path) -> dict[str, Any]:
    """The launch's ``out/sweep.yaml`` record (name, sweep block, trials, smoke, overrides, command),
    or ``{}`` when it is missing or unreadable (a trial run outside ``pbrl run|sweep``)."""
    import yaml

    try:
        path = out / RECORD
        if path.stat().st_size > _MAX_RECORD_BYTES:
            return {}
        rec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return rec if isinstance(rec, dict) else {}


def launch_kind(record: Mapping[str, Any]) -> str | None:
    """``smoke`` or ``full`` as the record says (``--smoke``), None when it does not say."""
    smoke = record.get("smoke")
    return None if smoke is None else ("smoke" if smoke else "full")


def wandb_group(sweep_name: str, launch_id: str, record: Mapping[str, Any]) -> str:
    """``<sweep name>/<smoke|full>-<8 hex of the launch id>``: one group per launch.

    The launch id is made once per launch and kept in the record, so ``--resume`` gives the same
    group; parts the caller does not know (no record, no launch id) are left out.
    """
    label = "-".join(p for p in (launch_kind(record), launch_id[:_GROUP_ID]) if p)
    return f"{sweep_name}/{label}" if label else sweep_name


def flat_config(container: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The nested config as dotted keys (``{"method": {"lam": 20.0}}`` → ``{"method.lam": 20.0}``);
    lists and empty mappings are values."""
    out: dict[str, Any] = {}
    for key, value in container.items():
        if isinstance(value, Mapping) and value:
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = dict(value) if isinstance(value, Mapping) else value
    return out


def swept_keys(spec: TrialSpec, record: Mapping[str, Any]) -> list[str]:
    """The dotted config keys that vary between the launch's trials, as its record says: the
    methods (``method.name``, when the trial names show more than one), each grid axis with more
    than one value, each search axis, and ``seed`` when there is more than one."""
    block = record.get("sweep")
    block = block if isinstance(block, Mapping) else {}
    keys: list[str] = []
    method = str(spec.cfg.method.name)
    trials = record.get("trials")
    if isinstance(trials, list) and any(
        str(t) != method and not str(t).startswith(f"{method}__") for t in trials
    ):
        keys.append("method.name")
    grid = block.get("grid")
    if isinstance(grid, Mapping):
        keys += [str(k) for k, v in grid.items() if not isinstance(v, list) or len(v) > 1]
    search = block.get("search")
    if isinstance(search, Mapping):
        keys += [str(k) for k in search]
    seeds = block.get("seeds")
    if isinstance(seeds, list) and len(seeds) > 1:
        keys.append("seed")
    return list(dict.fromkeys(keys))


def step_metric(spec: TrialSpec) -> str:
    """The x axis of the trial's metrics: ``env_frames`` when its loop's rows carry it (deep RLHF,
    ``AlgoSpec.metrics``), else ``iter`` (tabular loops: the outer iteration)."""
    from pbrl_dist.algos.registry import algo_specs

    algo = algo_specs().get(str(spec.cfg.method.algo))
    return FRAMES if algo is not None and FRAMES in algo.metrics else "iter"


def run_tags(spec: TrialSpec, record: Mapping[str, Any]) -> list[str]:
    """[method, problem, smoke | full, estimator]: the estimator only where the method reads one."""
    from pbrl_dist.algos.registry import algo_specs

    method = spec.cfg.method
    tags = [str(method.name), str(spec.cfg.problem.name)]
    if kind := launch_kind(record):
        tags.append(kind)
    algo = algo_specs().get(str(method.algo))
    if algo is not None and "estimator" in algo.fields_read(method):
        tags.append(str(getattr(method, "estimator", "")))
    return list(dict.fromkeys(t[:64] for t in tags if t))


def init_kwargs(
    spec: TrialSpec,
    trial_dir: Path,
    *,
    group: str | None,
    launch_id: str,
    record: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``wandb.init`` arguments of one launch of a trial (mode and settings aside)."""
    overrides = record.get("overrides")
    config = {
        **flat_config(spec.container),
        "swept": swept_keys(spec, record),
        "launch.id": launch_id,
        "launch.kind": launch_kind(record) or "",
        "launch.overrides": " ".join(map(str, overrides)) if isinstance(overrides, list) else "",
    }
    command = record.get("command")
    kwargs: dict[str, Any] = dict(
        project=spec.cfg.logging.project,
        group=wandb_group(group or spec.cfg.exp, launch_id, record),
        job_type=str(spec.cfg.method.name),
        name=spec.name,
        notes=str(command) if command else None,
        tags=run_tags(spec, record),
        config=config,
        dir=str(trial_dir),
        id=run_id(launch_id, spec.name),
        resume="allow",
        reinit="create_new",
    )
    return kwargs


def define_axes(run: Any, spec: TrialSpec) -> str:
    """Draw every metric of ``run`` against the trial's ``step_metric``; return it."""
    x = step_metric(spec)
    run.define_metric(x)
    run.define_metric("*", step_metric=x)
    return x


def end_summary(ok: bool, diverged: Diverged | None = None) -> dict[str, Any]:
    """The summary keys a trial's run ends with: ``status`` = complete | diverged (with the metric
    and iteration) | interrupted (Ctrl-C) | failed (any other exception in flight)."""
    import sys

    if ok:
        return {"status": "complete"}
    if diverged is not None:
        return {
            "status": "diverged",
            "diverged_metric": str(diverged.metric),
            "diverged_iter": diverged.iter,
        }
    error = sys.exc_info()[0]
    interrupted = error is not None and issubclass(error, KeyboardInterrupt)
    return {"status": "interrupted" if interrupted else "failed"}


def _scalars(row: Mapping[str, Any]) -> dict[str, Any]:
    return scalar_metrics(row, finite_only=True)


_LOG_BLOCK = 32 * 1024  # the record log W&B writes (run-<id>.wandb): LevelDB's log format
_LOG_HEADER = 7  # ":W&B" + magic 0xBEE1 + version; each record: crc32 (4), length (2), type (1)


def _log_records(path: Path) -> Iterator[bytes]:
    """The records of one ``run-<id>.wandb`` file, in order; stops at a cut or damaged one."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    if not data.startswith(b":W&B"):
        return
    pos, parts = _LOG_HEADER, b""
    while pos + 7 <= len(data):
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < 7:  # a block's zero-filled tail
            pos += left
            continue
        _crc, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        start, end = pos + 7, pos + 7 + size
        if end > len(data) or kind not in (1, 2, 3, 4):
            return  # cut short by a kill
        pos = end
        if kind == 1:  # whole record
            yield data[start:end]
        elif kind == 2:  # first piece
            parts = data[start:end]
        elif kind == 3:  # middle piece
            parts += data[start:end]
        else:  # last piece
            yield parts + data[start:end]
            parts = b""


def history_steps(run_file: Path) -> list[int]:
    """The ``step`` of every history row in one ``run-<id>.wandb`` file, in the order logged."""
    from wandb.proto import wandb_internal_pb2 as pb

    steps = []
    for raw in _log_records(run_file):
        rec = pb.Record()  # type: ignore[attr-defined]
        try:
            rec.ParseFromString(raw)
        except Exception:
            break  # a damaged record: what follows cannot be trusted
        if rec.WhichOneof("record_type") == "history":
            steps.append(int(rec.history.step.num))
    return steps


def run_files(trial_dir: Path, rid: str) -> list[Path]:
    """Every launch's ``run-<rid>.wandb`` of run ``rid`` under ``trial_dir/wandb``, oldest first."""

    def started(path: Path) -> tuple[str, int]:  # [offline-]run-YYYYMMDD_HHMMSS-<id>, then mtime
        when = re.search(r"\d{8}_\d{6}", path.parent.name)
        return (when.group(0) if when else "", path.stat().st_mtime_ns)

    return sorted((trial_dir / "wandb").glob(f"*run-*-{rid}/run-{rid}.wandb"), key=started)


def logged_steps(trial_dir: Path, rid: str) -> int | None:
    """The last step already logged to run ``rid`` from ``trial_dir`` (None: nothing yet)."""
    last = None
    for f in run_files(trial_dir, rid):
        steps = history_steps(f)
        if steps:
            last = max(steps[-1], last if last is not None else steps[-1])
    return last


class WandbSink:
    """A ``MetricSink`` that logs each row to one W&B run (``step`` = the row's ``iter``).

    Rows whose step is at or before ``last_step`` (already in the run) are skipped, so a resumed run
    never logs a step twice or backwards.
    """

    def __init__(self, run: Any, last_step: int | None = None) -> None:
        """Wrap an initialized ``wandb`` run whose history ends at ``last_step`` (None: empty)."""
        self.run = run
        self.last_step = last_step
        self._failed = False

    def catch_up(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Log the ``rows`` (metrics.jsonl so far) that come after the run's last step; return
        how many."""
        before = self.last_step
        n = 0
        for row in rows:
            step = row.get("iter")
            if isinstance(step, int) and (before is None or step > before):
                self.log(row)
                n += 1
        return n

    def log(self, row: Mapping[str, Any]) -> None:
        """Log the row's numbers (lists, e.g. per-game values, as their mean), unless its step is
        already in the run."""
        if self._failed:
            return
        step = row.get("iter")
        step = int(step) if isinstance(step, int | float) else None
        if step is not None and self.last_step is not None and step <= self.last_step:
            return  # logged before this resume: never twice, never backwards
        try:
            self.run.log(_scalars(row), step=step)
            if step is not None:
                self.last_step = step
        except Exception as e:
            self._failed = True
            print(
                f"    W&B logging stopped ({type(e).__name__}: {e}); local logs go on", flush=True
            )

    def close(self, exit_code: int = 0, summary: Mapping[str, Any] | None = None) -> None:
        """Put ``summary`` (e.g. ``end_summary``: the trial's status) into the run's summary, then
        finish the run (quietly; errors are reported in one line)."""
        try:
            if summary:
                self.run.summary.update(dict(summary))
        except Exception as e:
            print(f"    W&B summary failed ({type(e).__name__}: {e})", flush=True)
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            print(f"    W&B finish failed ({type(e).__name__}: {e})", flush=True)


def _could_not_start(e: Exception, what: str) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"    W&B could not start ({type(e).__name__}: {first}); {what}"


def open_wandb(
    spec: TrialSpec,
    trial_dir: Path,
    *,
    group: str | None = None,
    launch_id: str,
    mode: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> WandbSink | None:
    """Start the W&B run of one launch of a trial, or return None (disabled, or W&B failed).

    ``mode`` is the sweep's ``decide_mode`` result, decided once by the driver; without it the trial
    decides itself (and prints the note). ``group`` is the sweep name (default ``exp``) the run's
    group is made from (``wandb_group``), ``record`` the launch's ``sweep.yaml`` (default: read
    from ``trial_dir``'s parent, the results folder). The run id is ``run_id(launch_id,
    spec.name)``, the run's files go to ``trial_dir/wandb``, every metric is drawn against
    ``step_metric(spec)``. Never raises for W&B's sake: a failed start prints one line (an online
    one is retried offline first).
    """
    logging_cfg = spec.cfg.logging
    if mode is None:
        mode, note = decide_mode(str(logging_cfg.wandb))
        if note:
            print(f"    {note}", flush=True)
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"W&B mode must be online, offline or disabled, not {mode!r}")
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    local_only = f"trial {spec.name} goes on with local logs only"
    try:
        import wandb

        trial_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(quiet=True, silent=True, console="off", x_disable_stats=True)
        if record is None:
            record = launch_record(trial_dir.parent)
        kwargs = init_kwargs(spec, trial_dir, group=group, launch_id=launch_id, record=record)
        kwargs["settings"] = settings
    except Exception as e:
        print(_could_not_start(e, local_only), flush=True)
        return None
    rid = kwargs["id"]
    _own_second(trial_dir, rid)
    try:
        run = wandb.init(mode=mode, **kwargs)  # type: ignore[arg-type]
    except Exception as e:
        if mode != "online":
            print(_could_not_start(e, local_only), flush=True)
            return None
        print(_could_not_start(e, f"trial {spec.name} logs offline, {SYNC_HINT}"), flush=True)
        try:
            run = wandb.init(mode="offline", **kwargs)
        except Exception as e2:
            print(_could_not_start(e2, local_only), flush=True)
            return None
    try:
        define_axes(run, spec)
    except Exception as e:  # the charts fall back to W&B's own step; the logging goes on
        print(f"    W&B define_metric failed ({type(e).__name__}: {e})", flush=True)
    return WandbSink(run, last_step=_last_step(run, trial_dir, rid))


def _own_second(trial_dir: Path, rid: str) -> None:
    """Wait, if need be, until no earlier launch of run ``rid`` has a folder stamped this second.

    W&B names a launch's folder ``[offline-]run-YYYYMMDD_HHMMSS-<id>`` (local time, to the second): a
    resumed launch that starts within the second of the previous one would reuse its folder and write
    over its run file, and ``run_files`` needs every launch's file.
    """
    wdir = trial_dir / "wandb"
    for _ in range(3):
        now = datetime.datetime.now()
        if not any(wdir.glob(f"*run-{now:%Y%m%d_%H%M%S}-{rid}")):
            return
        time.sleep(1.0 - now.microsecond / 1e6 + 0.01)


def _last_step(run: Any, trial_dir: Path, rid: str) -> int | None:
    """The last step run ``rid`` already holds: its files under ``trial_dir`` (this launch's new
    file holds none yet) and, online, the step W&B resumed the run at."""
    last = None
    with contextlib.suppress(Exception):  # unreadable files: as if empty
        last = logged_steps(trial_dir, rid)
    with contextlib.suppress(Exception):
        start = int(getattr(run, "starting_step", 0) or 0)
        if start > 0:  # the server's history goes up to start - 1
            last = max(start - 1, last if last is not None else start - 1)
    return last


def teardown() -> None:
    """Stop this process's W&B service now (Tune trial processes: at exit it may be gone already)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    with contextlib.suppress(Exception):
        wandb.teardown()
