"""audiobench: a benchmark harness for interpretability methods of audio classifiers.

Notebook API::

    import audiobench as ab
    result = ab.run("suites/quickstart.yaml", limit=20)
    frame = ab.load_run(result.run_dir)
    print(ab.render_table(result.run_dir)["main__synth__none"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audiobench.kernel.version import __version__ as __version__

if TYPE_CHECKING:
    import pandas as pd

    from audiobench.harness.session import RunResult

__all__ = ["load_manifest", "load_run", "render_table", "run", "validate"]


def run(suite: Any, output: Any = None, limit: int | None = None, device: str = "cpu",
        overwrite: bool = False, progress: bool = True) -> RunResult:
    """Run a suite (a path or a parsed :class:`~audiobench.suite.Suite`); see ``audiobench run``."""
    from audiobench.harness.runner import run_suite

    return run_suite(suite, output, limit, device, overwrite, progress)


def load_run(run_dir: Any) -> pd.DataFrame:
    """A finished run's per-sample results as a long DataFrame."""
    from audiobench.store.run_dir import load_run as _load

    return _load(run_dir)


def load_manifest(run_dir: Any) -> dict:
    """A finished run's manifest (resolved suite, versions, accuracy, timings, skips)."""
    from audiobench.store.run_dir import load_manifest as _load

    return _load(run_dir)


def render_table(run_dir: Any, fmt: str = "markdown") -> dict[str, str]:
    """Tables of a finished run from its stored results only: slug -> text."""
    from audiobench.tables import render_run

    return render_run(run_dir, fmt, write=False)


def validate(suite_path: Any) -> list[str]:
    """Problems in a suite file as ``file:line: message`` strings (empty when valid)."""
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.suite import SuiteErrors, load_suite

    try:
        load_suite(suite_path)
    except SuiteErrors as exc:
        return [e.located() for e in exc.errors]
    except AudiobenchError as exc:
        return [str(exc)]
    return []
