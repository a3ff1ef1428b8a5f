"""Only ``dist/ray_*.py``, ``dist/tune_*.py`` and ``dist/submit.py`` import Ray."""

from __future__ import annotations

import subprocess
import sys


def test_non_ray_modules_do_not_import_ray() -> None:
    code = (
        "import sys\n"
        "import pbrl_dist.core, pbrl_dist.launch, pbrl_dist.launch.local, pbrl_dist.launch.trial\n"
        "import pbrl_dist.launch.specs, pbrl_dist.launch.wandb_sink, pbrl_dist.launch.confirm\n"
        "import pbrl_dist.cli, pbrl_dist.report, pbrl_dist.report.confirm\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ray_modules_import() -> None:
    code = (
        "import pbrl_dist.executors.ray_chunks, pbrl_dist.launch.tune_trainable, pbrl_dist.launch.tune_sweep\n"
        "import pbrl_dist.launch.submit\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
