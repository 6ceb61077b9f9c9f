"""Executor faults (issue 27): a Ray ``--address`` with no cluster behind it is a one-line error after
seconds, not a traceback or an endless retry; stopping ``audiobench run --workers N`` stops its workers
and no cell starts after; a worker killed by a signal (the OOM killer) is reported as such, its cell
as interrupted, not every cell as failed, and ``audiobench status`` agrees with the run's report.

The worker tests run the CLI in a process group of its own and kill what is left of it however they end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from audiobench.cli import main
from audiobench.harness.pool import death_line
from audiobench.harness.unfinished import unfinished_report
from audiobench.kernel.cache import atomic_write_json
from audiobench.store.run_dir import RunStore
from audiobench.store.status import run_status
from audiobench.testing import tiny_classifier

pytestmark = pytest.mark.slow

GATED_PLUGIN = '''
import os
import time
from pathlib import Path

from audiobench.contracts.registry import METHODS
from audiobench.methods.base import Explainer


@METHODS.register("gated")
class Gated(Explainer):
    """|x| as the map, once the file $AB_GATE exists (at most 120 s): cells that run until a test lets them end."""

    needs_gradients = False

    def attribute(self, x, target, ctx):
        gate, deadline = Path(os.environ["AB_GATE"]), time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return x.abs() + 1e-3
'''

GATED_SUITE = {
    "name": "gated",
    "plugins": ["gated.py"],
    **tiny_classifier(),  # the tiny suite's data, front end and classifier: trained once per session
    "batch_size": 4,
    "domains": ["stft2mel"],
    "contaminations": ["none", {"name": "white_noise", "snr_db": 5}],
    "methods": [{"name": "gated", "label": "Gated A"}, {"name": "gated", "label": "Gated B"},
                {"name": "gated", "label": "Gated C"}],
    "metrics": ["ai", "ad", "ff"],
    "audio": {"n": 0},
}
N_GATED = 6
START_S = 300  # the shared stage (the first test trains the classifier) and two spawned workers, on a loaded machine


@pytest.fixture(scope="module")
def gated_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gated")
    (root / "gated.py").write_text(GATED_PLUGIN)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(GATED_SUITE, sort_keys=False))
    return path


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited, unreaped)."""
    if Path("/proc/self").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.2)


def _running(out: Path) -> dict[str, int]:
    """The cells marked running in ``out`` and their workers' pids."""
    found = {}
    for marker in (out / "status").glob("*.running.json") if (out / "status").exists() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):  # being written or removed
            found[marker.name.removesuffix(".running.json")] = int(json.loads(marker.read_text())["pid"])
    return found


