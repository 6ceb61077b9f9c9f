"""A finished run's tables: its manifest's layouts over its stored rows, captions with accuracies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audiobench.kernel.errors import AudiobenchError
from audiobench.store.records import Manifest, read_manifest
from audiobench.tables.aggregate import Table, TableSpec, _show, build_tables
from audiobench.tables.render import to_csv, to_latex, to_markdown, write_tables

#: evaluated splits that trained components saw, and how
SEEN_SPLITS = {"train": "trained on", "valid": "were selected on"}


def _run_caption(manifest: Manifest) -> Callable[[dict[str, str]], str]:
    display = manifest.display
    acc = manifest.accuracy
    model = manifest.model_name
    n_clips = {c.contamination: c.n for c in manifest.cells}
    zero_shot = manifest.output_kind == "similarity"

    def caption(key: dict[str, str]) -> str:
        parts = [_show(display, col, key[col]) for col in key]
        text = " — ".join(parts) if parts else manifest.suite.name
        clean = acc.clean_test
        here = acc.evaluated.get(key.get("contamination", ""))
        bits = []
        if clean is not None:
            what = "zero-shot accuracy on clean test clips" if zero_shot else "clean test accuracy"
            bits.append(f"{model} {what} {100 * clean:.1f}%")
        if here is not None:
            bits.append(f"{100 * here:.1f}% on these clips")
        n = n_clips.get(key.get("contamination", ""))
        if n:
            bits.append(f"{n} clips")
        split = getattr(manifest.suite, "split", "test")
        if split in SEEN_SPLITS:  # train/evaluate separation: the clips themselves were seen
            bits.append(f"clips of the {split} split, which trained components {SEEN_SPLITS[split]}")
        text = f"{text}. " + ", ".join(bits) + "." if bits else text
        return text + "".join(f" {note}." for note in _notes(manifest, key))

    return caption


def _notes(manifest: Manifest, key: dict[str, str]) -> list[str]:
    """The notes of the cells a table shows (a closed fine-tuning gate, clipped masks), once each,
    prefixed with the row and domain: what a reader of the table must know about its rows."""
    out: list[str] = []
    for c in manifest.cells:
        if any(getattr(c, col, value) != value for col, value in key.items() if col in ("contamination", "domain")):
            continue
        for note in c.notes:
            text = f"{c.row} ({manifest.display_name('domain', c.domain)}): {note}"
            if text not in out:
                out.append(text)
    return out


def run_tables(run_dir: str | Path) -> list[Table]:
    """Every table a finished run's suite lays out, built from its stored results only."""
    from audiobench.store.run_dir import load_run

    manifest = read_manifest(run_dir)
    frame = load_run(run_dir).rename(columns={"label": "row"})  # runs before schema 2 called it label
    tables: list[Table] = []
    for raw in manifest.suite.tables:
        tables += build_tables(frame, manifest.metric_info(), TableSpec(**raw), manifest.order,
                               manifest.display, _run_caption(manifest))
    return tables


def render_run(run_dir: str | Path, fmt: str | None = None, write: bool = True) -> dict[str, str]:
    """Re-render a finished run's tables from its stored results only (no recomputation).

    Writes ``tables/<slug>.md|.tex|.csv`` when ``write``; returns slug -> text in ``fmt``
    (markdown by default).
    """
    renderers = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if (fmt or "markdown") not in renderers:
        raise AudiobenchError(f"unknown table format '{fmt}' (known: {', '.join(renderers)})")
    tables = run_tables(run_dir)
    if write:
        write_tables(tables, Path(run_dir) / "tables")
    return {t.slug(): renderers[fmt or "markdown"](t) for t in tables}
