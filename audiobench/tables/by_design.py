"""The L2I journal's Table VIII layout: classification performance of the by-design systems.

Rows (the journal's order): L2I BD w/ ATT, L2I-PostHoc, L2I BD-NoPred, BASE-f; one column, the measure the
dataset's classifiers are evaluated with: accuracy in % for a softmax (multi-class) model, macro-AUPRC for a
sigmoid (multi-label) one (the journal: ESC-50 accuracy, SONYC-UST macro-AUPRC). Each row is read from a
run directory's manifest (the classifier's info; no recomputation): a run whose model is ``l2i_bd`` gives
the row of its ``prediction`` (g's score on the evaluated split) and, for ``posthoc``, BASE-f (its f
trained alone: the same code, data, seed and regime as the other rows); a run of another model (the
post-hoc suite's classifier) gives "BASE-f (<suite>)", the post-hoc track's f, for reference. Runs of
different datasets, splits or seeds are refused: the rows must be comparable. One seed per row (the
journal reports mean and deviation over 3 runs): the caption says so.

``python -m audiobench.tables.by_design RUN_DIR ... [-o FILE]`` prints (or writes) the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from audiobench.kernel.errors import AudiobenchError
from audiobench.models.l2i_bd_net import ROW_NAMES

ORDER = [ROW_NAMES["f"], ROW_NAMES["posthoc"], ROW_NAMES["g"], "BASE-f"]  # Table VIII's order of our rows


REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "l2i_tasl_bydesign.csv"  # Table VIII as printed
PUBLISHED = {"sigmoid": "journal, SONYC-UST", "softmax": "journal, ESC-50 (%)"}


def _published(kind: str) -> dict[str, float]:
    """The journal's Table VIII column for ``kind`` (``audiobench/reference/l2i_tasl_bydesign.csv``): SONYC-UST
    macro-AUPRC for sigmoid runs, ESC-50 accuracy (%) for softmax ones, by system."""
    ref = pd.read_csv(REFERENCE)
    col = "sonyc_macro_auprc" if kind == "sigmoid" else "esc50_accuracy"
    return dict(zip(ref["System"], ref[col].astype(float), strict=True))


def _measure(info: dict[str, Any], kind: str, split: str, branch: str = "g") -> float | None:
    """The Table VIII measure of a classifier info on ``split``: macro-AUPRC (sigmoid), accuracy in % (else)."""
    if "by_design" in info:
        scores = info["by_design"].get(split, {}).get(branch, {})
        value = scores.get("macro_auprc") if kind == "sigmoid" else scores.get("accuracy")
    else:
        value = (info.get("macro_auprc") or {}).get(split) if kind == "sigmoid" else (info.get("accuracy") or {}).get(split)
    if value is None:
        return None
    return float(value) if kind == "sigmoid" else 100.0 * float(value)


def by_design_rows(manifests: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """(table, caption) from run manifests (``manifest.json`` of each run directory).

    The table has columns ``system``, the measure (``macro-AUPRC`` or ``accuracy (%)``), ``model`` (the
    classifier's hash) and ``suite``. Raises :class:`AudiobenchError` for no manifest, runs of different
    datasets, splits, seeds or output kinds, or two runs giving the same row.
    """
    if not manifests:
        raise AudiobenchError("the by-design table needs at least one run directory")
    keys = {(json.dumps(m["suite"]["dataset"], sort_keys=True), m["suite"]["split"], m["seed"], m.get("output_kind"))
            for m in manifests}
    if len(keys) > 1:
        raise AudiobenchError("the by-design table compares runs of one dataset, split, seed and output kind; got "
                              + "; ".join(f"{json.loads(d)['name']} {s} seed {sd} {k}" for d, s, sd, k in sorted(keys)))
    kind, split = manifests[0].get("output_kind") or "softmax", manifests[0]["suite"]["split"]
    column = "macro-AUPRC" if kind == "sigmoid" else "accuracy (%)"
    rows: dict[str, dict[str, Any]] = {}

    def add(system: str, value: float | None, m: dict[str, Any]) -> None:
        if system in rows:
            raise AudiobenchError(f"two runs give the row {system!r}: models {rows[system]['model']} and "
                                  f"{m['classifier'].get('hash')} (suites {rows[system]['suite']}, {m['suite']['name']})")
        rows[system] = {"system": system, column: value, "model": m["classifier"].get("hash"), "suite": m["suite"]["name"]}

    for m in manifests:
        info = m["classifier"]
        if info.get("model", {}).get("name") == "l2i_bd":
            prediction = info["model"]["prediction"]
            reduction = info["model"].get("loss_reduction", "ours")  # a named variant of the terms' reduction
            add(ROW_NAMES[prediction] + ("" if reduction == "ours" else f" ({reduction} reduction)"),
                _measure(info, kind, split), m)
            if prediction == "posthoc":
                add("BASE-f", _measure(info, kind, split, "f"), m)
        else:
            add(f"BASE-f ({m['suite']['name']})", _measure(info, kind, split), m)
    published = _published(kind)
    for r in rows.values():  # the journal's value for the row's system (a variant's is its system's), beside ours
        r[PUBLISHED[kind]] = published.get(r["system"].split(" (")[0])
    for system, value in published.items():  # the journal's systems not built here: published-only lines
        if system not in {r.split(" (")[0] for r in rows}:
            rows[system] = {"system": system, column: None, PUBLISHED[kind]: value, "model": "published only", "suite": "-"}
    ours = [r for r in rows if rows[r]["model"] != "published only"]
    order = [r for r in ORDER if r in ours] + sorted(r for r in ours if r not in ORDER) + \
        [r for r in rows if r not in ours]  # each row once: ours in the journal's order, then published-only lines
    table = pd.DataFrame([rows[r] for r in order])
    table = table[["system", column, PUBLISHED[kind], "model", "suite"]]
    dataset = manifests[0]["suite"]["dataset"]["name"]
    caption = (f"Classification performance for by-design interpretation (the L2I journal's Table VIII layout): "
               f"{column} of each system's predictions on the {split} split of {dataset}, seed {manifests[0]['seed']}, "
               f"one run each (the journal: mean and deviation over 3). The L2I rows' model is g, predictions from "
               f"the interpreter; BASE-f is f alone. Beside ours, the journal's {PUBLISHED[kind].split(', ')[1]} column "
               f"(other data: a layout comparison, not a reproduction; a named variant shows its system's value).")
    return table, caption


def render(table: pd.DataFrame, caption: str, digits: int = 3) -> str:
    """Markdown: the caption, then the table (values rounded to ``digits``; a missing value is '-')."""
    lines = [caption, "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, row in table.iterrows():
        cells = [("-" if v is None or v != v else f"{v:.{digits}f}") if isinstance(v, float) or v is None else str(v)
                 for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_by_design(runs: list[Path], out: Path | None = None) -> str:
    """The Table VIII Markdown of run directories ``runs`` (written to ``out`` when given). Raises
    :class:`AudiobenchError` for a directory without ``manifest.json`` and as :func:`by_design_rows`."""
    manifests = []
    for run in runs:
        path = Path(run) / "manifest.json"
        if not path.exists():
            raise AudiobenchError(f"{run}: no manifest.json (not a run directory)")
        manifests.append(json.loads(path.read_text()))
    text = render(*by_design_rows(manifests))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiobench.tables.by_design", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (audiobench run -o DIR)")
    parser.add_argument("-o", "--output", type=Path, help="write the Markdown here")
    args = parser.parse_args(argv)
    try:
        print(write_by_design(args.runs, args.output), end="")
    except AudiobenchError as exc:  # one line, as the command line's other errors
        print(f"audiobench.tables.by_design: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
