"""Start or join Ray for ``pbrl run`` / ``pbrl sweep``; a wrong ``--address`` fails in seconds, in one line.

``ray.init(address=HOST:PORT)`` with nothing listening retries for minutes, and an auth-mode mismatch
is retried for ~20 s and then surfaces as a bare ``ConnectionError`` (the reason only in its cause).
Here the address is probed first (TCP, a few seconds), then one GCS handshake tells an auth mismatch
at once, and any failure becomes a ``ConfigError`` naming the address, with the ``RAY_AUTH_MODE`` hint
where it fits. The other direction (token auth here, none on the cluster) joins without complaint and
then every actor dies unstarted; right after ``ray.init`` one zero-CPU task asks the cluster's mode and
a mismatch is the same one line, before the results folder is written.

Reaping what a killed driver's Ray left behind is recovery, in ``launch/recovery.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import ray

from pbrl_dist.config.loader import ConfigError

PROBE_TIMEOUT_S = 5.0
_STARTED: dict[str, str] = {}
"""``session_dir`` of the embedded Ray this process started (from ``ray.init``'s own answer), until
``stop_ray``; empty when it joined a cluster or started none."""
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
    with _keep_sigterm_handler(), _ctrl_c_after_start():
        return _init(address, num_cpus)


@contextlib.contextmanager
def _ctrl_c_after_start() -> Any:
    """Hold a Ctrl-C that comes while Ray starts and raise it once ``ray.init`` has returned.

    ``ray.init`` spawns Ray's processes; a ``KeyboardInterrupt`` raised inside Python's after-fork
    hooks (e.g. logging's lock release) is printed as "Exception ignored" and lost, and the sweep
    would go on as if Ctrl-C had never come.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if came:
        raise KeyboardInterrupt


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
        ctx = ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            logging_level=logging.WARNING,  # pbrl says where the sweep runs; Ray's INFO lines repeat it
        )
        # a local start returns a RayContext (Ray's docs: ``context.address_info``); typed BaseContext
        session = ctx.address_info.get("session_dir")  # type: ignore[attr-defined]
        if session:
            _STARTED["session_dir"] = str(session)
        return True
    probe(address)
    refused = auth_refusal(address)
    if refused is not None:
        raise ConfigError(
            f"--address {address}: the cluster refused to authenticate ({refused}); {AUTH_HINT}"
        )
    try:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        text = str(e).strip().splitlines()
        first = text[0] if text else type(e).__name__
        # ray.init's ConnectionError keeps the reason (e.g. "Unauthenticated") in its cause
        why = f"{e} {e.__cause__ or ''}".lower()
        auth = any(w in why for w in ("auth", "token", "unauthenticated", "permission"))
        hint = AUTH_HINT if auth else "is the cluster up (`ray status`)? " + AUTH_HINT
        raise ConfigError(f"--address {address}: cannot join Ray ({first}); {hint}") from None
    theirs, mine = cluster_auth_mode(), _auth_mode_name()
    if theirs is not None and mine is not None and theirs != mine:
        ray.shutdown()
        extra = " and the cluster's RAY_AUTH_TOKEN" if theirs == "token" else ""
        raise ConfigError(
            f"--address {address}: the cluster runs RAY_AUTH_MODE={theirs} but this shell has "
            f"RAY_AUTH_MODE={mine} (its trials' actors would never start); set "
            f"RAY_AUTH_MODE={theirs}{extra} here and run it again"
        )
    return True


AUTH_PROBE_TIMEOUT_S = 15.0


def _auth_mode_name() -> str | None:
    """This process's Ray auth mode (``disabled``/``token``/...), or None if Ray cannot say.

    Ray's own reading (a private function; Ray is pinned), not ``RAY_AUTH_MODE``: in Ray 2.60 a new
    local Ray and ``ray start --head`` turn token auth on from a token file with the variable unset,
    and no public API reports the mode."""
    try:
        from ray._private.authentication.authentication_utils import (
            get_authentication_mode_name,
        )
        from ray._raylet import get_authentication_mode  # type: ignore[attr-defined]

        return str(get_authentication_mode_name(get_authentication_mode()))
    except Exception:
        return None


def cluster_auth_mode(timeout: float = AUTH_PROBE_TIMEOUT_S) -> str | None:
    """The auth mode the joined cluster's workers run with, by one tiny task (None: no answer in time).

    A driver with token auth joins a cluster without it (GCS checks no token then), but every actor
    it creates dies before running: the mismatch only shows in the trials. A zero-CPU task answers in
    a second or two and tells the cluster's mode. Call right after ``ray.init``.
    """

    @ray.remote(num_cpus=0, max_retries=0)
    def mode() -> str | None:  # self-contained: the workers need not import pbrl_dist
        try:
            from ray._private.authentication.authentication_utils import (
                get_authentication_mode_name,
            )
            from ray._raylet import get_authentication_mode  # type: ignore[attr-defined]

            return str(get_authentication_mode_name(get_authentication_mode()))
        except Exception:
            return None

    ref = None
    try:
        ref = mode.remote()
        got = ray.get(ref, timeout=timeout)
    except Exception:
        if ref is not None:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        return None
    return got if isinstance(got, str) else None


def check_actor_fit(cfgs: Sequence[Any], names: Sequence[str]) -> None:
    """Outside Tune (``pbrl run``): each trial's actors must fit the running cluster's CPUs.

    Raises ``ConfigError`` naming the first trial that would wait forever for its actors.
    """
    from pbrl_dist.algos.registry import actor_counts

    total = float(ray.cluster_resources().get("CPU", 0.0))
    for cfg, name in zip(cfgs, names, strict=True):
        d, n = cfg.dist, sum(actor_counts(cfg.method, cfg.dist))
        need = n * d.cpus_per_worker
        if need > total + 1e-9:
            raise ConfigError(
                f"dist: trial {name} starts {n} actors × "
                f"cpus_per_worker={d.cpus_per_worker} = {need:g} CPUs but Ray has {total:g}; lower "
                "dist.num_rollout_workers / dist.num_oracles / dist.cpus_per_worker"
            )


def started_session() -> str | None:
    """The session folder of the embedded Ray this process started (None: none, or a joined cluster)."""
    return _STARTED.get("session_dir")


def stop_ray(*, clean: bool) -> None:
    """Shut down the Ray this process started; with ``clean``, remove its session folder too.

    An embedded Ray leaves ``/tmp/ray/session_*`` behind (logs, sockets, spilled objects: tens of MB
    per long sweep). After a run that ended without an error nobody needs them; after a failure they
    stay for debugging.
    """
    session = _STARTED.pop("session_dir", None)
    ray.shutdown()
    if clean and session:
        shutil.rmtree(session, ignore_errors=True)
