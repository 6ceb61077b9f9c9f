"""Our numbers beside the published ones: ``audiobench table RUN_DIR --compare lmac_icml2024:2``.

The papers' tables ship with the package (``audiobench/reference/*.csv``, see its README). A
comparison spec is ``NAME:TABLE`` plus, for references with several blocks per table,
``:column=value,...`` (``lmaczs_neurips2024:2:dataset=ESC50,contamination=esc50``).

Rows are matched on the masking domain (``stft`` in a reference means ``stft2mel``; every ``stft2mel``
instance, whatever its masking operator, e.g. ``stft2mel_log1p``, is compared with the STFT→Mel rows) and on the
method's row label, compared case- and punctuation-insensitively with numbers normalised
(``Smoothgrad`` = ``SmoothGrad``, ``Guided Gradcam`` = ``Guided GradCAM``, ``RT=0.60`` =
``RT=0.6``). Each of our rows is followed by the published row ("paper"), or by dashes when the
paper has none; published rows we did not run follow, with dashes on our side. Published values
are printed exactly as in the paper.

``--compare l2i_tasl`` (or ``l2i_tasl:4``) is of another kind: for a multi-label run with L2I rows it
sets the interpreter's fidelity to the classifier (:mod:`audiobench.tables.fidelity`) beside the L2I
journal's Table IV SONYC-UST columns (:func:`render_l2i_comparison`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.tables import MISSING, Table, _fmt, run_tables

REFERENCES = {
    "lmac_icml2024": "Paissan et al., Listenable Maps for Audio Classifiers, ICML 2024",
    "lmaczs_neurips2024": "Paissan et al., Listenable Maps for Zero-Shot Audio Classifiers, NeurIPS 2024",
    "lmactd_icassp2025": ("Mancini et al., LMAC-TD: Producing Time Domain Explanations for Audio Classifiers, ICASSP 2025 "
                          "(arXiv:2409.08655): the numbers of its code's interpret/README.md (fpaissan/lmac-td-code)"),
    "l2i_tasl": ("Parekh et al., Tackling Interpretability in Audio Classification Networks with Non-negative "
                 "Matrix Factorization, arXiv:2305.07132v1 (journal extension of L2I)"),
}
METRIC_COLUMNS = {"ai": "AI", "ad": "AD", "ag": "AG", "ff": "FF", "fid_in": "FidIn", "sps": "SPS", "comp": "COMP", "mm": "MM"}
DOMAINS = {"stft": "stft2mel", "stft2mel": "stft2mel", "mel": "mel"}
ALIASES = {"integratedgradients": "ig", "gradientshap": "shap", "guidedbackpropagation": "guidedbackprop"}
KEY_COLUMNS = ("table", "domain", "method")
INFO_COLUMNS = ("setting", "zs_accuracy")  # describe a block, never select one


def reference_domain(key: str) -> str:
    """A run's domain key -> the published tables' domain it is compared with: ``stft2mel`` and its variants
    (``stft2mel_log1p``) -> ``stft2mel``; ``mel`` -> ``mel``; any other key is its own."""
    for name in dict.fromkeys(DOMAINS.values()):
        if key == name or key.startswith(f"{name}_"):
            return name
    return key


def norm_label(text: str) -> str:
    """``"Guided Gradcam"`` -> ``guidedgradcam``; ``"L2I RT=0.60"`` -> ``l2irt0.6``; ``GradCam++`` keeps its ``++``."""
    text = str(text).lower().replace("λ", "lambda_").replace("α", "alpha")  # our "λg=4" is the CSVs' "lambda_g=4"
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: f"{float(m.group()):g}", text)
    key = re.sub(r"[^a-z0-9.+]", "", text).strip(".")
    return ALIASES.get(key, key)


@dataclass
class Reference:
    name: str
    table: str
    rows: pd.DataFrame  # the selected rows, strings as printed
    setting: str


def read_reference(name: str) -> pd.DataFrame:
    if name not in REFERENCES:
        raise AudiobenchError(f"unknown reference '{name}'{did_you_mean(name, REFERENCES)}")
    text = resources.files("audiobench").joinpath("reference").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def select(spec: str) -> Reference:
    """Parse ``NAME:TABLE[:col=value,...]`` and return the published rows it names (one per domain and method)."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[1]:
        raise AudiobenchError(f"--compare {spec!r}: expected NAME:TABLE, e.g. lmac_icml2024:2 (references: {', '.join(REFERENCES)})")
    name, table = parts[0], parts[1].strip()
    frame = read_reference(name)
    tables = sorted(frame["table"].unique(), key=lambda t: (len(t), t))
    if table not in tables:
        raise AudiobenchError(f"--compare {spec!r}: {name} has tables {', '.join(tables)}")
    rows = frame[frame["table"] == table]
    for cond in (parts[2].split(",") if len(parts) > 2 and parts[2] else []):
        col, sep, value = cond.partition("=")
        if not sep or col not in rows.columns:
            raise AudiobenchError(f"--compare {spec!r}: '{cond}' is not column=value (columns: {', '.join(rows.columns)})")
        rows = rows[rows[col] == value]
        if rows.empty:
            raise AudiobenchError(f"--compare {spec!r}: no rows with {col}={value}")
    rows = rows.assign(_domain=rows["domain"].map(lambda d: DOMAINS.get(d, d)), _key=rows["method"].map(norm_label))
    dupes = rows[rows.duplicated(["_domain", "_key"], keep=False)]
    if not dupes.empty:
        block_cols = [c for c in rows.columns if c not in (*KEY_COLUMNS, *INFO_COLUMNS, *METRIC_COLUMNS.values(),
                                                           "_domain", "_key") and rows[c].nunique() > 1]
        choices = "; ".join(f"{c}: {', '.join(sorted(rows[c].unique()))}" for c in block_cols)
        raise AudiobenchError(
            f"--compare {spec!r}: table {table} of {name} has several blocks; choose one with "
            f"{name}:{table}:{'=…,'.join(block_cols)}=… ({choices})"
        )
    setting = ", ".join(sorted(rows["setting"].unique())) if "setting" in rows.columns else parts[2] if len(parts) > 2 else ""
    return Reference(name, table, rows, setting)


