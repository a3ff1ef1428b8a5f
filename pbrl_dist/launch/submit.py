"""``pbrl submit``: send ``pbrl sweep ... --address auto`` to a Ray cluster as a Ray Job, or follow its logs.

The sweep file is loaded and validated here first, so bad input fails on your machine, not on the
cluster. The job ships the working directory (``runtime_env.working_dir = "."``, without ``.venv``,
``results``, ``.git``, caches and secrets at any depth: ``.env*``, ``.netrc``, ``.aws``, ``.ssh``,
private keys ``id_rsa*``, ``*.pem``, ``*.key``; see ``SECRETS``); its driver runs ``pbrl sweep``
on the head node and joins the cluster (``--address auto``), so ``pbrl`` must be on the PATH that
the head was started with (the cluster image, or ``source .venv/bin/activate`` before ``ray start --head``). The sweep
file must lie inside the shipped directory and ``--out`` must be an absolute path on the cluster
(default ``/results/<sweep name>``, the shared volume of ``docker-compose.yml`` and ``cluster/k8s``);
a relative one would land in the job's temporary copy of the working directory. The Jobs SDK and the
dashboard's job server come with ``ray[default]``, a dependency of this package. ``WANDB_MODE`` is
passed on when set; secrets (W&B key, Ray token) are never put into the runtime env, because the
Jobs API echoes it back. ``RAY_AUTH_MODE`` must be set the same way here and on the cluster.

Job control uses the public Jobs SDK only: ``--list`` (``list_jobs``; pbrl's jobs are the ones whose
metadata carries ``pbrl_sweep`` or whose entrypoint is ``pbrl sweep ...``), ``--stop`` (``stop_job``,
then a short wait for a terminal state), ``--logs`` (Ctrl-C stops following, never the job).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient

from pbrl_dist.config.loader import ConfigError, load_sweep

# gitignore-style patterns (any depth). The job's working directory is readable by every job on the
# cluster and echoed by the Jobs API: no secret may travel (compose's .env, credentials, keys).
SECRETS = [
    ".env",
    "**/.env",
    "**/.env.*",
    "**/.netrc",
    "**/_netrc",
    "**/.aws",
    "**/.ssh",
    "**/.gnupg",
    "**/.docker/config.json",
    "**/.git-credentials",
    "**/.pypirc",
    "**/.npmrc",
    "**/.config/gcloud",
    "**/.kube",
    "**/id_rsa*",
    "**/id_dsa*",
    "**/id_ecdsa*",
    "**/id_ed25519*",
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
]
EXCLUDES = [
    ".venv",
    "results",
    ".git",
    "wandb",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "*.egg-info",
    *SECRETS,
]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Metadata key that marks a job as pbrl's (its value is the sweep's name); `--list` shows those.
METADATA_KEY = "pbrl_sweep"
LIST_WIDTH = 120


def resolve_address(address: str | None) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` (if http), else the local dashboard."""
    if address:
        return address
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        v = os.environ.get(var, "")
        if v.startswith("http"):
            return v
    return DEFAULT_ADDRESS


def entrypoint(
    sweep_file: str, *, smoke: bool, out: str, overrides: Sequence[str], resume: bool = False
) -> str:
    """Return the job's shell command: ``pbrl sweep FILE --address auto --out OUT [...]``."""
    parts = ["pbrl", "sweep", sweep_file, "--address", "auto", "--out", out]
    if smoke:
        parts.append("--smoke")
    if resume:
        parts.append("--resume")
    parts += list(overrides)
    return " ".join(shlex.quote(p) for p in parts)


def job_paths(sweep_file: str, out: str, working_dir: str = ".") -> tuple[str, str]:
    """(sweep file relative to ``working_dir``, ``out``) as the job on the cluster sees them.

    Raises ``ConfigError`` when the file is outside the shipped directory or ``out`` is relative.
    """
    root = Path(working_dir).resolve()
    path = Path(sweep_file).resolve()
    if not path.is_relative_to(root):
        raise ConfigError(
            f"{sweep_file}: the job ships only {root} (runtime_env.working_dir); "
            "run pbrl submit from the directory that holds the sweep file"
        )
    if not PurePosixPath(out).is_absolute():
        raise ConfigError(
            f"--out {out}: must be an absolute path on the cluster (e.g. /results/...); a relative "
            "one would be written into the job's temporary copy of the working directory"
        )
    return path.relative_to(root).as_posix(), out


def _check_targets_travel(sweep: Any, working_dir: str) -> None:
    """A user's problem file (``problem.target: file.py:SPEC``) must be inside the shipped directory.

    The job re-reads the sweep file in its copy of ``working_dir``; a target file outside it does not
    exist on the cluster. Module targets (``pkg.module:SPEC``) must be installed there, as pbrl is.
    """
    root = Path(working_dir).resolve()
    for t in sweep.trials:
        target = (t.container.get("problem") or {}).get("target")
        mod = str(target or "").partition(":")[0]
        if mod.endswith(".py") and not Path(mod).resolve().is_relative_to(root):
            raise ConfigError(
                f"problem.target: {mod} is outside {root}, the only folder the job ships "
                "(runtime_env.working_dir); move it next to the sweep file or install it as a module"
            )


