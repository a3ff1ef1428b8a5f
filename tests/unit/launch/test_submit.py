"""``launch/submit.py``: what ``pbrl submit`` ships as the job's working directory.

The runtime env the command builds is captured from a fake Jobs client, and its ``excludes`` are fed to
Ray's own packager (``_zip_files``, what ``submit_job`` uploads) over a working directory with planted
credentials and keys: none of them may be in the package, the sweep file and code must be.
"""

from __future__ import annotations

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