@contextlib.contextmanager
def _run_cli(suite: Path, out: Path, gate: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``audiobench run SUITE -o OUT -q ARGS`` in a new process group (with $AB_GATE), killed with all
    of its group when the block ends."""
    env = {**os.environ, "AB_GATE": str(gate)}
    log = open(out.parent / f"{out.name}.log", "w+")  # noqa: SIM115 - closed below, read by the test
    proc = subprocess.Popen([sys.executable, "-m", "audiobench", "run", str(suite), "-o", str(out), "-q", *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        gate.touch()  # a worker that escaped the group would end its cell and stop at its parent's death
        log.close()


def _log(out: Path) -> str:
    return (out.parent / f"{out.name}.log").read_text()


def _two_running(out: Path, proc: subprocess.Popen) -> dict[str, int]:
    """{cell id: worker pid} once both workers run a (gated) cell; fails with the run's log otherwise."""
    _wait_for(lambda: len(_running(out)) == 2 or proc.poll() is not None, START_S, "two cells running")
    running = _running(out)
    assert len(running) == 2, _log(out)[-3000:]
    return running


def test_sigterm_to_the_main_process_stops_its_workers(gated_suite: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out, gate = tmp_path / "run", tmp_path / "gate"
    with _run_cli(gated_suite, out, gate, "--workers", "2") as proc:
        running = _two_running(out, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        _wait_for(lambda: not any(_alive(pid) for pid in running.values()), 30, f"workers {running} gone")
        gate.touch()  # were a worker left, its cells would now end and the next ones start
        log = _log(out)
        assert "stopped by SIGTERM" in log and "Traceback" not in log
        # no cell ran on, none started after the stop: the two stopped ones are interrupted, the others missing
        status = run_status(out)
        assert sorted(status.ids("interrupted")) == sorted(running)
        assert status.count("missing") == N_GATED - 2 and status.count("done") == 0 and status.count("running") == 0
        assert main(["status", str(out)]) == 3
        report = capsys.readouterr().out
        assert all(f"interrupted {cid}" in report for cid in running)


def test_a_killed_worker_is_reported_and_the_other_cells_still_run(gated_suite: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    out, gate = tmp_path / "run", tmp_path / "gate"
    with _run_cli(gated_suite, out, gate, "--workers", "2") as proc:
        running = _two_running(out, proc)
        victim_cell, victim = sorted(running.items())[0]
        os.kill(victim, signal.SIGKILL)  # what the kernel's OOM killer does
        _wait_for(lambda: not _alive(victim), 30, "the killed worker reaped")
        gate.touch()
        assert proc.wait(timeout=START_S) == 1
        log = _log(out)
    assert f"worker pid {victim} was killed by SIGKILL while running {victim_cell} (out of memory?)" in log
    assert "nothing failed in the cells themselves" in log and "1 of 6 cell(s) not stored" in log
    for wrong in ("BrokenProcessPool", "failed.json", "Traceback", "leaked semaphore"):
        assert wrong not in log, log
    assert not list((out / "status").glob("*.failed.json"))
    status = run_status(out)  # the CLI's report and status agree
    assert status.ids("interrupted") == [victim_cell]
    assert status.count("done") == N_GATED - 1 and status.count("failed") == 0 and status.count("missing") == 0
    assert main(["status", str(out)]) == 3
    assert "0 failed, 1 interrupted" in capsys.readouterr().out


def test_a_worker_whose_parent_is_gone_ends(tmp_path: Path) -> None:
    """The polling fallback (where PR_SET_PDEATHSIG is missing): a process watching its parent ends
    within a few seconds of the parent's SIGKILL."""
    code = ("import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import sys; from audiobench.harness import pool; "
            "pool.PARENT_POLL_S = 0.1; print(\"watching\", flush=True); pool._watch_parent(int(sys.argv[1]))', "
            "str(os.getpid())])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "watching" and _alive(child)
        parent.kill()
        parent.wait(timeout=30)
        _wait_for(lambda: not _alive(child), 30, "the orphaned child ended")
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)


def test_death_lines_name_the_signal_and_the_cell() -> None:
    assert death_line(12, -signal.SIGKILL, "c1") == "worker pid 12 was killed by SIGKILL while running c1 (out of memory?)"
    assert death_line(12, -signal.SIGSEGV, "c1").endswith("SIGSEGV while running c1 (a crash in native code)")
    assert death_line(12, -signal.SIGTERM, None) == "worker pid 12 was killed by SIGTERM while idle"
    assert death_line(12, 3, "c1") == "worker pid 12 exited with status 3 while running c1"


def test_the_report_counts_cells_as_status_does_and_points_to_tracebacks_only_when_they_exist(tmp_path: Path) -> None:
    root = tmp_path / "run"
    ids = ["a__none__x__1", "b__none__x__2", "c__none__x__3", "d__none__x__4", "e__none__x__5", "f__none__x__6"]
    atomic_write_json(root / "status" / "plan.json", {"suite": "s", "cells": [{"id": i} for i in ids]})
    (root / "cells").mkdir(parents=True)
    for cid in ids[:1]:  # stored
        (root / "cells" / f"{cid}.json").write_text("{}")
        (root / "cells" / f"{cid}.parquet").write_bytes(b"")
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    atomic_write_json(root / "status" / f"{ids[1]}.running.json", {"host": host, "pid": dead.pid, "started": time.time()})
    assert RunStore(root).has(ids[0])

    # a killed worker, nothing failed: no pointer to tracebacks; the counts are status's
    lines = unfinished_report(root, ids, {}, ["worker pid 7 was killed by SIGKILL while running b (out of memory?)"], "local")
    text = "\n".join(lines)
    assert lines[0].startswith("worker pid 7 was killed by SIGKILL")
    assert "5 of 6 cell(s) not stored on local workers" in text and "1 interrupted" in text
    assert "4 missing (never started)" in text and "nothing failed in the cells themselves" in text
    assert "failed.json" not in text
    status = run_status(root)
    assert (status.count("done"), status.count("interrupted"), status.count("missing")) == (1, 1, 4)

    atomic_write_json(root / "status" / f"{ids[2]}.failed.json", {"host": host, "pid": 1, "error": "ValueError: boom"})
    # a cell that failed (its failed.json exists) and cells whose job died (submitit: no record of their own)
    failures = {ids[2]: "ValueError: boom", ids[3]: "UncompletedJobError: job 9 died (logs x.err)",
                ids[4]: "UncompletedJobError: job 9 died (logs x.err)", ids[0]: "UncompletedJobError: job 8 died"}
    text = "\n".join(unfinished_report(root, ids, failures, [], "submitit"))
    assert "1 failed" in text and "2 lost with their job or worker" in text and "1 missing" in text
    assert f"  {ids[2]}: ValueError: boom" in text and f"tracebacks in {root}/status/<cell>.failed.json" in text
    assert ids[0] not in text  # stored before its job died: not reported
    assert "nothing failed in the cells themselves" not in text
    assert unfinished_report(root, ids[:1], {}, ["worker pid 7 exited with status 1 while idle"], "local") == []


def _ray_cli(suite: Path, tmp_path: Path, address: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "audiobench", "run", str(suite), "-o", str(tmp_path / "ray"), "-q",
                           "--executor", "ray", "--address", address], capture_output=True, text=True, env=env, timeout=150)
    return proc, time.monotonic() - started


def _one_line_error(proc: subprocess.CompletedProcess, address: str) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("audiobench: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"audiobench: error: --executor ray: no Ray cluster at '{address}' (")
    assert errors[0].endswith("leave out --address to start a local instance)")
    return errors[0]


@pytest.mark.cluster
def test_ray_address_with_nothing_listening_is_a_one_line_error(write_suite: Callable[..., Path], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    suite = write_suite()
    with socket.socket() as held:  # bound, not listening: connections are refused (a mistyped port)
        held.bind(("0.0.0.0", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        proc, seconds = _ray_cli(suite, tmp_path, address)
    assert "connection refused" in _one_line_error(proc, address)
    assert seconds < 60
    from ray._private.services import canonicalize_bootstrap_address

    try:
        canonicalize_bootstrap_address("auto")
    except ConnectionError:  # no Ray instance on this machine (else `auto` would find it)
        proc, seconds = _ray_cli(suite, tmp_path, "auto")
        assert "none is running on this machine; start one with 'ray start --head'" in _one_line_error(proc, "auto")
        assert seconds < 60


@pytest.mark.cluster
def test_ray_address_where_something_else_listens_is_a_one_line_error(write_suite: Callable[..., Path],
                                                                     tmp_path: Path) -> None:
    """A port that accepts connections but does not answer as Ray (another service, a hung head):
    Ray alone retries for about 14 minutes; bounded here to about 20 s."""
    pytest.importorskip("ray")
    with socket.socket() as silent:
        silent.bind(("0.0.0.0", 0))
        silent.listen(16)  # connections complete in the backlog, nothing is ever answered
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        proc, seconds = _ray_cli(write_suite(), tmp_path, address)
    assert "accepts connections but Ray could not connect" in _one_line_error(proc, address)
    assert seconds < 90
