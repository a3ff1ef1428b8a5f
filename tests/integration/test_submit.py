"""``pbrl submit``: the Ray Job it submits, and following its logs (JobSubmissionClient faked)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pbrl_dist.cli import main

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
