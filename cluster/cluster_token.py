"""Write a Ray auth token for the docker compose cluster into ``.env`` (``make cluster-token``).

    python3 cluster/cluster_token.py [--env-file PATH]

``docker-compose.yml`` runs every node with ``RAY_AUTH_MODE=token`` and refuses to start without
``RAY_AUTH_TOKEN``, which compose reads from ``.env`` next to it. This script puts a fresh random
token (64 hex characters, like ``ray get-auth-token --generate``) there once:

- no env file yet: it is created from ``cluster/.env.example`` (the documented settings) with the
  token filled in;
- an env file with an empty or missing ``RAY_AUTH_TOKEN=`` line: that line is filled in (or
  appended); every other line is kept as it was;
- an env file that already has a token: it is left alone (rotate by deleting the line first).

The file ends up with mode 0600 in every case (it may also hold ``WANDB_API_KEY``), is written
atomically (temporary file in the same directory, then rename) and the token is never printed.
Standard library only, so it runs with any ``python3`` before ``.venv`` exists.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import stat
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ENV_FILE = HERE.parent / ".env"
DEFAULT_TEMPLATE = HERE / ".env.example"
KEY = "RAY_AUTH_TOKEN"
TOKEN_BYTES = 32  # 64 hex characters, the size `ray get-auth-token --generate` makes
MIN_HEX = 32
_LINE = re.compile(rf"^\s*(?:export\s+)?{KEY}\s*=(?P<value>.*)$")


def _value(raw: str) -> str:
    """The value of a dotenv assignment, without quotes or a trailing comment."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw.split(" #", 1)[0].strip()


def existing_token(lines: list[str]) -> str | None:
    """The non-empty RAY_AUTH_TOKEN value in ``lines`` (the last assignment wins), or None."""
    token = None
    for line in lines:
        m = _LINE.match(line)
        if m:
            token = _value(m.group("value")) or None
    return token


def with_token(lines: list[str], token: str) -> list[str]:
    """``lines`` with every RAY_AUTH_TOKEN assignment set to ``token`` (appended if none)."""
    out, found = [], False
    for line in lines:
        if _LINE.match(line):
            out.append(f"{KEY}={token}")
            found = True
        else:
            out.append(line)
    if not found:
        out.append(f"{KEY}={token}")
    return out


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, replacing it atomically."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_token(env_file: Path, template: Path | None = DEFAULT_TEMPLATE) -> bool:
    """Make sure ``env_file`` holds a RAY_AUTH_TOKEN and has mode 0600; True if one was written."""
    if env_file.exists():
        lines = env_file.read_text().splitlines()
    elif template is not None and template.is_file():
        lines = template.read_text().splitlines()
    else:
        lines = []
    current = existing_token(lines) if env_file.exists() else None
    if current is not None:
        os.chmod(env_file, 0o600)
        if not re.fullmatch(rf"[0-9a-fA-F]{{{MIN_HEX},}}", current):
            print(
                f"warning: {env_file} has a {KEY} that is not {MIN_HEX}+ hex characters; "
                f"delete that line and run again for a new one",
                file=sys.stderr,
            )
        return False
    token = secrets.token_hex(TOKEN_BYTES)
    _write_private(env_file, "\n".join(with_token(lines, token)) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="the file docker compose reads (default: .env in the repository root)",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="settings to start from when the env file does not exist (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    written = ensure_token(args.env_file, args.template)
    mode = stat.S_IMODE(args.env_file.stat().st_mode)
    what = "wrote a new" if written else "kept the existing"
    print(f"{what} {KEY} in {args.env_file} (mode {mode:04o}); the token is not shown")
    return 0


if __name__ == "__main__":
    sys.exit(main())