def _client(address: str) -> JobSubmissionClient:
    try:
        return JobSubmissionClient(address)
    except Exception as e:
        raise ConfigError(
            f"--address {address}: cannot reach the Ray Jobs API ({type(e).__name__}: "
            f"{_first(e)}); is the cluster up (docker compose ps / "
            "ray status) and RAY_AUTH_MODE set like the cluster's?"
        ) from None


def submit(
    sweep_file: str,
    *,
    address: str | None,
    smoke: bool = False,
    out: str | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    working_dir: str = ".",
) -> str:
    """Validate the sweep, submit it as a Ray Job, print and return the job id."""
    sweep = load_sweep(sweep_file, smoke=smoke, overrides=overrides)
    out = out or f"/results/{sweep.name}" + ("_smoke" if smoke else "")
    rel_file, out = job_paths(sweep_file, out, working_dir)
    _check_targets_travel(sweep, working_dir)
    addr = resolve_address(address)
    cmd = entrypoint(rel_file, smoke=smoke, out=out, overrides=overrides, resume=resume)
    runtime_env: dict = {"working_dir": working_dir, "excludes": EXCLUDES}
    if os.environ.get("WANDB_MODE"):
        runtime_env["env_vars"] = {"WANDB_MODE": os.environ["WANDB_MODE"]}
    try:
        job_id = _client(addr).submit_job(
            entrypoint=cmd, runtime_env=runtime_env, metadata={METADATA_KEY: sweep.name}
        )
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"submit to {addr} failed: {type(e).__name__}: {_first(e)}") from None
    print(f"submitted {sweep.name} ({len(sweep.trials)} trials) to {addr}")
    print(f"  entrypoint: {cmd}")
    print(f"  job id: {job_id}")
    print(f"  follow:  pbrl submit --logs {job_id} --address {addr}")
    print(f"  stop:    pbrl submit --stop {job_id} --address {addr}")
    return job_id


def _job_info(client: JobSubmissionClient, job_id: str, addr: str, flag: str) -> Any:
    """``get_job_info``; an unknown id is one line ``FLAG: no job ID on ADDRESS``."""
    try:
        return client.get_job_info(job_id)
    except Exception as e:
        # The SDK raises RuntimeError("Request failed with status code 404: ...") for an unknown id.
        if "status code 404" in str(e):
            raise ConfigError(f"{flag}: no job {job_id} on {addr}") from None
        raise ConfigError(f"{flag} {job_id}: {type(e).__name__}: {_first(e)}") from None


def _is_pbrl_job(job: Any) -> bool:
    if METADATA_KEY in (job.metadata or {}):
        return True
    try:
        argv = shlex.split(job.entrypoint or "")
    except ValueError:
        return False
    return argv[:2] == ["pbrl", "sweep"]


def _job_line(job: Any, width: int = LIST_WIDTH) -> str:
    """``ID  STATUS  SUBMITTED  ENTRYPOINT``, the entrypoint cut with ``…`` to fit ``width``."""
    jid = job.submission_id or job.job_id or "?"
    status = JobStatus(job.status).value
    when = (
        time.strftime("%Y-%m-%d %H:%M", time.localtime(job.start_time / 1000))
        if job.start_time
        else "-"
    )
    head = f"{jid:<26}  {status:<9}  {when:<16}  "
    cmd = " ".join((job.entrypoint or "").split())
    room = max(width - len(head), 10)
    if len(cmd) > room:
        cmd = cmd[: room - 1] + "…"
    return head + cmd


def list_jobs(*, address: str | None, width: int = LIST_WIDTH) -> int:
    """Print pbrl's jobs on the cluster, oldest first, one line each; say how many others were hidden."""
    addr = resolve_address(address)
    client = _client(addr)
    try:
        jobs = client.list_jobs()
    except Exception as e:
        raise ConfigError(f"--list: {addr}: {type(e).__name__}: {_first(e)}") from None
    mine = sorted((j for j in jobs if _is_pbrl_job(j)), key=lambda j: j.start_time or 0)
    others = len(jobs) - len(mine)
    if mine:
        print(f"{'JOB ID':<26}  {'STATUS':<9}  {'SUBMITTED':<16}  ENTRYPOINT")
    for job in mine:
        print(_job_line(job, width))
    hidden = (
        f" ({others} other job{'s' if others != 1 else ''} hidden: not pbrl sweeps)"
        if others
        else ""
    )
    print(f"{len(mine)} pbrl job{'s' if len(mine) != 1 else ''} on {addr}{hidden}")
    return 0


