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
    text = str(text).lower().replace("λ", "lambda_")  # our "λg=4" is the CSVs' "lambda_g=4"
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
