"""The code base stays ruff-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_ruff_clean() -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
