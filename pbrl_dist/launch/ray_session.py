"""Start or join Ray for ``pbrl run`` / ``pbrl sweep``; a wrong ``--address`` fails in seconds, in one line.

``ray.init(address=HOST:PORT)`` with nothing listening retries for minutes, and an auth-mode mismatch
is retried for ~20 s and then surfaces as a bare ``ConnectionError`` (the reason only in its cause).
Here the address is probed first (TCP, a few seconds), then one GCS handshake tells an auth mismatch
at once, and any failure becomes a ``ConfigError`` naming the address, with the ``RAY_AUTH_MODE`` hint
where it fits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ray

from pbrl_dist.config.loader import ConfigError

PROBE_TIMEOUT_S = 5.0
AUTH_HINT = (
    "if the cluster uses token auth, set RAY_AUTH_MODE (and RAY_AUTH_TOKEN) here exactly as on the "
    "cluster; if it does not, set RAY_AUTH_MODE=disabled"
)


def _host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``ray://HOST:PORT`` → (host, port); None for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    url = urlparse(address if "://" in address else f"tcp://{address}")
    if url.hostname is None:
        raise ConfigError(f"--address {address}: not HOST:PORT, ray://HOST:PORT or auto")
    default = 10001 if url.scheme == "ray" else 6379
    try:
        port = url.port or default
    except ValueError:
        raise ConfigError(f"--address {address}: the port is not a number") from None
    return url.hostname, port


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``ConfigError`` unless something accepts TCP connections at ``address``."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise ConfigError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one "
            "(`ray start --head`, `docker compose up`) or fix the address"
        ) from None


def auth_refusal(address: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One GCS handshake with this process's auth settings: why the cluster refused it, or None.

    ``ray.init`` retries a refused handshake for ~20 s; a single direct attempt (in a thread, at most
    ``timeout`` seconds) answers in milliseconds. Only an authentication refusal is reported: no
    answer or any other error is left to ``ray.init``. Ray Client addresses (``ray://``) are skipped.
    """
    hp = _host_port(address)
    if hp is None or address.startswith("ray://"):
        return None
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # private; Ray is pinned
        from ray.exceptions import AuthenticationError
    except ImportError:
        return None
    host, port = hp
    gcs = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    box: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            GcsClient(address=gcs)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=attempt, name="pbrl-gcs-handshake", daemon=True)
    t.start()
    t.join(timeout)  # a listener that is not a GCS never answers: leave it to ray.init
    err = box.get("error")
    if not isinstance(err, AuthenticationError):
        return None
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Start (or connect to) Ray unless it is running; return True when this call started it.

    ``address`` (or the ``RAY_ADDRESS`` environment variable) joins a running cluster, after a quick
    probe; otherwise an embedded local Ray starts with ``num_cpus`` (default: every CPU here).
    Raises ``ConfigError`` (one line, naming the address) when the cluster cannot be joined.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    with _keep_sigterm_handler():
        return _init(address, num_cpus)


