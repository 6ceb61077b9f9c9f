"""Executors (local workers, submitit's local executor, a local Ray instance) give the sequential
run's results; failed cells are reported and re-run alone; ``audiobench status`` says where each
cell stands; several cell workers share one run directory, two suite runs do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from audiobench.cli import main
from audiobench.harness.runner import run_suite
from audiobench.kernel.errors import AudiobenchError
from audiobench.store.lock import cells_lock, run_lock
from audiobench.store.run_dir import RunStore, load_manifest, load_run
from audiobench.store.status import run_status
from audiobench.suite import load_suite
from audiobench.suite.schema import ExecutorParams
from audiobench.testing import tiny_classifier
from tests.paths import ROOT

FAILING_PLUGIN = '''
import os
from audiobench.methods.base import Explainer
from audiobench.contracts.registry import METHODS


@METHODS.register("fragile")
class Fragile(Explainer):
    """A saliency-like map that fails in the mel domain while AB_TEST_FAIL is set (a worker's crash)."""

    needs_gradients = False

    def attribute(self, x, target, ctx):
        if os.environ.get("AB_TEST_FAIL") and x.shape[-1] == 32:  # mel: 32 bands; stft2mel: 129 bins
            raise RuntimeError("fragile broke on purpose")
        return x.abs()
'''

SUITE = {
    "name": "exec",
    **tiny_classifier(),  # the tiny suite's data, front end and classifier: trained once per session
    "batch_size": 4,
    "domains": ["stft2mel", "mel"],
    "contaminations": ["none", {"name": "white_noise", "snr_db": 5}],
    "methods": ["saliency", {"name": "smoothgrad", "n_samples": 4}, "fragile",
                {"name": "l2i", "k": 6, "epochs": 2, "nmf_iter": 10, "blocks": 2, "rt": 0.1}],
    "metrics": ["ai", "ad", "ff", "fid_in", "sps", "comp", "ff_l2i", "n_components"],
    "audio": {"n": 1},
    "plugins": ["fragile.py"],
    # after the cells, whatever executor ran them (audiobench.harness.finish.AFTER_CELLS)
    "sanity": {"randomisation": {"domain": "stft2mel", "clips": 3, "methods": ["Saliency"]},
               "roar": {"domain": "mel", "methods": ["Saliency"], "fractions": [0.5], "seeds": 1, "epochs": 1}},
}
SANITY_TABLES = ["sanity_randomisation.md", "sanity_randomisation.csv", "sanity_roar.md", "sanity_roar.csv"]
KEY = ["domain", "contamination", "row", "sample_id", "target", "metric"]
N_CELLS = 2 * 2 * 4


@pytest.fixture(autouse=True)
def one_thread():
    """Every run here computes with one torch thread, the workers' share on 2 cores: determinism is
    promised per thread count, so the executors' results must then equal the sequential run's."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exec")
    (root / "fragile.py").write_text(FAILING_PLUGIN)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sequential(suite_file: Path) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = suite_file.parent / "sequential"
        run_suite(suite_file, out, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


def _same_results(run: Path, reference: Path) -> None:
    ours, ref = load_run(run), load_run(reference)
    merged = ref.merge(ours, on=KEY, how="outer", suffixes=("_ref", "_run"), indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == len(ref) > 0
    np.testing.assert_allclose(merged.value_run, merged.value_ref, rtol=1e-6, atol=1e-9)
    tables = sorted(p.name for p in (reference / "tables").iterdir())
    assert tables and tables == sorted(p.name for p in (run / "tables").iterdir())
    for name in tables:
        assert (run / "tables" / name).read_text() == (reference / "tables" / name).read_text(), name
    assert set(SANITY_TABLES) <= set(tables)  # the sanity stage ran after the cells, on every executor
    assert set(load_manifest(run)["sanity"]) >= {"randomisation", "roar"}


def test_local_workers_give_the_sequential_results(suite_file: Path, sequential: Path, tmp_path: Path) -> None:
    out = tmp_path / "workers"
    assert main(["run", str(suite_file), "-o", str(out), "-q", "--workers", "2"]) == 0
    _same_results(out, sequential)
    manifest = load_manifest(out)
    assert manifest["executor"]["name"] == "local" and manifest["executor"]["workers"] == 2
    assert len(manifest["cells"]) == N_CELLS and not any(c["resumed"] for c in manifest["cells"])
    status = run_status(out)
    assert status.count("done") == N_CELLS and status.finished
    # a second run with workers only joins
    result = run_suite(suite_file, out, progress=False, executor=ExecutorParams(workers=2))
    assert all(c["resumed"] for c in result.manifest["cells"])


@pytest.mark.cluster
@pytest.mark.slow
def test_submitit_local_executor_gives_the_sequential_results(suite_file: Path, sequential: Path, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    out = tmp_path / "submitit"
    params = ExecutorParams(name="submitit", cluster="local", array_parallelism=2, cpus_per_task=1, cells_per_task=8)
    result = run_suite(suite_file, out, progress=False, executor=params)
    _same_results(out, sequential)
    assert result.manifest["executor"]["name"] == "submitit"
    assert list((out / "submitit").glob("*/*_log.out"))  # the jobs ran through submitit, logs in the run dir


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_local_instance_gives_the_sequential_results_and_resumes_any_executor(
    suite_file: Path, sequential: Path, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ids = [line.split("\t")[0] for line in _list_cells(suite_file, out)]
    first = [ids[0], ids[5]]
    for cid in first:  # two cells run alone first (as a cluster job would)
        run_suite(suite_file, out, progress=False, cell=cid)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_suite(suite_file, out, progress=False, executor=ExecutorParams(name="ray", cpus_per_task=1))
    finally:
        ray.shutdown()
    _same_results(out, sequential)
    assert {c["id"] for c in result.manifest["cells"] if c["resumed"]} == set(first)  # only the missing ran


def _list_cells(suite_file: Path, out: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "audiobench", "run", str(suite_file), "-o", str(out), "--list-cells", "-q"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_a_failed_cell_is_reported_and_rerun_alone(suite_file: Path, sequential: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "failing"
    monkeypatch.setenv("AB_TEST_FAIL", "1")
    assert main(["run", str(suite_file), "-o", str(out), "-q", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    failed = [c for c in run_status(out).ids("failed")]
    assert len(failed) == 2 and all(c.startswith("mel__") and "__fragile__" in c for c in failed)
    for cid in failed:
        assert f"{cid}: RuntimeError: fragile broke on purpose" in err
    assert not (out / "tables").exists()  # no table from an incomplete run
    assert main(["status", str(out)]) == 3
    report = capsys.readouterr().out
    assert f"{N_CELLS - 2} done" in report and "2 failed" in report and "fragile broke on purpose" in report
    record = json.loads((out / "status" / f"{failed[0]}.failed.json").read_text())
    assert "Traceback" in record["traceback"] and record["executor"] == "local"

    monkeypatch.delenv("AB_TEST_FAIL")
    assert main(["run", str(suite_file), "-o", str(out), "-q", "--cell", failed[0]]) == 0  # one alone
    result = run_suite(suite_file, out, progress=False)  # the rest: only what is missing
    assert {c["id"] for c in result.manifest["cells"] if not c["resumed"]} == {failed[1]}
    _same_results(out, sequential)
    assert main(["status", str(out)]) == 0
    assert f"{N_CELLS} done" in capsys.readouterr().out


def test_status_reports_each_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from audiobench.kernel.cache import atomic_write_json

    root = tmp_path / "run"
    ids = ["a__none__x__1", "b__none__x__2", "c__none__x__3", "d__none__x__4", "e__none__x__5"]
    atomic_write_json(root / "status" / "plan.json", {"suite": "s", "cells": [{"id": i} for i in ids]})
    RunStore(root).write_cell(ids[0], pd.DataFrame(columns=["dataset", "model", "domain", "contamination", "method",
                                                            "row", "sample_id", "target", "metric", "value"]), {})
    host = os.uname().nodename
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    atomic_write_json(root / "status" / f"{ids[1]}.running.json", {"host": host, "pid": os.getpid(), "started": time.time()})
    atomic_write_json(root / "status" / f"{ids[2]}.running.json", {"host": host, "pid": dead.pid, "started": time.time()})
    atomic_write_json(root / "status" / f"{ids[3]}.failed.json", {"host": host, "pid": 1, "error": "ValueError: boom"})
    status = run_status(root)
    assert status.cells == dict(zip(ids, ["done", "running", "interrupted", "failed", "missing"], strict=True))
    assert main(["status", str(root), "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["cells"] == status.cells
    with pytest.raises(AudiobenchError, match="plan.json"):
        run_status(tmp_path / "nothing")


def test_cell_workers_share_a_directory_but_two_suite_runs_do_not(suite_file: Path, sequential: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "shared"
    with run_lock(out):  # a suite run holds the directory...
        with pytest.raises(AudiobenchError, match="is being written by another audiobench run"):
            with run_lock(out):
                pass
        cid = json.loads((sequential / "status" / "plan.json").read_text())["cells"][0]["id"]
        # ...and its cell workers (here: this process, and another one) write into it beside it
        proc = subprocess.run([sys.executable, "-m", "audiobench", "run", str(suite_file), "-o", str(out), "-q",
                               "--cell", cid], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert RunStore(out).has(cid)
    with cells_lock(out):  # while a cell worker writes, --overwrite is refused (it would delete its files)
        with pytest.raises(AudiobenchError, match="being written by other processes"):
            run_suite(suite_file, out, progress=False, overwrite=True)
    assert RunStore(out).has(cid)


def test_executor_section_is_validated_at_its_line(tmp_path: Path) -> None:
    from audiobench.suite.lines import SuiteErrors

    plain = {k: v for k, v in SUITE.items() if k != "plugins"}
    plain["methods"] = [m for m in SUITE["methods"] if m != "fragile"]
    text = yaml.safe_dump(plain, sort_keys=False) + "executor:\n  name: submitit\n  partitions: gpu\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteErrors) as info:
        load_suite(path)
    line = len(text.splitlines())
    assert f"bad.yaml:{line}:" in str(info.value) and "partitions" in str(info.value)
    path.write_text(text.replace("partitions", "partition"))
    suite = load_suite(path, ["executor.array_parallelism=4"])
    assert suite.executor.partition == "gpu" and suite.executor.array_parallelism == 4 and suite.executor.parallel


def test_command_line_executor_flags_override_the_suite_section(tmp_path: Path) -> None:
    from audiobench.cli import parser
    from audiobench.cli.run import executor_params

    plain = {k: v for k, v in SUITE.items() if k != "plugins"}
    plain["methods"] = ["saliency"]
    plain["executor"] = {"name": "submitit", "partition": "cpu", "array_parallelism": 4}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(plain, sort_keys=False))

    def params(*flags: str) -> ExecutorParams | None:
        args = parser().parse_args(["run", str(path), *flags])
        return executor_params(args, str(path))  # type: ignore[return-value]

    assert params() is None  # no flag: run_suite reads the suite's section itself
    p = params("--partition", "gpu", "--time-min", "30", "--gpus-per-task", "1", "--cpus-per-task", "8")
    assert (p.name, p.partition, p.time_min, p.gpus_per_task, p.cpus_per_task, p.array_parallelism) == (
        "submitit", "gpu", 30, 1, 8, 4)  # the suite's other settings kept
    p = params("--workers", "3")
    assert (p.name, p.workers, p.parallel) == ("local", 3, True)  # --workers alone means local processes
    p = params("--address", "auto")
    assert (p.name, p.address) == ("ray", "auto")
    with pytest.raises(AudiobenchError, match="--address"):
        params("--executor", "local", "--address", "auto")
    with pytest.raises(AudiobenchError, match="--workers must be at least 1"):
        params("--workers", "0")


@pytest.mark.slow
def test_quickstart_sanity_with_workers_writes_the_sanity_tables(tmp_path: Path) -> None:
    """The shipped suite with ``--workers 2``: the after-cell stages run as in the sequential loop
    (they were skipped by every executor but the in-process loop). Cut down by ``--limit`` and
    ``--set`` so that ROAR retrains twice; the classifier and L-MAC come from the shipped artefacts."""
    out = tmp_path / "qs"
    sets = ["sanity.roar.fractions=[0.5]", "sanity.roar.seeds=1", "sanity.roar.epochs=1", "sanity.randomisation.clips=4",
            "sanity.plots.clips=1", "methods=[saliency, {name: gradcam, layer: last}, random]",
            "sanity.roar.methods=[GradCAM]", "contaminations=[none]"]
    args = ["run", str(ROOT / "suites" / "quickstart_sanity.yaml"), "-o", str(out), "-q", "--workers", "2", "--limit", "10"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    tables = {p.name for p in (out / "tables").iterdir()}
    assert set(SANITY_TABLES) <= tables
    manifest = load_manifest(out)
    assert manifest["executor"]["workers"] == 2 and set(manifest["sanity"]) >= {"randomisation", "roar", "plots"}
    assert "GradCAM" in (out / "tables" / "sanity_roar.md").read_text()
