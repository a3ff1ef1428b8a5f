"""``launch/ray_session.py``: a wrong ``--address`` (nothing listening) or an auth-mode mismatch with the
cluster is one ``pbrl: error:`` line naming the address (and ``RAY_AUTH_MODE`` for auth), within seconds,
with nothing written.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ray_head import ray_head
from _tiny import tiny_sweep_file

from pbrl_dist.config.loader import ConfigError

BIN = Path(sys.executable).parent
PBRL = str(BIN / "pbrl")


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


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


@pytest.mark.ray
def test_ray_session_real_token_auth_cluster_refuses_a_client_with_auth_disabled(
    tmp_path: Path,
) -> None:
    """A real head with ``RAY_AUTH_MODE=token``; ``pbrl sweep`` with auth disabled: rc 2 and the hint."""
    sweep = tiny_sweep_file(tmp_path)
    with ray_head(tmp_path, "token", token=secrets.token_hex(32)) as port:
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
