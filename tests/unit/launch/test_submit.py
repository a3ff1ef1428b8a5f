"""``launch/submit.py``: what ``pbrl submit`` ships as the job's working directory.

The runtime env the command builds is captured from a fake Jobs client, and its ``excludes`` are fed to
Ray's own packager (``_zip_files``, what ``submit_job`` uploads) over a working directory with planted
credentials and keys: none of them may be in the package, the sweep file and code must be.

Job control (``--list``, ``--stop``, Ctrl-C on ``--logs``) runs against a fake client holding real
``JobDetails``; ``tests/integration/test_submit.py`` does the same on a real head.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pbrl_dist.cli import main
from pbrl_dist.launch import submit

SECRETS = [
    ".env",
    ".env.prod",
    "cluster/.env.local",
    ".netrc",
    "nested/deep/.netrc",
    ".aws/credentials",
    "nested/.aws/config",
    ".ssh/id_ed25519",
    "id_rsa",
    "keys/id_rsa.pub",
    "nested/id_ecdsa",
    "certs/server.pem",
    "tls/server.key",
    ".git-credentials",
]
KEEP = ["s.yaml", "mypkg/problem.py", "notes/README.md"]

SWEEP = """\
name: shipped
problem: {name: stackelberg, num_states: 4, num_leader_actions: 3, num_follower_actions: 3}
method: {name: pbrl_value, algo: pbrl, lam: 20.0, num_iters: 4, log_every: 2}
logging: {wandb: disabled}
sweep: {seeds: [0]}
"""


class _Jobs:
    submitted: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, address: str) -> None:
        self.address = address

    def submit_job(self, **kwargs: Any) -> str:
        _Jobs.submitted.append(kwargs)
        return "raysubmit_test"


def test_submit_ships_no_credentials_or_private_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ray._private.runtime_env.packaging import _zip_files

    wd = tmp_path / "wd"
    for rel in [*SECRETS, *KEEP]:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text("secret\n" if rel in SECRETS else "keep\n")
    (wd / "s.yaml").write_text(SWEEP)
    monkeypatch.chdir(wd)
    _Jobs.submitted = []
    monkeypatch.setattr(submit, "JobSubmissionClient", _Jobs)
    assert main(["submit", "s.yaml", "--address", "http://127.0.0.1:8265"]) == 0
    (job,) = _Jobs.submitted
    env = job["runtime_env"]
    package = tmp_path / "package.zip"
    _zip_files(env["working_dir"], env["excludes"], str(package), include_gitignore=False)
    with zipfile.ZipFile(package) as z:
        shipped = {n.rstrip("/") for n in z.namelist()}
    leaked = sorted(s for s in SECRETS if s in shipped)
    assert leaked == [], f"pbrl submit ships {leaked}"
    assert set(KEEP) <= shipped, shipped
    assert "raysubmit_test" in capsys.readouterr().out


# ------------------------------------------------------------------ job control: --list, --stop, Ctrl-C


def _job(sid: str, status: str, entry: str, start: int, meta: dict[str, str] | None = None) -> Any:
    from ray.job_submission import JobDetails, JobType

    return JobDetails(
        type=JobType.SUBMISSION,
        submission_id=sid,
        job_id=None,
        status=status,
        entrypoint=entry,
        start_time=start,
        metadata=meta or {},
    )


LONG = "pbrl sweep sweeps/fig1_stackelberg.yaml --address auto --out /results/" + "x" * 150
JOBS = [
    _job("raysubmit_b", "RUNNING", LONG, 2_000_000, {"pbrl_sweep": "fig1"}),
    _job("raysubmit_other", "RUNNING", "python train.py", 1_500_000),
    _job("raysubmit_a", "SUCCEEDED", "pbrl sweep s.yaml --address auto --out /r/s", 1_000_000),
    _job("raysubmit_meta", "FAILED", "bash run.sh", 3_000_000, {"pbrl_sweep": "custom"}),
]


class _Control:
    """A fake Jobs client holding ``JOBS``; ``stop_job`` makes a job ``STOPPED`` after two polls."""

    stopped: ClassVar[list[str]] = []

    def __init__(self, address: str) -> None:
        self.address = address
        self.polls = 0

    def list_jobs(self) -> list[Any]:
        return JOBS

    def get_job_info(self, job_id: str) -> Any:
        for job in JOBS:
            if job.submission_id == job_id:
                if job_id in _Control.stopped and self.polls >= 2:
                    return job.model_copy(update={"status": "STOPPED"})
                return job
        raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")

    def get_job_status(self, job_id: str) -> str:
        self.polls += 1
        return str(self.get_job_info(job_id).status)  # as the SDK: get_job_info(...).status

    def stop_job(self, job_id: str) -> bool:
        _Control.stopped.append(job_id)
        return True

    def get_job_logs(self, job_id: str) -> str:
        raise KeyboardInterrupt  # the user's Ctrl-C while polling

    async def tail_job_logs(self, job_id: str) -> Any:
        yield "first line\n"
        raise KeyboardInterrupt  # the user's Ctrl-C while streaming


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> type[_Control]:
    _Control.stopped = []
    monkeypatch.setattr(submit, "JobSubmissionClient", _Control)
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)
    return _Control


ADDR = "http://head:8265"


def test_list_jobs_shows_pbrl_jobs_oldest_first_within_120_columns(
    control: type[_Control], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--list", "--address", ADDR]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 120, lines
    header, *rows, summary = lines
    assert header.split()[:2] == ["JOB", "ID"]
    assert [r.split()[:2] for r in rows] == [
        ["raysubmit_a", "SUCCEEDED"],
        ["raysubmit_b", "RUNNING"],
        ["raysubmit_meta", "FAILED"],
    ]
    assert rows[1].endswith("…") and "pbrl sweep sweeps/fig1_stackelberg.yaml" in rows[1]
    assert rows[0].endswith("pbrl sweep s.yaml --address auto --out /r/s")
    when = submit.time.strftime("%Y-%m-%d %H:%M", submit.time.localtime(1_000))
    assert when in rows[0]
    assert summary == f"3 pbrl jobs on {ADDR} (1 other job hidden: not pbrl sweeps)"


def test_stop_job_waits_for_a_terminal_state_and_prints_it(
    control: type[_Control], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--stop", "raysubmit_b", "--address", ADDR]) == 0
    assert control.stopped == ["raysubmit_b"]
    out = capsys.readouterr().out
    assert "job raysubmit_b: STOPPED" in out.splitlines()
    # how to finish it: the same sweep resumed into the same folder
    resume = "pbrl submit sweeps/fig1_stackelberg.yaml --out /results/" + "x" * 150
    assert f"  resume: {resume} --resume --address {ADDR}" in out.splitlines()


def test_stop_job_of_a_finished_job_stops_nothing(
    control: type[_Control], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--stop", "raysubmit_a", "--address", ADDR]) == 0
    assert control.stopped == []
    assert "already SUCCEEDED" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--stop", "--logs"])
def test_unknown_job_id_is_one_line_exit_2(
    control: type[_Control], capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    assert main(["submit", flag, "raysubmit_nope", "--address", ADDR]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pbrl: error: {flag}: no job raysubmit_nope on {ADDR}"]
    assert control.stopped == []


def test_stop_job_still_running_after_the_wait_exits_1(
    control: type[_Control], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Control, "stop_job", lambda self, job_id: True)  # ignores the request
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(submit.time, "monotonic", lambda: float(next(clock)))
    assert submit.stop_job("raysubmit_b", address=ADDR, wait_s=20) == 1
    assert "still RUNNING after 20s" in capsys.readouterr().out


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "polling"])
def test_follow_logs_ctrl_c_leaves_the_job_running_and_says_how_to_reattach_or_stop(
    control: type[_Control],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    if not stream:
        monkeypatch.setitem(sys.modules, "aiohttp", None)
    assert main(["submit", "--logs", "raysubmit_b", "--address", ADDR]) == 130
    err = capsys.readouterr().err
    assert "the job goes on running" in err
    assert f"pbrl submit --logs raysubmit_b --address {ADDR}" in err
    assert f"pbrl submit --stop raysubmit_b --address {ADDR}" in err
    assert control.stopped == []


def test_submit_modes_are_exclusive(
    control: type[_Control], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--list", "--stop", "raysubmit_b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--list and --stop" in err[0]
    assert control.stopped == []
