"""``pbrl submit``: the Ray Job it submits, and following its logs.

Most tests fake ``JobSubmissionClient``. ``test_journey_on_a_real_head`` does the whole journey on a
real local Ray head with a dashboard (``ray start --head --block`` from this venv, in its own temp
dir and on free ports): submit the RLHF toy sweep, follow ``--logs`` to the end, find every trial's
``result.json``. Its teardown ends only that head's processes, by pid: ``ray stop`` would end every
Ray process on the machine, including other tests' clusters.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from pbrl_dist.cli import main
from pbrl_dist.config.loader import load_sweep

submit = pytest.importorskip("pbrl_dist.launch.submit")
ROOT = Path(__file__).resolve().parents[2]


class FakeClient:
    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, address: str) -> None:
        self.address, self.submitted = address, []
        self.statuses = iter(["PENDING", "PENDING", "RUNNING", "SUCCEEDED", "SUCCEEDED"])
        self.logs = iter(["", "sweep fig1: 6 trials\n", "sweep fig1: 6 trials\n[1/6] done\n"])
        FakeClient.instances.append(self)

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        return "raysubmit_test123"

    def get_job_status(self, job_id: str) -> str:
        return next(self.statuses)

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(status=self.get_job_status(job_id), entrypoint="", metadata={})

    def get_job_logs(self, job_id: str) -> str:
        return next(self.logs, "sweep fig1: 6 trials\n[1/6] done\n")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.instances = []
    monkeypatch.setattr(submit, "JobSubmissionClient", FakeClient)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    return FakeClient


def test_submit_sends_pbrl_sweep_with_address_auto(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "secret-should-not-travel")
    rc = main(
        [
            "submit",
            "sweeps/fig1_stackelberg.yaml",
            "--address",
            "http://head:8265",
            "--smoke",
            "method.lam=10",
        ]
    )
    assert rc == 0
    (client,) = fake.instances
    assert client.address == "http://head:8265"
    (kw,) = client.submitted
    argv = shlex.split(kw["entrypoint"])
    assert argv[:3] == ["pbrl", "sweep", "sweeps/fig1_stackelberg.yaml"]
    assert argv[argv.index("--address") + 1] == "auto"
    assert argv[argv.index("--out") + 1] == "/results/fig1_stackelberg_smoke"
    assert "--smoke" in argv and "method.lam=10" in argv
    env = kw["runtime_env"]
    assert env["working_dir"] == "." and {".venv", "results", ".git"} <= set(env["excludes"])
    assert env["env_vars"] == {"WANDB_MODE": "offline"}  # never the API key
    assert kw["metadata"] == {"pbrl_sweep": load_sweep(ROOT / argv[2], smoke=True).name}
    assert "raysubmit_test123" in capsys.readouterr().out


def test_submit_validates_before_contacting_the_cluster(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["submit", str(ROOT / "sweeps/fig1_stackelberg.yaml"), "method.lamb=3"])
    assert rc == 2 and not fake.instances
    assert capsys.readouterr().err.startswith("pbrl: error: method.lamb")
    assert main(["submit"]) == 2  # neither a sweep nor --logs


def test_logs_are_followed_until_the_job_ends(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://env-head:8265")
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    monkeypatch.setitem(__import__("sys").modules, "aiohttp", None)  # force the polling path
    assert main(["submit", "--logs", "raysubmit_test123"]) == 0
    (client,) = fake.instances
    assert client.address == "http://env-head:8265"
    cap = capsys.readouterr()
    assert cap.out.count("sweep fig1: 6 trials") == 1 and "[1/6] done" in cap.out
    assert "SUCCEEDED" in cap.out and "aiohttp" in cap.err


def test_unreachable_cluster_is_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(address: str) -> None:
        raise ConnectionError(f"Failed to connect to Ray at address: {address}.")

    monkeypatch.setattr(submit, "JobSubmissionClient", refuse)
    assert main(["submit", "--logs", "x", "--address", "http://nowhere:8265"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Ray Jobs API" in err[0]


def test_sweep_file_outside_the_shipped_directory_or_relative_out_is_refused(
    fake: type[FakeClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(ROOT / "sweeps/rlhf_toy.yaml"), "--smoke"]) == 2
    assert "the job ships only" in capsys.readouterr().err
    monkeypatch.chdir(ROOT)
    rel = ["submit", "sweeps/rlhf_toy.yaml", "--smoke", "--out", "results/x"]
    assert main(rel) == 2
    assert "must be an absolute path on the cluster" in capsys.readouterr().err
    assert not fake.instances
    # An absolute sweep path inside the working directory travels as a relative one.
    assert main(["submit", str(ROOT / "sweeps/rlhf_toy.yaml"), "--smoke"]) == 0
    (kw,) = fake.instances[0].submitted
    assert shlex.split(kw["entrypoint"])[2] == "sweeps/rlhf_toy.yaml"
    assert ".env" in kw["runtime_env"]["excludes"]  # compose's secrets never travel


def test_a_problem_file_outside_the_shipped_directory_is_refused(
    fake: type[FakeClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The job ships the working directory only: a ``problem.target`` file elsewhere would be missing."""
    work = tmp_path / "work"
    work.mkdir()
    sweep = work / "tax.yaml"
    text = (ROOT / "examples" / "tax_design.yaml").read_text()
    sweep.write_text(
        text.replace("tax_design.py:SPEC", f"{ROOT / 'examples' / 'tax_design.py'}:SPEC")
    )
    monkeypatch.chdir(work)
    assert main(["submit", "tax.yaml", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "problem.target:" in err and "outside" in err and not fake.instances
    # next to the sweep file it travels with the job
    (work / "tax_design.py").write_text((ROOT / "examples" / "tax_design.py").read_text())
    sweep.write_text(text)
    assert main(["submit", "tax.yaml", "--smoke"]) == 0
    assert fake.instances


def test_missing_pbrl_on_the_head_gets_a_hint(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.setattr(FakeClient, "get_job_status", lambda self, job_id: "FAILED")
    monkeypatch.setattr(
        FakeClient, "get_job_logs", lambda self, job_id: "/bin/sh: 1: pbrl: not found\n"
    )
    assert main(["submit", "--logs", "raysubmit_x", "--address", "http://h:8265"]) == 1
    cap = capsys.readouterr()
    assert "FAILED" in cap.out and "source .venv/bin/activate" in cap.err


# ------------------------------------------------------------------ the journey on a real head


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes() -> dict[int, tuple[int, str, str]]:
    """Every process now: pid -> (parent pid, start time, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), fields[19], cmdline)
    return out


def _head_processes(root_pid: int, temp_dir: str) -> dict[int, str]:
    """The head's processes: descendants of ``ray start`` plus anything naming its temp dir.

    Returns pid -> start time, so a pid reused by an unrelated process is never signalled.
    """
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    found |= {pid for pid, (_, _, cmd) in procs.items() if temp_dir in cmd}
    found.discard(os.getpid())
    return {pid: procs[pid][1] for pid in found}


def _kill_all(pids: dict[int, str], sig: int) -> None:
    now = _processes()
    for pid, started in pids.items():
        if pid in now and now[pid][1] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no Ray Jobs API at {url} after {timeout:g}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A local Ray head with a dashboard (auth disabled, 2 CPUs); yields the Jobs API address."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "ray").exists():
        pytest.skip(f"no ray executable next to {sys.executable}")
    if not Path("/proc/self/stat").exists():
        pytest.skip("the teardown finds the head's processes in /proc (Linux)")
    # Short: Ray's socket paths under <temp dir>/session_*/sockets/ must stay under 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="pbrlsub", dir="/tmp")
    port, dash, client, agent = (_free_port() for _ in range(4))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "WANDB_MODE")}
    env |= {
        "RAY_AUTH_MODE": "disabled",  # explicit: a ~/.ray/auth_token would switch on token auth
        # As after `source .venv/bin/activate`: the job's shell finds `pbrl` (and this Python).
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log = Path(temp_dir) / "head.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                str(venv_bin / "ray"),
                "start",
                "--head",
                f"--port={port}",
                f"--dashboard-port={dash}",
                f"--ray-client-server-port={client}",
                f"--dashboard-agent-listen-port={agent}",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--disable-usage-stats",
                f"--temp-dir={temp_dir}",
                "--block",
            ],
            cwd=temp_dir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_http(f"{address}/api/jobs/", proc, log, timeout=90)
        yield address
    finally:
        pids = _head_processes(proc.pid, temp_dir)
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        pids |= _head_processes(proc.pid, temp_dir)
        _kill_all(pids, signal.SIGKILL)  # whatever outlived it (the job's driver, workers)
        proc.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # Ray's log tail
def test_journey_on_a_real_head(
    ray_head: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)  # the job ships the working directory: the repository
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the client side, like the head's
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    res = tmp_path / "res"
    sweep = "sweeps/rlhf_toy.yaml"

    rc = main(["submit", sweep, "--smoke", "--address", ray_head, "--out", str(res)])
    out = capsys.readouterr().out
    assert rc == 0, out
    m = re.search(r"job id: (\S+)", out)
    assert m, out
    job_id = m.group(1)

    rc = main(["submit", "--logs", job_id, "--address", ray_head])
    cap = capsys.readouterr()
    logs = cap.out
    assert rc == 0, logs + cap.err
    assert f"job {job_id}: SUCCEEDED" in logs
    trials = [t.name for t in load_sweep(ROOT / sweep, smoke=True).trials]
    assert re.search(rf"{len(trials)}/{len(trials)} trials finished \(0 errored\)", logs), logs
    for name in trials:
        assert (res / name / "result.json").is_file(), f"{name}: no result.json in {res}"

    from ray.job_submission import JobSubmissionClient

    env = JobSubmissionClient(ray_head).get_job_info(job_id).runtime_env
    assert env["env_vars"] == {"WANDB_MODE": "disabled"}  # travelled; no secrets did

    # Job control on the same head. A job that is not pbrl's is hidden by --list; Ctrl-C on --logs
    # (a real `pbrl` process, streaming) leaves it running; --stop stops it; an unknown id is refused.
    from ray.job_submission import JobStatus

    client = JobSubmissionClient(ray_head)
    other = client.submit_job(entrypoint="echo started; sleep 300")
    assert main(["submit", "--list", "--address", ray_head]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[:2] for r in rows[1:-1]] == [[job_id, "SUCCEEDED"]], rows
    assert rows[-1] == f"1 pbrl job on {ray_head} (1 other job hidden: not pbrl sweeps)", rows

    follow = subprocess.Popen(
        [str(Path(sys.executable).parent / "pbrl"), "submit", "--logs", other],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ray_head},
    )
    try:
        assert follow.stdout is not None
        seen = []  # Ray's runtime-env lines, then the job's own first line: it is followed now
        while not seen or seen[-1] not in ("started\n", ""):
            seen.append(follow.stdout.readline())
        assert seen[-1] == "started\n", (seen, follow.poll())
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 130, err
    assert "the job goes on running" in err and "Traceback" not in err, err
    assert f"pbrl submit --logs {other} --address {ray_head}" in err
    assert f"pbrl submit --stop {other} --address {ray_head}" in err
    assert JobStatus(client.get_job_status(other)) == JobStatus.RUNNING

    assert main(["submit", "--stop", other, "--address", ray_head]) == 0
    assert f"job {other}: STOPPED" in capsys.readouterr().out.splitlines()
    assert main(["submit", "--stop", "raysubmit_nope", "--address", ray_head]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines == [f"pbrl: error: --stop: no job raysubmit_nope on {ray_head}"]
