"""Who may write a run directory at once: one suite run, and any number of cell workers.

Two ``flock`` locks live in the run directory:

- ``RUN_DIR/.lock``, held exclusively for a whole suite run (``audiobench run SUITE``, whatever
  executor runs its cells): a second suite run on the same directory stops at once with a one-line
  error instead of duplicating or interleaving the first one's work.
- ``RUN_DIR/.cells.lock``, held *shared* by every process that writes cells: the suite run itself
  and each cell worker (``--cell ID``, ``--workers`` processes, Slurm array tasks, Ray tasks). Cells
  are written atomically (:mod:`audiobench.store.run_dir`), so several workers may write one directory.
  It is held *exclusively* only for what must not happen while a cell is being written: removing
  the temporary files a killed writer left behind (``.<name>.*.tmp``, never read as results), and
  ``--overwrite`` clearing the directory.

The kernel releases a lock when its holder exits, even when killed, so a crashed run never leaves a
stale lock. Where ``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from audiobench.kernel.errors import AudiobenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
CELLS_LOCK_NAME = ".cells.lock"


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"


def _clean_tmp(root: Path) -> None:
    for tmp in root.rglob(".*.tmp"):  # left by a writer killed between write and rename
        tmp.unlink(missing_ok=True)


@contextmanager
def cells_lock(root: str | Path, exclusive_action: Callable[[], None] | None = None, required: bool = False) -> Iterator[Path]:
    """Hold ``root/.cells.lock`` shared (a cell writer) while the block runs; yields ``root``.

    Before going shared it tries the lock exclusively: when no other cell writer holds it, leftover
    temporary files are removed and ``exclusive_action`` (e.g. clearing for ``--overwrite``) runs.
    ``required``: raise :class:`AudiobenchError` when other cell writers prevent that, instead of
    skipping it. A shared request waits while another process holds the lock exclusively (for the
    moment of its clean-up).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / CELLS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is None:  # pragma: no cover - Windows
            if exclusive_action is not None:
                exclusive_action()
            yield root
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            exclusive = True
        except BlockingIOError:
            exclusive = False
        if exclusive:
            _clean_tmp(root)
            if exclusive_action is not None:
                exclusive_action()
        elif required:
            raise AudiobenchError(
                f"cells of {root} are being written by other processes (cell workers hold {root / CELLS_LOCK_NAME}); "
                "wait for them before --overwrite"
            )
        fcntl.flock(fd, fcntl.LOCK_SH)  # converts an exclusive lock; waits out another's exclusive moment
        yield root
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def run_lock(root: str | Path, clear: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold ``root/.lock`` exclusively (one suite run per directory) and ``root/.cells.lock`` shared
    while the block runs; yields ``root`` (created if missing).

    ``clear`` (``--overwrite``) runs while no cell worker writes the directory. Raises
    :class:`AudiobenchError` (one line) when another suite run holds the directory, or when ``clear``
    is given and cell workers are writing it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AudiobenchError(
                    f"{root} is being written by another audiobench run (pid {_holder(fd)}, lock {root / LOCK_NAME}); "
                    "wait for it to finish or choose another output with -o"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        with cells_lock(root, clear, required=clear is not None):
            yield root
    finally:
        os.close(fd)  # releases the flock
