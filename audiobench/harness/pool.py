"""The local executor's worker processes (``--workers N``): a small process pool that knows which cell
each worker runs, so that a stop or a dead worker is reported for what it is.

- **One cell at a time per worker.** This process hands a worker its next cell only when the worker
  has reported the last one, so once the run is stopped no further cell starts anywhere.
- **Stopping the run stops the workers.** While the pool runs, SIGTERM to this process (``kill``,
  ``timeout``, a supervisor or batch system) raises :class:`audiobench.kernel.errors.RunStopped`
  here: the workers are terminated (SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`) before it
  propagates. Their cells keep their ``running`` markers, so ``audiobench status`` lists them as
  ``interrupted``, as it does after a stopped sequential run. Each worker also dies with this
  process however it ends (SIGKILL included): ``prctl(PR_SET_PDEATHSIG)`` on Linux, else a thread
  that polls ``os.getppid()``; an idle worker also ends when its pipe to this process closes.
- **A dead worker is named, not blamed on its cells.** A worker killed by a signal (the kernel's OOM
  killer sends SIGKILL) or that exits by itself is reported with its pid, the signal or exit status
  and the cell it was running (:attr:`PoolOutcome.incidents`); that cell is not retried (it may be
  what used the memory) and stays ``interrupted``. A new worker takes the dead one's place, so the
  other cells still run (at most one replacement per cell, so a worker that dies at every start
  cannot loop). Cells that raised are :attr:`PoolOutcome.failures`, with their error line; their
  tracebacks are in ``RUN_DIR/status/<cell>.failed.json`` (:mod:`audiobench.store.status`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm
from tqdm.std import tqdm as tqdm_base

from audiobench.kernel.errors import RunStopped

STOP_GRACE_S = 10.0  # how long a terminated worker may take to exit before it is killed
PARENT_POLL_S = 1.0  # where PR_SET_PDEATHSIG is missing: how often a worker checks that its parent lives
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# what a worker's death by a signal most likely means, for the report
SIGNAL_HINTS = {"SIGKILL": "out of memory?", "SIGSEGV": "a crash in native code", "SIGBUS": "a crash in native code",
                "SIGABRT": "a crash in native code", "SIGILL": "a crash in native code"}


@dataclass
class PoolOutcome:
    """What the pool's cells came to, beyond the ones stored: ``failures`` maps each cell that raised
    to its error line; ``incidents`` has one line per worker that died (pid, signal or exit status,
    the cell it was running)."""

    failures: dict[str, str] = field(default_factory=dict)
    incidents: list[str] = field(default_factory=list)


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` (the process that started it) ends, however it ends."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):  # no libc symbol table (static builds, unusual loaders)
            armed = False
    if os.getppid() != parent:  # the parent was gone before the death signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="audiobench-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Poll until this process's parent is no longer ``parent``, then end this process (SIGTERM)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # default action: this worker ends, its cell left interrupted


def worker_main(conn: Any, task: Callable[[str], Any], describe: Callable[[BaseException], str], parent: int) -> None:
    """A worker's loop: receive a cell id, run ``task(cell_id)``, send back ``(cell_id, None)`` or
    ``(cell_id, describe(error))``; end on ``None`` or when the pipe to the parent closes."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    # progress bars lock with a thread lock, not tqdm's default multiprocessing one: a semaphore of a
    # terminated worker would be reported "leaked" by the resource tracker when the run ends
    tqdm_base.set_lock(threading.RLock())
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if cell is None:
            return
        error = None
        try:
            task(cell)
        except Exception as exc:  # the cell failed (recorded in its failed.json); the worker goes on
            error = describe(exc)
        try:
            conn.send((cell, error))
        except OSError:  # the parent is gone
            return