def _resume_command(entry: str, addr: str) -> str | None:
    """``pbrl submit FILE --resume --out OUT ...`` for a job whose entrypoint is pbrl's ``pbrl sweep``."""
    try:
        argv = shlex.split(entry)
    except ValueError:
        return None
    if argv[:2] != ["pbrl", "sweep"] or len(argv) < 3 or "--out" not in argv[3:]:
        return None
    rest = argv[3:]
    if rest[:2] == ["--address", "auto"]:
        rest = rest[2:]
    if "--resume" not in rest:
        rest.append("--resume")
    parts = ["pbrl", "submit", argv[2], *rest, "--address", addr]
    return " ".join(shlex.quote(p) for p in parts)


def stop_job(job_id: str, *, address: str | None, wait_s: float = 20.0, poll_s: float = 0.5) -> int:
    """Stop a job (``stop_job``), wait up to ``wait_s`` for a terminal state and print it.

    Returns 0 once the job has ended (or had already), 1 if it is still not terminal after ``wait_s``.
    """
    addr = resolve_address(address)
    client = _client(addr)
    info = _job_info(client, job_id, addr, "--stop")
    status = JobStatus(info.status)
    if status.is_terminal():
        print(f"job {job_id}: already {status.value}; nothing to stop")
        return 0
    try:
        client.stop_job(job_id)
    except Exception as e:
        raise ConfigError(f"--stop {job_id}: {type(e).__name__}: {_first(e)}") from None
    print(
        f"job {job_id}: stop requested (was {status.value}); waiting up to {wait_s:g}s", flush=True
    )
    deadline = time.monotonic() + wait_s
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(poll_s)
        status = JobStatus(client.get_job_status(job_id))
    if not status.is_terminal():
        print(
            f"job {job_id}: still {status.value} after {wait_s:g}s (Ray kills its driver if it "
            f"does not exit); check with: pbrl submit --list --address {addr}"
        )
        return 1
    print(f"job {job_id}: {status.value}")
    resume = _resume_command(info.entrypoint or "", addr) if _is_pbrl_job(info) else None
    if resume and status != JobStatus.SUCCEEDED:
        print(f"  resume: {resume}")
    return 0


def _detached(job_id: str, addr: str) -> str:
    return (
        f"\npbrl submit: stopped following job {job_id}; the job goes on running on the cluster.\n"
        f"  reattach: pbrl submit --logs {job_id} --address {addr}\n"
        f"  stop it:  pbrl submit --stop {job_id} --address {addr}"
    )


def follow_logs(job_id: str, *, address: str | None, poll_s: float = 2.0) -> int:
    """Print the job's logs until it ends; return 0 if it succeeded, 1 otherwise.

    Streams with ``tail_job_logs`` when ``aiohttp`` is installed (``ray[default]``); otherwise polls
    ``get_job_logs`` every ``poll_s`` seconds and says so once. Ctrl-C (or SIGTERM) stops following,
    not the job: it says so, prints how to reattach and how to stop the job, and returns 130.
    """
    addr = resolve_address(address)
    client = _client(addr)
    _job_info(client, job_id, addr, "--logs")
    try:
        return _follow(client, job_id, poll_s)
    except KeyboardInterrupt:
        print(_detached(job_id, addr), file=sys.stderr, flush=True)
        return 130


def _follow(client: JobSubmissionClient, job_id: str, poll_s: float) -> int:
    try:
        import aiohttp  # noqa: F401  (tail_job_logs needs it)
    except ImportError:
        print(
            "(aiohttp is not installed, so logs cannot be streamed; polling every "
            f"{poll_s:g}s instead — `pip install 'ray[default]'` streams them)",
            file=sys.stderr,
        )
        return _poll_logs(client, job_id, poll_s)
    import asyncio

    missing = False

    async def _tail() -> None:
        nonlocal missing
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)
            missing = missing or bool(_NOT_FOUND.search(lines))

    asyncio.run(_tail())
    return _final_status(client, job_id, pbrl_missing=missing)


def _poll_logs(client: JobSubmissionClient, job_id: str, poll_s: float) -> int:
    shown = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        if JobStatus(status).is_terminal():
            break
        time.sleep(poll_s)
    return _final_status(client, job_id, pbrl_missing=bool(_NOT_FOUND.search(logs)))


# What the job's shell says when the head's PATH has no `pbrl` (sh: "not found", bash: "command ...").
_NOT_FOUND = re.compile(r"\bpbrl: (?:command )?not found")
_NOT_FOUND_HINT = (
    "the cluster's shell found no `pbrl`: install pbrl_dist in the Python that runs Ray on the "
    "head and start `ray start --head` with it on PATH (e.g. `source .venv/bin/activate` first); "
    "the cluster image has it"
)


def _final_status(client: JobSubmissionClient, job_id: str, *, pbrl_missing: bool = False) -> int:
    status = JobStatus(client.get_job_status(job_id))
    print(f"\njob {job_id}: {status.value}")
    if status != JobStatus.SUCCEEDED and pbrl_missing:
        print(f"pbrl: hint: {_NOT_FOUND_HINT}", file=sys.stderr)
    return 0 if status == JobStatus.SUCCEEDED else 1


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
