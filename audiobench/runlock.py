"""One writer per run directory: ``RUN_DIR/.lock`` held with ``flock`` for the whole run.

A second ``audiobench run`` on the same directory stops at once with a one-line error instead of
interleaving its writes with the first. The kernel releases the lock when its holder exits, even
when killed, so a crashed run never leaves a stale lock. While the lock is held, temporary files a
killed writer left behind (``.<name>.*.tmp``, never read as results) are removed. Where ``fcntl``
does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audiobench.errors import AudiobenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


@contextmanager
def run_lock(root: str | Path) -> Iterator[Path]:
    """Hold ``root/.lock`` exclusively while the block runs; yields ``root`` (created if missing).

    Raises :class:`AudiobenchError` (one line) when another process holds it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise AudiobenchError(
                    f"{root} is being written by another audiobench run (pid {holder}, lock {root / LOCK_NAME}); "
                    "wait for it to finish or choose another output with -o"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        for tmp in root.rglob(".*.tmp"):  # left by a writer killed between write and rename
            tmp.unlink(missing_ok=True)
        yield root
    finally:
        os.close(fd)  # releases the flock
