"""`pbrl_dist.core` is pure math: importing it pulls in no ray, wandb, gymnasium or omegaconf."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_heavy_dependencies() -> None:
    code = (
        "import sys, pkgutil, importlib, pbrl_dist.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module('pbrl_dist.core.' + m.name)\n"
        "bad = [n for n in ('ray', 'wandb', 'gymnasium', 'omegaconf', 'ale_py') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pbrl_dist.core imported {out.stdout.strip()}"
