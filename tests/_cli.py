"""Helpers for tests that drive the ``pbrl`` command line in this process (``pbrl_dist.cli.main``)."""

from __future__ import annotations

import pytest

from pbrl_dist.cli import main


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``pbrl ARGV``; it must exit 2; return its error message."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "pbrl: error:" in err
    return err
