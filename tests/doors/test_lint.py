"""The code base stays ruff-clean."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import ROOT


def test_ruff_clean() -> None:
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