def compare_tables(table: Table, ref: Reference) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per domain block, each of our rows then the paper's; paper-only rows last in the block."""
    p = table.spec.precision
    metrics = table.columns
    headers = [table.spec.group.replace("_", " ").capitalize() if table.spec.group else "", "Method", "",
               *(table.headers or metrics)]
    out: list[list[str]] = []
    groups = list(dict.fromkeys(table.values.index.get_level_values(0)))
    display = dict(zip(groups, [g for g, _ in table.blocks], strict=False))
    ref_groups = list(dict.fromkeys(ref.rows["_domain"]))
    compared = {reference_domain(str(g)) for g in groups}
    for group in groups + [g for g in ref_groups if g not in compared]:
        published = ref.rows[ref.rows["_domain"] == reference_domain(str(group))] if table.spec.group == "domain" else ref.rows
        ours = table.values.xs(group, level=0) if group in groups else pd.DataFrame(columns=metrics)
        first = True
        matched: set[str] = set()
        for label, values in ours.iterrows():
            key = norm_label(str(label))
            lead = display.get(group, group) if first else ""
            first = False
            out.append([lead, str(label), "ours", *(_fmt(values[m], p) or MISSING for m in metrics)])
            hit = published[published["_key"] == key]
            if len(hit):
                matched.add(key)
                row = hit.iloc[0]
                out.append(["", "", f"paper ({row['method']})" if row["method"] != label else "paper",
                            *(row.get(METRIC_COLUMNS.get(m, ""), "") or MISSING for m in metrics)])
            else:
                out.append(["", "", "paper", *([MISSING] * len(metrics))])
        for _, row in published.iterrows():
            if row["_key"] in matched:
                continue
            lead = display.get(group, group) if first else ""
            first = False
            out.append([lead, row["method"], "paper", *(row.get(METRIC_COLUMNS.get(m, ""), "") or MISSING for m in metrics)])
        if table.spec.group != "domain":
            break
    return headers, out


def render_comparison(run_dir: str | Path, spec: str, fmt: str = "markdown") -> dict[str, str]:
    """One comparison per table of the run (each contamination), as Markdown, LaTeX or CSV."""
    if spec.split(":")[0] == L2I_REFERENCE:
        return render_l2i_comparison(run_dir, spec, fmt)
    ref = select(spec)
    title = f"{REFERENCES[ref.name]}, Table {ref.table}" + (f" ({ref.setting})" if ref.setting else "")
    out: dict[str, str] = {}
    for table in run_tables(run_dir):
        headers, rows = compare_tables(table, ref)
        caption = f"{table.caption} Beside: {title}."
        if fmt == "csv":
            text = pd.DataFrame(rows, columns=[h or "source" for h in headers]).to_csv(index=False, lineterminator="\n")
        elif fmt == "latex":
            text = f"% {caption}\n" + tabulate(rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
        else:
            body = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True,
                            colalign=("left", "left", "left") + ("right",) * (len(headers) - 3))
            text = f"Table: {caption}\n\n{body}\n"
        out[f"{table.slug()}__vs__{ref.name}-{ref.table}"] = text
    return out


# -- the L2I journal's Table IV: interpreter fidelity (multi-label runs) ---------------------------

L2I_REFERENCE = "l2i_tasl"
L2I_TABLE = "4"
L2I_SYSTEMS = {"l2i": "L2I w/ ATT"}  # our attention-pooled L2I row is the journal's "L2I w/ ATT"
L2I_HEADERS = ["Domain", "Condition", "Method", "Clips", "macro-AUPRC", "micro-AUPRC", "max-F1",
               "Paper system", "Paper macro-AUPRC", "Paper micro-AUPRC"]


