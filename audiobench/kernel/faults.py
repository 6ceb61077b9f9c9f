"""Named points where a test may kill the process (SIGKILL), to check that every interrupted run resumes.

``AUDIOBENCH_TEST_KILL_AT=<point>[:<n>]`` kills the process the ``n``-th time (default: the first)
it reaches :func:`kill_point` with that name. Points: ``epoch`` (after each training epoch of the
classifier or a trainable method), ``batch`` (after each explained batch of a cell), ``cell_write``
(between a cell's rows and the record that marks it complete) and ``atomic_write`` (after a
temporary file is written, before it replaces its target). Without the variable it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "AUDIOBENCH_TEST_KILL_AT"
_SEEN: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``$AUDIOBENCH_TEST_KILL_AT`` names ``name`` and this is its ``n``-th visit."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