@contextlib.contextmanager
def _keep_sigterm_handler() -> Any:
    """``ray.init`` installs a C++ SIGTERM handler that aborts the process (exit 134, no message);
    put back the Python one (``pbrl`` turns SIGTERM into a graceful Ctrl-C)."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(handler):
            signal.signal(signal.SIGTERM, handler)


def _init(address: str | None, num_cpus: int | None) -> bool:
    if address is None:
        # "local": a new instance even if a `ray start` cluster on this machine left its address behind.
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
        return True
    probe(address)
    refused = auth_refusal(address)
    if refused is not None:
        raise ConfigError(
            f"--address {address}: the cluster refused to authenticate ({refused}); {AUTH_HINT}"
        )
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        text = str(e).strip().splitlines()
        first = text[0] if text else type(e).__name__
        # ray.init's ConnectionError keeps the reason (e.g. "Unauthenticated") in its cause
        why = f"{e} {e.__cause__ or ''}".lower()
        auth = any(w in why for w in ("auth", "token", "unauthenticated", "permission"))
        hint = AUTH_HINT if auth else "is the cluster up (`ray status`)? " + AUTH_HINT
        raise ConfigError(f"--address {address}: cannot join Ray ({first}); {hint}") from None
    return True


def check_actor_fit(dists: Sequence[Any], names: Sequence[str]) -> None:
    """Outside Tune (``pbrl run``): each trial's actors must fit the running cluster's CPUs.

    Raises ``ConfigError`` naming the first trial that would wait forever for its actors.
    """
    total = float(ray.cluster_resources().get("CPU", 0.0))
    for d, name in zip(dists, names, strict=True):
        need = (max(1, d.num_rollout_workers) + d.num_oracles) * d.cpus_per_worker
        if need > total + 1e-9:
            raise ConfigError(
                f"dist: trial {name} starts {max(1, d.num_rollout_workers) + d.num_oracles} actors × "
                f"cpus_per_worker={d.cpus_per_worker} = {need:g} CPUs but Ray has {total:g}; lower "
                "dist.num_rollout_workers / dist.num_oracles / dist.cpus_per_worker"
            )


def stop_ray(*, clean: bool) -> None:
    """Shut down the Ray this process started; with ``clean``, remove its session folder too.

    An embedded Ray leaves ``/tmp/ray/session_*`` behind (logs, sockets, spilled objects: tens of MB
    per long sweep). After a run that ended without an error nobody needs them; after a failure they
    stay for debugging.
    """
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    session = None
    if node is not None and getattr(node, "head", False):
        with contextlib.suppress(Exception):
            session = node.get_session_dir_path()
    ray.shutdown()
    if clean and session:
        shutil.rmtree(session, ignore_errors=True)


SESSION_FILE = ".ray_session"


def _registry() -> Path:
    """Per-user list of the embedded Ray sessions pbrl started (one empty-ish file each)."""
    root = os.environ.get("PBRL_STATE_DIR") or str(Path.home() / ".cache" / "pbrl_dist")
    return Path(root) / "ray_sessions"


def remember_session(out: Path) -> None:
    """Note the session folder of the Ray this process started, in ``out`` and in the user's registry."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    if node is None or not getattr(node, "head", False):
        return
    with contextlib.suppress(Exception):
        session = node.get_session_dir_path()
        (out / SESSION_FILE).write_text(session + "\n", encoding="utf-8")
        reg = _registry()
        reg.mkdir(parents=True, exist_ok=True)
        (reg / Path(session).name).write_text(session + "\n", encoding="utf-8")


def forget_session(out: Path) -> None:
    """The Ray noted in ``out`` was shut down cleanly."""
    note = out / SESSION_FILE
    with contextlib.suppress(OSError):
        (_registry() / Path(note.read_text(encoding="utf-8").strip()).name).unlink(missing_ok=True)
    note.unlink(missing_ok=True)


def reap_leftovers(out: Path) -> int:
    """Kill what is left of embedded Rays whose pbrl driver was killed; return how many processes.

    Ray's agents outlive a SIGKILLed driver (re-parented to init). Candidates are the session noted
    in ``out`` and every session in the user's registry (so a folder never resumed is cleaned by the
    next run anywhere). A session is reaped only when its driver (the pid that ends the session
    folder's name) is gone; a process belongs to it when its command line or one of its open files
    names that session folder. Call it holding ``out``'s lock.
    """
    notes = [out / SESSION_FILE]
    with contextlib.suppress(OSError):
        notes += sorted(_registry().iterdir())
    killed = 0
    for note in notes:
        try:
            session = note.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        n = _reap(session)
        if n is None:
            continue  # its driver is alive
        killed += n
        note.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (_registry() / Path(session).name).unlink(missing_ok=True)
    return killed


def _reap(session: str) -> int | None:
    """Stop a dead driver's Ray session (None if its driver lives or the name is not Ray's)."""
    name = Path(session).name
    try:
        driver = int(name.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None
    if not name.startswith("session_") or _alive(driver):
        return None
    killed = 0
    for pid in _pids_using(session):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    shutil.rmtree(session, ignore_errors=True)
    return killed


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return pid == os.getpid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_using(session: str) -> list[int]:
    """Processes whose command line or open files mention ``session`` (Linux /proc; else none)."""
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if session in (d / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(d.name))
                continue
            for fd in (d / "fd").iterdir():
                if os.readlink(fd).startswith(session):
                    found.append(int(d.name))
                    break
        except OSError:
            continue
    return found