def death_line(pid: int | None, exitcode: int | None, cell: str | None) -> str:
    """How a worker ended, for the report: ``worker pid N was killed by SIGKILL while running CELL (out of memory?)``."""
    what = f"while running {cell}" if cell else "while idle"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = SIGNAL_HINTS.get(name)
        return f"worker pid {pid} was killed by {name} {what}" + (f" ({hint})" if hint else "")
    return f"worker pid {pid} exited with status {exitcode} {what}"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`RunStopped` in this (main) thread, so the block's
    clean-up runs; a second SIGTERM ends the process at once. Nothing changes where this is not the
    main thread or SIGTERM already has a handler (an application embedding audiobench keeps its own)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise RunStopped(signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class _Worker:
    proc: Any
    conn: Any
    cell: str | None = None


class _Pool:
    """The live workers; started from this thread, stopped together."""

    def __init__(self, task: Callable[[str], Any], describe: Callable[[BaseException], str]):
        self.ctx = multiprocessing.get_context("spawn")  # no fork of a process with OpenMP threads
        self.task, self.describe = task, describe
        self.workers: list[_Worker] = []

    def start(self) -> None:
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=worker_main, args=(theirs, self.task, self.describe, os.getpid()),
                                name="audiobench-worker")
        proc.start()  # from this (main) thread: PR_SET_PDEATHSIG follows the thread that started the worker
        theirs.close()
        self.workers.append(_Worker(proc, ours))

    def stop(self, graceful: bool) -> None:
        """End every worker: ask (``graceful``) or terminate, wait :data:`STOP_GRACE_S`, then kill."""
        for w in self.workers:
            if graceful:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            elif w.proc.is_alive():
                w.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(STOP_GRACE_S)
            w.conn.close()
        self.workers = []


def run_pool(task: Callable[[str], Any], ids: list[str], workers: int, describe: Callable[[BaseException], str],
             desc: str = "", progress: bool = False, stop_note: str = "") -> PoolOutcome:
    """Run ``task(cell_id)`` for each of ``ids`` in ``workers`` spawned processes; returns the cells
    that raised and the workers that died (see the module). ``task`` and ``describe`` (an exception's
    error line) must pickle: top-level functions, or :func:`functools.partial` of them. Raises
    :class:`RunStopped` on SIGTERM (its message ends with ``stop_note``) and re-raises
    KeyboardInterrupt, after the workers are terminated."""
    out = PoolOutcome()
    pending = list(ids)
    pool = _Pool(task, describe)
    restarts = len(ids)  # one replacement per cell at most
    bar = tqdm(total=len(ids), desc=desc, unit="cell", disable=not progress)
    graceful = False
    try:
        with stop_on_sigterm():
            for _ in range(min(workers, len(ids))):
                pool.start()
            while True:
                for w in pool.workers:
                    if w.cell is None and pending:
                        w.cell = pending.pop(0)
                        try:
                            w.conn.send(w.cell)
                        except OSError:  # it died before taking it: put it back, its death is handled below
                            pending.insert(0, w.cell)
                            w.cell = None
                if not any(w.cell for w in pool.workers) and not (pending and pool.workers):
                    break
                ready = set(mpc.wait([w.conn for w in pool.workers] + [w.proc.sentinel for w in pool.workers]))
                for w in list(pool.workers):
                    while w.cell is not None and (w.conn in ready or w.proc.sentinel in ready) and _poll(w.conn):
                        try:
                            cell, error = w.conn.recv()
                        except Exception:  # closed, or cut short by the worker's death: handled below
                            break
                        if error is not None:
                            out.failures[cell] = error
                        w.cell = None
                        bar.update(1)
                    if w.proc.sentinel not in ready:
                        continue
                    w.proc.join(STOP_GRACE_S)  # reaped: its pid no longer counts as alive (status: interrupted)
                    w.conn.close()
                    pool.workers.remove(w)
                    line = death_line(w.proc.pid, w.proc.exitcode, w.cell)
                    if w.cell is not None:
                        bar.update(1)
                    if pending and restarts > 0:
                        restarts -= 1
                        pool.start()
                        line += "; a new worker took its place"
                    out.incidents.append(line)
        graceful = True
    except RunStopped as stop:
        raise RunStopped(stop.signum, f"stopped by {signal.Signals(stop.signum).name}: the {len(pool.workers)} "
                         "worker(s) were stopped and no further cell started; completed cells are kept, run the same "
                         "command again to compute the rest" + stop_note) from None
    finally:
        bar.close()
        pool.stop(graceful)
    return out


def _poll(conn: Any) -> bool:
    try:
        return bool(conn.poll())
    except (EOFError, OSError):
        return False