def l2i_system_key(row: str) -> str:
    """Our row label -> the journal's system it is set beside, normalised as :func:`norm_label`:
    ``"L2I, RT=0.4"`` -> ``l2iwatt``, ``"L2I w/ MAX, RT=0.4"`` -> ``l2iwmax`` (the relevance threshold
    is ours only: Table IV has none)."""
    key = norm_label(re.sub(r",?\s*RT\s*=\s*[\d.]+", "", str(row)))
    return norm_label(L2I_SYSTEMS.get(key, key))


def _published(row: pd.Series, column: str) -> str:
    return f"{row[column]} ± {row[column + '_std']}" if row[column] else MISSING


def render_l2i_comparison(run_dir: str | Path, spec: str, fmt: str = "markdown") -> dict[str, str]:
    """Our interpreter fidelity (macro-/micro-AUPRC, max-F1 over the clips of each L2I cell) beside the
    journal's SONYC-UST macro-/micro-AUPRC of the matching system (mean ± spread as printed); the
    journal's systems we did not run (FLINT, VIBI) follow as published-only lines. One table, as
    Markdown, LaTeX or CSV. Raises :class:`AudiobenchError` for another table or a run without
    multi-label interpreter rows."""
    from audiobench.store.records import read_manifest
    from audiobench.tables.fidelity import fidelity_frame

    parts = spec.split(":")
    if len(parts) > 2 or (len(parts) == 2 and parts[1].strip() != L2I_TABLE):
        raise AudiobenchError(f"--compare {spec!r}: {L2I_REFERENCE} is compared on its Table {L2I_TABLE} "
                              f"(interpreter fidelity) only: --compare {L2I_REFERENCE}")
    manifest = read_manifest(run_dir)
    frame = fidelity_frame(run_dir, manifest)
    if frame.empty:
        raise AudiobenchError(f"run {run_dir} has no multi-label interpreter rows to compare with {L2I_REFERENCE} "
                              "(a sigmoid run with L2I rows)")
    ref = read_reference(L2I_REFERENCE)
    ref = ref.assign(_key=ref["system"].map(norm_label))
    out: list[list[str]] = []
    matched: set[str] = set()
    for _, rec in frame.iterrows():
        hit = ref[ref["_key"] == l2i_system_key(rec.row)]
        paper = [MISSING, MISSING, MISSING]
        if len(hit):
            matched.add(hit.iloc[0]["_key"])
            paper = [hit.iloc[0]["system"], *(_published(hit.iloc[0], c) for c in ("sonyc_macro_auprc", "sonyc_micro_auprc"))]
        ours = [_fmt(float(rec[c]), 3) or MISSING for c in ("macro-AUPRC", "micro-AUPRC", "max-F1")]
        out.append([manifest.display_name("domain", rec.domain), manifest.display_name("contamination", rec.contamination),
                    str(rec.row), str(rec.clips), *ours, *paper])
    for _, row in ref.iterrows():
        if row["_key"] not in matched:
            out.append([MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, row["system"],
                        _published(row, "sonyc_macro_auprc"), _published(row, "sonyc_micro_auprc")])
    dataset = manifest.suite.dataset.name if manifest.suite.dataset is not None else "the run's data"
    caption = (
        "Interpreter fidelity to the classifier: our L2I rows beside "
        f"{REFERENCES[L2I_REFERENCE]}, Table {L2I_TABLE} (SONYC-UST columns; mean ± spread over the authors' runs "
        "as printed, which their caption calls a variance and their text a standard deviation). A layout "
        "comparison, not a reproduction: our data are "
        f"{manifest.display_name('dataset', dataset)}, the journal's SONYC-UST; our reference labels are the "
        "classifier's decided labels (p > threshold) over the clips with at least one (the journal scores every "
        "test clip against the classifier's output); our AUPRC is scikit-learn's step-wise average precision, "
        "the authors' an 11-threshold trapezoid; our max-F1 has no published counterpart here (the journal's "
        "F1 is OpenMIC's). Clips: the clips scored. Higher is better. \"L2I\" is the journal's \"L2I w/ ATT\"; "
        "FLINT and VIBI were not run."
    )
    if fmt == "csv":
        text = pd.DataFrame(out, columns=L2I_HEADERS).to_csv(index=False, lineterminator="\n")
    elif fmt == "latex":
        text = f"% {caption}\n" + tabulate(out, headers=L2I_HEADERS, tablefmt="latex_booktabs", disable_numparse=True)
    else:
        body = tabulate(out, headers=L2I_HEADERS, tablefmt="pipe", disable_numparse=True,
                        colalign=("left", "left", "left") + ("right",) * 4 + ("left",) + ("right",) * 2)
        text = f"Table: {caption}\n\n{body}\n"
    return {f"fidelity__vs__{L2I_REFERENCE}-{L2I_TABLE}": text}
