"""Crash and resume: a run killed (SIGKILL) at any point finishes on the next try, recomputes nothing
completed, and gives the numbers of an uninterrupted run; two runs on one directory are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audiobench.harness.runner import run_suite
from audiobench.kernel.cache import cache_dir
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.faults import KILL_ENV
from audiobench.store.lock import run_lock
from audiobench.store.run_dir import load_run
from audiobench.testing import tiny_classifier

FIT_TOY = '''
import torch
from audiobench.kernel.fitting import fit_epochs
from audiobench.methods import Explainer
from audiobench.contracts.registry import METHODS


class _Gain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))


@METHODS.register("fit_toy")
class FitToy(Explainer):
    """A trainable toy: the mean training representation times a gain fitted over 3 epochs (cached)."""

    name = "fit_toy"
    trainable = True

    def fit(self, ctx):
        with torch.no_grad():
            mean = ctx.model.domain.represent(ctx.model.frontend, ctx.train.waveforms.to(ctx.device)).x.mean(0)
        gain = _Gain()

        def train(log_path):
            opt = torch.optim.SGD(gain.parameters(), lr=0.3)

            def epoch():
                loss = (gain.w - 2.0) ** 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                return {"train_loss": float(loss.detach())}

            fitted = fit_epochs([gain], 3, epoch, lambda: {"valid_loss": float((gain.w.detach() - 2.0) ** 2)}, "valid_loss",
                                log_path, progress=False)
            return {"w": gain.w.detach().clone()}, {"history": fitted["history"]}

        def load(state):
            gain.w.data = state["w"]

        info = ctx.cached_fit(self.name, ctx.cache_key(self.name, self.params.model_dump()), train, load)
        self.map = (mean * gain.w).detach()
        return info

    def attribute(self, x, target, ctx):
        return self.map.expand_as(x).clone() + 0.01 * x
'''

SUITE = {
    "name": "crash",
    **tiny_classifier(),  # the tiny suite's data, front end and classifier: trained once per session
    "batch_size": 2,  # 6 test clips: 3 batches per cell
    "domains": ["mel"],
    "contaminations": ["none"],
    "methods": ["random", "saliency", "fit_toy"],
    "metrics": ["ai", "ad", "ff"],
    "audio": {"n": 0},
    "plugins": ["fit_toy.py"],
}


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite, its plugin and an uninterrupted reference run (classifier and fit cached for the session)."""
    root = tmp_path_factory.mktemp("crash")
    (root / "fit_toy.py").write_text(FIT_TOY)
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
    run_suite(root / "suite.yaml", root / "reference", progress=False)
    return root


def _killed_run(root: Path, out: Path, point: str, cache: Path | None = None) -> None:
    env = {**os.environ, KILL_ENV: point, "AUDIOBENCH_CACHE": str(cache or cache_dir())}
    proc = subprocess.run([sys.executable, "-m", "audiobench", "run", str(root / "suite.yaml"), "-o", str(out), "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])


def _completed(out: Path) -> set[str]:
    return {p.stem for p in (out / "cells").glob("*.json")} if (out / "cells").exists() else set()


def _same_results(out: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(load_run(out), load_run(reference), check_exact=False, rtol=1e-5, atol=1e-6)
    assert not list(out.rglob("*.tmp"))


# The order of a run: the shared stage (classifier, then every trainable fit: fit_toy's 3 epochs and its
# two atomic writes), then the cells (each: its batches, masks, rows, completion record).
@pytest.mark.parametrize(("point", "done_before", "fit_done"), [
    ("batch:4", 1, True),         # during the second cell (after the first of its batches)
    ("cell_write:2", 1, True),    # the second cell's rows written, its completion record not
    ("atomic_write:7", 1, True),  # inside the write of the second cell's rows (a temporary file left)
    ("epoch:2", 0, False),        # during the trainable method's fit (the classifier is cached, the fit not)
])
def test_killed_run_resumes_to_the_uninterrupted_result(
    crash_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, done_before: int, fit_done: bool
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir() / "classifiers", cache / "classifiers")  # the reference run's classifier only
    out = tmp_path / "run"
    _killed_run(crash_dir, out, point, cache)
    done = _completed(out)
    assert len(done) == done_before and not (out / "manifest.json").exists()
    if point.startswith("cell_write"):
        assert len(list((out / "cells").glob("*.parquet"))) == done_before + 1  # rows without record: not a result
    if point.startswith("atomic_write"):
        assert list(out.rglob(".*.tmp"))  # the partial file the killed writer left
    fits = cache / "methods" / "fit_toy"
    assert bool(fits.exists() and list(fits.glob("*.pt"))) == fit_done  # a fit is complete or absent, never half
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(cache))
    result = run_suite(crash_dir / "suite.yaml", out, progress=False)
    resumed = {c["id"]: c["resumed"] for c in result.manifest["cells"]}
    assert {cid for cid, r in resumed.items() if r} == done  # nothing completed is recomputed
    assert sum(not r for r in resumed.values()) == 3 - done_before
    assert result.manifest["classifier"]["cached"] is True
    _same_results(out, crash_dir / "reference")


def test_run_killed_while_training_the_classifier(crash_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "fresh_cache"  # nothing trained yet
    out = tmp_path / "run"
    _killed_run(crash_dir, out, "epoch:1", cache)
    assert not (cache / "classifiers").exists() or not list((cache / "classifiers").iterdir())
    assert _completed(out) == set()
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(cache))
    result = run_suite(crash_dir / "suite.yaml", out, progress=False)
    assert result.manifest["classifier"]["cached"] is False  # trained again, from the start
    assert not any(c["resumed"] for c in result.manifest["cells"])
    _same_results(out, crash_dir / "reference")


def test_two_runs_on_one_directory_are_refused(crash_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom audiobench.store.lock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(AudiobenchError) as info:
            run_suite(crash_dir / "suite.yaml", out, progress=False)
        message = str(info.value)
        assert "\n" not in message and f"is being written by another audiobench run (pid {holder.pid}" in message
        assert not (out / "cells").exists()  # nothing written beside the other run
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no stale lock: the directory can be used at once
    with run_lock(out):
        pass
    started = time.perf_counter()
    run_suite(crash_dir / "suite.yaml", out, progress=False)
    assert time.perf_counter() - started < 120
    assert json.loads((out / "manifest.json").read_text())["suite"]["name"] == "crash"
