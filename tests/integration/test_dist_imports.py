"""Only ``dist/ray_*.py``, ``dist/tune_*.py`` and ``dist/submit.py`` import Ray."""

from __future__ import annotations

import subprocess
import sys


def test_non_ray_modules_do_not_import_ray() -> None:
    code = (
        "import sys\n"
        "import pbrl_dist.core, pbrl_dist.dist, pbrl_dist.dist.local, pbrl_dist.dist.trial\n"
        "import pbrl_dist.dist.specs, pbrl_dist.dist.wandb_sink, pbrl_dist.dist.confirm\n"
        "import pbrl_dist.cli, pbrl_dist.report, pbrl_dist.report.confirm\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ray_modules_import() -> None:
    code = (
        "import pbrl_dist.dist.ray_runner, pbrl_dist.dist.tune_trainable, pbrl_dist.dist.tune_sweep\n"
        "import pbrl_dist.dist.submit\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
