"""A real Ray head for the tests that need one (token-auth checks): ``ray_head(tmp_path, mode)``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (closed again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ray_head(tmp_path: Path, auth_mode: str, token: str | None = None) -> Iterator[int]:
    """A real ``ray start --head --block`` with ``RAY_AUTH_MODE=auth_mode`` (and ``RAY_AUTH_TOKEN=token``)
    on one CPU; its GCS port. A head that does not start fails the test with its log.

    Stopped by its own process group and by its temp dir (never ``ray stop``, which would stop every
    Ray of this user on the machine).
    """
    ray_cli = Path(sys.executable).parent / "ray"
    assert ray_cli.exists(), f"no ray CLI next to {sys.executable} (ray[default] is a dependency)"
    temp = tempfile.mkdtemp(prefix="pbrlauth", dir="/tmp")  # short: Ray's socket paths are long
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_AUTH_MODE": auth_mode, "HOME": str(tmp_path)}  # no ~/.ray/auth_token of yours
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    cmd = [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp]
    cmd += ["--node-ip-address=127.0.0.1", "--ray-client-server-port", str(free_port())]
    # its own API-server port too: `--include-dashboard=false` still starts that server, on 8265
    # unless told otherwise, and another Ray on the machine holding 8265 stalled this head's start
    cmd += ["--dashboard-port", str(free_port())]
    cmd += ["--dashboard-agent-listen-port", str(free_port())]
    cmd += ["--metrics-export-port", str(free_port())]
    log = (tmp_path / "head.log").open("wb")
    head = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text(errors="replace")
            # Ready as `ray start` tells its user: the GCS port answers some seconds before the
            # node's raylet registers, and a driver joining in between fails "Failed to connect to
            # Ray cluster" (seen under `make test` load); `ray start` prints this line once it has.
            started = "Ray runtime started" in (tmp_path / "head.log").read_text(errors="replace")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                if started:
                    break
            assert time.monotonic() < deadline, (
                "the Ray head did not start within 90 s: "
                + (tmp_path / "head.log").read_text(errors="replace")[-2000:]
            )
            time.sleep(0.2)
        yield port
    finally:
        head.terminate()  # `ray start --block` stops what it started on SIGTERM
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if temp.encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
