"""W&B logging: one run per launch of a trial, offline unless online can work, never a reason to fail.

- group = the sweep name, name = the trial name, tags = [method name, problem name],
  config = the trial's resolved config (the same dict as its ``config.yaml``);
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
import hashlib
import netrc
import os
import re
import secrets
import socket
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.metrics import scalar_metrics

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

    def close(self, exit_code: int = 0) -> None:
        """Finish the run (quietly; errors are reported in one line)."""
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
) -> WandbSink | None:
    """Start the W&B run of one launch of a trial, or return None (disabled, or W&B failed).

    ``mode`` is the sweep's ``decide_mode`` result, decided once by the driver; without it the trial
    decides itself (and prints the note). The run id is ``run_id(launch_id, spec.name)``, the run's
    files go to ``trial_dir/wandb``. Never raises for W&B's sake: a failed start prints one line (an
    online one is retried offline first).
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
    group = group or spec.cfg.exp
    problem = getattr(spec.cfg.problem, "name", "problem")
    local_only = f"trial {spec.name} goes on with local logs only"
    try:
        import wandb

        trial_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(quiet=True, silent=True, console="off", x_disable_stats=True)
    except Exception as e:
        print(_could_not_start(e, local_only), flush=True)
        return None
    rid = run_id(launch_id, spec.name)
    kwargs: dict[str, Any] = dict(
        project=logging_cfg.project,
        group=group,
        name=spec.name,
        tags=[str(spec.cfg.method.name), str(problem)],
        config=spec.container,
        dir=str(trial_dir),
        id=rid,
        resume="allow",
        reinit="create_new",
        settings=settings,
    )
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
    return WandbSink(run, last_step=_last_step(run, trial_dir, rid))


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
