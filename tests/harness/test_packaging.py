"""The wheel: built from the checkout's files, installed into a fresh virtual environment, run from
another directory. An editable install (what ``make`` does) hides a package missing from the wheel;
this does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from audiobench.testing import TINY_SUITE
from tests.paths import ROOT

REPO = ROOT
pytestmark = [pytest.mark.slow, pytest.mark.pip]


def _checkout_files() -> list[str]:
    """What a clean clone holds of the working tree: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    clone = root / "clone"
    for f in _checkout_files():
        if f.startswith(("results/", "artifacts/")):
            continue  # not part of the package; keeps the copy small
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, clone / f)
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(clone)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next(dist.glob("audiobench-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=600)
    # the dependencies: this environment's packages, audiobench's own (editable) install left out
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("audiobench", "__editable__", "_audiobench")):
            (deps / entry.name).symlink_to(entry)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_audiobench_test_deps.pth").write_text(str(deps) + "\n")
    work = root / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "work": work}


def _run(env: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ["AUDIOBENCH_CACHE"] = str(env["work"] / "cache")
    return subprocess.run([str(env["venv"] / "bin" / "audiobench"), *args], cwd=env["work"], env=environ,
                          capture_output=True, text=True, timeout=900)


def test_the_wheel_holds_every_package(wheel_env):
    names = zipfile.ZipFile(wheel_env["wheel"]).namelist()
    packages = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    expected = {"audiobench." + ".".join(p.parent.relative_to(REPO / "audiobench").parts)
                for p in (REPO / "audiobench").rglob("__init__.py") if p.parent != REPO / "audiobench"}
    expected |= {"audiobench", "audiobench.methods", "audiobench.metrics"}
    assert expected <= packages, sorted(expected - packages)
    assert not any(n.startswith(("methods/", "metrics/")) for n in names)  # never top-level packages
    assert any(n.startswith("audiobench/reference/") and n.endswith(".csv") for n in names)


def test_the_installed_wheel_validates_and_runs_a_tiny_suite_elsewhere(wheel_env):
    py = wheel_env["venv"] / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import audiobench, audiobench.suite; print(audiobench.__file__)"],
                           cwd=wheel_env["work"], capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert str(wheel_env["venv"]) in where.stdout and str(REPO) not in where.stdout  # the wheel, not the checkout
    suite = wheel_env["work"] / "tiny.yaml"
    suite.write_text(yaml.safe_dump({**TINY_SUITE, "methods": ["saliency", "random"], "contaminations": ["none"]}))
    valid = _run(wheel_env, "validate", str(suite))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    shutil.copy(REPO / "suites" / "quickstart.yaml", wheel_env["work"] / "quickstart.yaml")
    assert _run(wheel_env, "validate", "quickstart.yaml").returncode == 0
    run = _run(wheel_env, "run", str(suite), "-o", "out", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = yaml.safe_load((wheel_env["work"] / "out" / "manifest.json").read_text())
    assert manifest["git"] is None  # an installed wheel knows no checkout
    assert list((wheel_env["work"] / "out" / "tables").glob("main__*.md"))
