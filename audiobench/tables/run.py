"""A finished run's tables: its manifest's layouts over its stored rows, captions with accuracies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from audiobench.kernel.errors import AudiobenchError
from audiobench.store.records import Manifest, read_manifest
from audiobench.tables.aggregate import Table, TableSpec, _show, build_tables
from audiobench.tables.render import to_csv, to_latex, to_markdown, write_tables

#: evaluated splits that trained components saw, and how
SEEN_SPLITS = {"train": "trained on", "valid": "were selected on"}


#: the budget-matched metric the caption compares methods with the controls by (both curves in one number)
MATCHED = "ins_del"
TIE = 1e-6  # a mean within this of the control's is not above it
FILL_WORDS = {"zero": "zero (the papers' M⊙X)", "mean": "the clip's mean level", "noise": "noise at the clip's level"}
#: tables showing one of these, or a budget-matched metric, get the controls' caption line
PAPER_FAITHFULNESS = {"ai", "ad", "ag", "ff", "fid_in"}


def control_notes(frame: pd.DataFrame, manifest: Manifest, key: dict[str, str]) -> list[str]:
    """Per domain of the table ``key``: the methods whose mean insertion-minus-deletion area (a matched
    budget) is not above that of the ``energy`` map, and of ``random``. Empty when the run has no
    ``ins_del`` rows or neither control."""
    from audiobench.methods.control import CONTROLS  # here: importing the tables needs no torch
    sub = frame[frame.metric == MATCHED]
    for col, value in key.items():
        if col in sub.columns:
            sub = sub[sub[col] == value]
    if sub.empty:
        return []
    means = sub.groupby(["domain", "method", "row"], sort=False).value.mean()
    out = []
    for domain, per in means.groupby(level="domain", sort=False):
        per = per.droplevel("domain")
        methods = per[~per.index.get_level_values("method").isin(CONTROLS)]
        for control in ("energy", "random"):
            if control not in per.index.get_level_values("method"):
                continue
            rows = per.xs(control, level="method")
            bar, shown = rows.max(), rows.idxmax()
            behind = [row for (_, row), v in methods.items() if v <= bar + TIE]
            where = manifest.display_name("domain", domain)
            if behind:
                out.append(f"{where}: not above {shown} at a matched budget (mean Ins.-Del. {bar:.3f}): " + ", ".join(behind))
            else:
                out.append(f"{where}: every method is above {shown} at a matched budget (mean Ins.-Del. {bar:.3f})")
    return out


def _run_caption(manifest: Manifest, frame: pd.DataFrame, spec: TableSpec) -> Callable[[dict[str, str]], str]:
    """The caption of a table of the run: its block, the accuracies, notes of its cells, and (for a
    table of faithfulness metrics) the methods that do not beat the controls at a matched budget."""
    from audiobench.metrics.faithfulness import BUDGET_METRICS  # here: importing the tables needs no torch

    shown = set(spec.metrics or manifest.metrics)  # none listed: every metric of the run
    budgeted = bool(shown & set(BUDGET_METRICS))
    compares = budgeted or bool(shown & PAPER_FAITHFULNESS)

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
        if acc.clean_test_macro_auprc is not None:  # multi-label: ranking quality, not the share of pairs decided right
            bits.append(f"{model} clean test macro-AUPRC {acc.clean_test_macro_auprc:.3f}")
        elif clean is not None:
            what = "zero-shot accuracy on clean test clips" if zero_shot else "clean test accuracy"
            bits.append(f"{model} {what} {100 * clean:.1f}%")
        if here is not None and manifest.output_kind == "sigmoid":
            bits.append(f"{100 * here:.1f}% of the explained labels are true labels")
        elif here is not None:
            per = {d: v[key["contamination"]] for d, v in acc.by_domain.items() if key.get("contamination") in v}
            if len({round(v, 6) for v in per.values()}) > 1:  # the model reads the domains differently
                shown = ", ".join(f"{_show(display, 'domain', d)} {100 * v:.1f}%" for d, v in per.items())
                bits.append(f"on these clips {shown}")
            else:
                bits.append(f"{100 * here:.1f}% on these clips")
        n = n_clips.get(key.get("contamination", ""))
        if n:
            bits.append(f"{n} clips")
        split = getattr(manifest.suite, "split", "test")
        if split in SEEN_SPLITS:  # train/evaluate separation: the clips themselves were seen
            bits.append(f"clips of the {split} split, which trained components {SEEN_SPLITS[split]}")
        text = f"{text}. " + ", ".join(bits) + "." if bits else text
        notes = _notes(manifest, key) + (control_notes(frame, manifest, key) if compares else [])
        if budgeted and manifest.suite.budget:
            b = manifest.suite.budget
            notes.insert(0, f"Budget-matched columns: each map's bins ranked (ties in a seeded order) and kept or removed "
                            f"at {', '.join(f'{100 * k:g}' for k in b.get('fractions', []))} % of the bins; a removed "
                            f"bin is set to {FILL_WORDS.get(b.get('fill', 'zero'), b.get('fill'))}")
        return text + "".join(f" {note}." for note in notes)

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


def _stored(run_dir: str | Path) -> tuple[Manifest, pd.DataFrame]:
    """A finished run's typed manifest and long rows (read once for tables, curves and the meta table)."""
    from audiobench.store.run_dir import load_run

    return read_manifest(run_dir), load_run(run_dir).rename(columns={"label": "row"})  # before schema 2: label


def run_tables(run_dir: str | Path, stored: tuple[Manifest, pd.DataFrame] | None = None) -> list[Table]:
    """Every table a finished run's suite lays out, built from its stored results only (``stored``:
    its manifest and rows when already read)."""
    manifest, frame = stored or _stored(run_dir)
    tables: list[Table] = []
    for raw in manifest.suite.tables:
        spec = TableSpec(**raw)
        tables += build_tables(frame, manifest.metric_info(), spec, manifest.order, manifest.display,
                               _run_caption(manifest, frame, spec))
    return tables


def render_run(run_dir: str | Path, fmt: str | None = None, write: bool = True) -> dict[str, str]:
    """Re-render a finished run's tables from its stored results only (no recomputation).

    Writes ``tables/<slug>.md|.tex|.csv`` when ``write``; returns slug -> text in ``fmt``
    (markdown by default).
    """
    renderers = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if (fmt or "markdown") not in renderers:
        raise AudiobenchError(f"unknown table format '{fmt}' (known: {', '.join(renderers)})")
    manifest, frame = stored = _stored(run_dir)
    tables = run_tables(run_dir, stored)
    if write:
        write_tables(tables, Path(run_dir) / "tables")
        from audiobench.tables.curves import plot_curves
        from audiobench.tables.meta import write_trust

        plot_curves(frame, manifest, Path(run_dir) / "plots")
        write_trust(frame, manifest.metric_info(), manifest.display, Path(run_dir) / "tables",
                    manifest.suite.dataset.name if manifest.suite.dataset is not None else "dataset", manifest.seed or 0)
        from audiobench.tables.fidelity import write_fidelity

        write_fidelity(run_dir, manifest, Path(run_dir) / "tables")  # multi-label runs with an interpreter (L2I)
        from audiobench.tables.classwise import write_classwise

        write_classwise(frame, manifest, Path(run_dir) / "tables", Path(run_dir) / "plots")
        from audiobench.tables.relevance import write_relevance

        write_relevance(run_dir, manifest, Path(run_dir) / "tables", Path(run_dir) / "plots")
    return {t.slug(): renderers[fmt or "markdown"](t) for t in tables}
