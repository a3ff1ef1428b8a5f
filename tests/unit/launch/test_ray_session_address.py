"""``launch/ray_session.py``: a wrong ``--address`` (nothing listening) or an auth-mode mismatch with the
cluster is one ``pbrl: error:`` line naming the address (and ``RAY_AUTH_MODE`` for auth), within seconds,
with nothing written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.config.loader import ConfigError

BIN = Path(sys.executable).parent
PBRL = str(BIN / "pbrl")


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def test_ray_session_sweep_with_a_closed_address_fails_fast_in_one_line(
    tmp_path: Path, closed_port: int
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    address = f"127.0.0.1:{closed_port}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [PBRL, "sweep", str(sweep), "--out", str(tmp_path / "out"), "--address", address],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert took < 30, f"took {took:.1f}s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pbrl: error:") and address in lines[0]
    assert not (tmp_path / "out").exists()


def test_ray_session_probe_refuses_a_closed_port_and_passes_a_listening_one(
    closed_port: int,
) -> None:
    from pbrl_dist.launch.ray_session import probe

    with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{closed_port}"):
        probe(f"127.0.0.1:{closed_port}", timeout=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        probe(f"127.0.0.1:{s.getsockname()[1]}", timeout=2)  # no error


@pytest.mark.parametrize("chained", [False, True], ids=["bare", "in_cause"])
def test_ray_session_auth_mismatch_becomes_one_error_with_the_ray_auth_mode_hint(
    monkeypatch: pytest.MonkeyPatch, chained: bool
) -> None:
    import ray

    from pbrl_dist.launch import ray_session

    def refuse(*args: Any, **kwargs: Any) -> None:
        text = "Unauthenticated: RPC error: InvalidAuthToken: token is missing or incorrect"
        if not chained:
            raise ConnectionError(f"GCS said: {text}")
        # what ray.init really raises: the reason only in the cause
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379") from (
            RuntimeError(f"Failed to connect to GCS. Last connection error: {text}")
        )

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray_session, "probe", lambda address, timeout=5.0: None)
    monkeypatch.setattr(ray_session, "auth_refusal", lambda *a, **k: None, raising=False)
    with pytest.raises(ConfigError) as info:
        ray_session.ensure_ray("10.0.0.9:6379")
    msg = str(info.value)
    assert "10.0.0.9:6379" in msg and "RAY_AUTH_MODE" in msg
    assert "is the cluster up" not in msg  # the auth hint, not the generic one
    assert "\n" not in msg


def _kill_head(head: subprocess.Popen[bytes], tag: str) -> None:
    """Stop the head this test started: its own process group, then any process naming its temp dir."""
    head.terminate()  # `ray start --block` stops the processes it started on SIGTERM
    try:
        head.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if tag.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.mark.ray
def test_ray_session_real_token_auth_cluster_refuses_a_client_with_auth_disabled(
    tmp_path: Path,
) -> None:
    """A real head with ``RAY_AUTH_MODE=token``; ``pbrl sweep`` with auth disabled: rc 2 and the hint."""
    ray_cli = BIN / "ray"
    if not ray_cli.exists():
        pytest.skip("no ray CLI next to this Python")
    sweep = tiny_sweep_file(tmp_path)
    temp = tempfile.mkdtemp(prefix="pbrlauth", dir="/tmp")  # short: Ray's socket paths are long
    port = _free_port()
    head_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head_env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    cmd = [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp]
    cmd += ["--dashboard-port", str(_free_port()), "--ray-client-server-port", str(_free_port())]
    cmd += ["--dashboard-agent-listen-port", str(_free_port())]
    cmd += ["--metrics-export-port", str(_free_port())]
    log = (tmp_path / "head.log").open("wb")
    head = subprocess.Popen(
        cmd, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text(errors="replace")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.skip("the token-auth head did not start within 60 s")
            time.sleep(0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["RAY_AUTH_MODE"] = "disabled"
        address = f"127.0.0.1:{port}"
        t0 = time.monotonic()
        proc = subprocess.run(
            [PBRL, "sweep", str(sweep), "--out", str(tmp_path / "out"), "--address", address],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - t0
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert took < 30, f"took {took:.1f}s"
        errors = [line for line in proc.stderr.splitlines() if line.startswith("pbrl: error:")]
        assert len(errors) == 1, proc.stderr[-3000:]
        assert address in errors[0] and "RAY_AUTH_MODE" in errors[0]
        assert not (tmp_path / "out").exists()
    finally:
        _kill_head(head, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
