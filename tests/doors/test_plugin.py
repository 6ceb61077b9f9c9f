"""Third-party plugins: an installed package's entry point adds a method that shows up in tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT


def test_installed_plugin_package_adds_a_row(write_suite, tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(ROOT / "examples" / "plugin")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}

    listed = subprocess.run([sys.executable, "-m", "audiobench", "list", "methods"], capture_output=True, text=True, env=env)
    assert any(line.split()[0] == "energy_power" for line in listed.stdout.splitlines())

    suite = write_suite({"methods": ["random", {"name": "energy_power", "power": 2.0}], "domains": ["mel"],
                         "contaminations": ["none"]})
    run = subprocess.run(
        [sys.executable, "-m", "audiobench", "run", str(suite), "-o", str(tmp_path / "run"), "--limit", "4", "-q"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr
    table = (tmp_path / "run" / "tables" / "main__synth__none.md").read_text()
    assert "| Input energy^p" in table and "| Random" in table

    # without the package on the path the name is unknown, with a clear message
    bare = subprocess.run([sys.executable, "-m", "audiobench", "validate", str(suite)], capture_output=True, text=True)
    assert bare.returncode == 1 and "unknown method 'energy_power'" in bare.stderr
