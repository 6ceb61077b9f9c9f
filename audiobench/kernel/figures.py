"""Figure files (matplotlib, Agg backend): the same bytes for the same figure, run after run."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, stem: Path, dpi: int = 80) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (at ``dpi``) and ``<stem>.pdf``; close it; return the paths.
    No timestamp is written, so an unchanged figure leaves the files unchanged."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    pyplot().close(fig)
    return paths
