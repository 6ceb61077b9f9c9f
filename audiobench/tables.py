"""Paper-style comparison tables from stored per-sample results.

Input is the long per-sample frame (columns ``dataset, model, domain, contamination, method, label,
sample_id, metric, value``). :func:`build_tables` aggregates it with ``groupby`` (no per-row loops) into one
:class:`Table` per combination of ``spec.per`` values; :func:`to_markdown`, :func:`to_latex` and
:func:`to_csv` render a table and :func:`write_tables` writes all three files.

Conventions:

* ``spec.metrics=None`` shows the metrics of ``metric_info``, in its order, that occur in the frame
  (so auxiliary rows such as ``p_orig`` or ``pred_in`` stay out unless named in ``spec.metrics``);
* values are aggregated per (per-key, group, row, metric) with the metric's ``aggregation``
  (``"mean"`` or ``"median"``) over samples; NaN values are skipped and not counted in ``n``;
* the best value of each column is bold within each group block, comparing the *printed*
  (rounded) values, so ties -- including values that only look equal -- are all bold; metrics
  whose ``higher_is_better`` is ``None`` are never bold, and nothing is bold in a column where
  fewer than two rows of the block have a value (there is nothing to compare);
* a missing cell prints as an en dash (``–`` in Markdown, ``--`` in LaTeX) and is empty in CSV;
* missing values in the key, group or row columns are shown as ``"none"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field
from tabulate import tabulate

from audiobench.component import Params
from audiobench.errors import AudiobenchError, did_you_mean

__all__ = [
    "Table",
    "TableSpec",
    "build_tables",
    "latex_escape",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_tables",
]

AGGREGATIONS = ("mean", "median")
MISSING = "–"
MISSING_LATEX = "--"
NONE_VALUE = "none"
REQUIRED_COLUMNS = ("metric", "value")

Display = Mapping[str, Mapping[str, str]]


class TableSpec(Params):
    """What a table shows: its rows, row blocks, the columns that split tables, metrics, decimals.

    The one definition: a suite's ``tables:`` entries are validated as this model, and a run's
    manifest stores them as its ``model_dump()``.
    """

    name: str = Field("main", pattern=r"^[A-Za-z0-9_.-]+$")
    rows: str = "label"  # column whose values make the rows
    group: str | None = "domain"  # rows are grouped by this column (blocks), or None
    per: tuple[str, ...] = ("dataset", "contamination")  # one table per combination of these columns
    metrics: tuple[str, ...] | None = None  # which metrics, in order; None = metric_info order
    precision: int = Field(2, ge=0, le=8)


@dataclass
class Table:
    """One aggregated table, ready to render.

    ``values`` and ``counts`` are indexed by the raw ``(group, row)`` values (the group level is
    ``""`` when ``spec.group`` is None) with one column per metric; ``blocks`` holds the same
    values split by group and indexed by the row display names, in display order.
    """

    spec: TableSpec
    key: dict[str, str]
    caption: str
    columns: list[str]
    blocks: list[tuple[str, pd.DataFrame]]
    counts: pd.DataFrame
    values: pd.DataFrame = field(default_factory=pd.DataFrame)
    headers: list[str] = field(default_factory=list)
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)

    def slug(self) -> str:
        """File-name-safe name: ``<name>__<value>__<value>`` over ``spec.per``."""
        return "__".join(_safe(part) for part in (self.spec.name, *self.key.values()))


# -- building -----------------------------------------------------------------------------------


def build_tables(
    df: pd.DataFrame,
    metric_info: Mapping[str, Mapping],
    spec: TableSpec = TableSpec(),
    order: Mapping[str, Sequence[str]] | None = None,
    display: Display | None = None,
    caption: Callable[[dict[str, str]], str] | None = None,
) -> list[Table]:
    """Aggregate the long per-sample frame into one :class:`Table` per ``spec.per`` combination.

    ``order`` lists the preferred order of a column's values (others follow in order of first
    appearance); ``display`` maps raw values to display names per column; ``caption`` builds the
    caption from the table key (raw values), by default ``"dataset=…, contamination=…"``.
    """
    order = order or {}
    display = display or {}
    group_col = spec.group
    keys = [*spec.per, *([group_col] if group_col else []), spec.rows]
    missing_cols = [c for c in (*REQUIRED_COLUMNS, *keys) if c not in df.columns]
    if missing_cols:
        raise AudiobenchError(f"results frame lacks column(s) {', '.join(missing_cols)}")
    if len(set(keys)) != len(keys):
        raise AudiobenchError(f"table '{spec.name}': rows, group and per columns overlap: {keys}")

    metrics = _select_metrics(df, metric_info, spec.metrics)
    info = {m: _metric_info(m, metric_info) for m in metrics}
    sub = df.loc[df["metric"].isin(metrics), [*keys, "metric", "value"]]
    if sub.empty:
        return []
    sub = sub.assign(value=pd.to_numeric(sub["value"], errors="coerce"))

    # One groupby per aggregation kind (at most two), never a loop over rows; key values are
    # turned into strings only after aggregation, on the small result.
    how_of = sub["metric"].map({m: i["aggregation"] for m, i in info.items()})
    parts = []
    for how, part in sub.groupby(how_of, sort=False):
        grouped = part.groupby([*keys, "metric"], sort=False, dropna=False, observed=True)["value"]
        parts.append(grouped.agg([how, "count"]).rename(columns={how: "value"}))
    agg = pd.concat(parts).reset_index()
    agg = agg.assign(**{c: _as_str(agg[c]) for c in keys}).set_index([*keys, "metric"])
    wide = pd.concat(
        {
            "value": agg["value"].unstack("metric").reindex(columns=metrics),
            "n": agg["count"].unstack("metric").reindex(columns=metrics).fillna(0).astype(int),
        },
        axis=1,
    )

    ranks = {c: _ranks(_as_str(pd.Series(sub[c].unique())), order.get(c, ())) for c in keys}
    if spec.per:
        split = [
            (combo if isinstance(combo, tuple) else (combo,), part.droplevel(list(spec.per)))
            for combo, part in wide.groupby(level=list(spec.per), sort=False)
        ]
        split.sort(key=lambda item: tuple(ranks[c][v] for c, v in zip(spec.per, item[0], strict=True)))
    else:
        split = [((), wide)]

    headers = [_header(info[m]) for m in metrics]
    directions = {m: info[m]["higher_is_better"] for m in metrics}
    tables = []
    for combo, part in split:
        key = dict(zip(spec.per, combo, strict=True))
        if not group_col:  # a constant group level keeps one index shape for all tables
            part = pd.concat({"": part}, names=["group"])
        values, counts = part["value"], part["n"]
        gname = values.index.names[0]
        order_idx = sorted(
            values.index,
            key=lambda gr: ((ranks[group_col][gr[0]] if group_col else 0), ranks[spec.rows][gr[1]]),
        )
        values, counts = values.loc[order_idx], counts.loc[order_idx]
        blocks = []
        for g in dict.fromkeys(values.index.get_level_values(gname)):
            block = values.xs(g, level=gname)
            block.index = [_show(display, spec.rows, r) for r in block.index]
            block.index.name = spec.rows
            blocks.append((_show(display, group_col, g) if group_col else "", block))
        tables.append(
            Table(
                spec=spec,
                key=key,
                caption=caption(dict(key)) if caption else _default_caption(spec.name, key, display),
                columns=list(metrics),
                blocks=blocks,
                counts=counts,
                values=values,
                headers=headers,
                higher_is_better=directions,
            )
        )
    return tables


def _select_metrics(
    df: pd.DataFrame, metric_info: Mapping[str, Mapping], wanted: Sequence[str] | None
) -> list[str]:
    if wanted is None:
        present = set(df["metric"].unique())
        return [m for m in metric_info if m in present]
    for m in wanted:
        if m not in metric_info:
            raise AudiobenchError(f"unknown metric '{m}' in table spec{did_you_mean(m, metric_info)}")
    return list(dict.fromkeys(wanted))


def _metric_info(name: str, metric_info: Mapping[str, Mapping]) -> dict:
    raw = metric_info[name]
    how = raw.get("aggregation", "mean")
    if how not in AGGREGATIONS:
        raise AudiobenchError(f"metric '{name}': aggregation '{how}' is not one of {', '.join(AGGREGATIONS)}")
    return {
        "display": raw.get("display", name),
        "higher_is_better": raw.get("higher_is_better"),
        "aggregation": how,
    }


def _header(info: Mapping) -> str:
    arrow = {True: "↑", False: "↓"}.get(info["higher_is_better"], "")
    return f"{info['display']}{arrow}"


def _as_str(col: pd.Series) -> pd.Series:
    return col.astype(object).where(col.notna(), NONE_VALUE).astype(str)


def _ranks(col: pd.Series, preferred: Iterable) -> dict[str, int]:
    """Value -> position: listed values first (in the given order), then by first appearance."""
    listed = [str(v) for v in preferred]
    return {v: i for i, v in enumerate(dict.fromkeys([*listed, *col.unique()]))}


def _show(display: Display, col: str | None, value: str) -> str:
    return str(display.get(col, {}).get(value, value)) if col else value


def _default_caption(name: str, key: Mapping[str, str], display: Display) -> str:
    if not key:
        return name
    return ", ".join(f"{k}={_show(display, k, v)}" for k, v in key.items())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or NONE_VALUE


# -- cells and bold -----------------------------------------------------------------------------


def _fmt(value: float, precision: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.{precision}f}"
    return text[1:] if re.fullmatch(r"-0\.?0*", text) else text  # no "-0.00"


def _cells(table: Table) -> list[tuple[str, list[tuple[str, list[tuple[str, bool]]]]]]:
    """Per block: (group name, [(row name, [(printed value or "", bold)])])."""
    p = table.spec.precision
    out = []
    for gname, block in table.blocks:
        printed = [[_fmt(v, p) for v in row] for row in block.itertuples(index=False)]
        bold = [[False] * len(table.columns) for _ in printed]
        for j, m in enumerate(table.columns):
            direction = table.higher_is_better.get(m)
            shown = [float(r[j]) if r[j] else None for r in printed]
            present = [v for v in shown if v is not None]
            if direction is None or len(present) < 2:
                continue
            best = max(present) if direction else min(present)
            for i, v in enumerate(shown):
                bold[i][j] = v == best
        rows = [
            (str(name), list(zip(printed[i], bold[i], strict=True))) for i, name in enumerate(block.index)
        ]
        out.append((gname, rows))
    return out


def _row_header(spec: TableSpec) -> str:
    return "Method" if spec.rows in ("label", "method") else spec.rows.replace("_", " ").capitalize()


# -- renderers ----------------------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    """A pipe table (``tabulate``) with a ``Table: caption`` line above; best values in ``**bold**``."""
    grouped = table.spec.group is not None

    def cell(text: str, bold: bool) -> str:
        if not text:
            return MISSING
        return f"**{text}**" if bold else text

    rows = []
    for gname, block_rows in _cells(table):
        for i, (name, cells) in enumerate(block_rows):
            lead = [_md_escape(gname) if i == 0 else ""] if grouped else []
            rows.append([*lead, _md_escape(name), *(cell(t, b) for t, b in cells)])
    lead_headers = [table.spec.group.replace("_", " ").capitalize()] if grouped else []
    headers = [
        *lead_headers,
        _row_header(table.spec),
        *(_md_escape(h) for h in (table.headers or table.columns)),
    ]
    colalign = ("left",) * (len(lead_headers) + 1) + ("right",) * len(table.columns)
    body = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=colalign)
    return f"Table: {table.caption}\n\n{body}\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "–": "--",
    "—": "---",
    "…": r"\ldots{}",
}
_LATEX_MATH = {
    "↑": r"\uparrow",
    "↓": r"\downarrow",
    "→": r"\rightarrow",
    "←": r"\leftarrow",
    "×": r"\times",
    "±": r"\pm",
    "≤": r"\leq",
    "≥": r"\geq",
    "≈": r"\approx",
    "°": r"^\circ",
    "µ": r"\mu",
    "∞": r"\infty",
}
_GREEK_LOWER = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi o pi rho varsigma sigma tau "
    "upsilon phi chi psi omega"
).split()
_LATEX_MATH.update({chr(0x3B1 + i): (n if n == "o" else "\\" + n) for i, n in enumerate(_GREEK_LOWER)})
_GREEK_UPPER = "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
_LATEX_MATH.update({g: "\\" + n for g, n in zip("ΓΔΘΛΞΠΣΥΦΨΩ", _GREEK_UPPER, strict=True)})
_GREEK_LATIN = dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX", strict=True))


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; map arrows, Greek letters and a few symbols to (merged) math mode."""
    out: list[str] = []
    math_run: list[str] = []
    for ch in str(text):
        if ch in _LATEX_MATH:
            math_run.append(_LATEX_MATH[ch])
            continue
        if math_run:
            out.append("$" + " ".join(math_run) + "$")
            math_run = []
        out.append(_GREEK_LATIN.get(ch) or _LATEX_SPECIAL.get(ch, ch))
    if math_run:
        out.append("$" + " ".join(math_run) + "$")
    return "".join(out)


def to_latex(table: Table) -> str:
    """A complete ``table`` environment with booktabs rules; groups as ``\\multicolumn`` rows."""
    ncols = 1 + len(table.columns)
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.caption)}}}",
        rf"\label{{tab:{table.slug()}}}",
        rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}",
        r"\toprule",
        " & ".join(
            [latex_escape(_row_header(table.spec)), *map(latex_escape, (table.headers or table.columns))]
        )
        + r" \\",
    ]
    for gname, block_rows in _cells(table):
        lines.append(r"\midrule")
        if table.spec.group is not None:
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{latex_escape(gname)}}}}} \\")
        for name, cells in block_rows:
            shown = [(rf"\textbf{{{t}}}" if b else t) if t else MISSING_LATEX for t, b in cells]
            lines.append(" & ".join([latex_escape(name), *shown]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per (group, row): key columns, raw group/row values, full-precision values, ``n``.

    ``n`` is the largest per-metric sample count of the row (per-metric counts: ``table.counts``).
    """
    values = table.values.copy()
    values["n"] = table.counts.max(axis=1) if table.columns else 0
    frame = values.reset_index()
    if table.spec.group is None:
        frame = frame.drop(columns=frame.columns[0])
    for i, (k, v) in enumerate(table.key.items()):
        frame.insert(i, k, v)
    return frame.to_csv(index=False, lineterminator="\n")


def write_tables(tables: Sequence[Table], out_dir: Path) -> list[Path]:
    """Write ``<slug>.md``, ``<slug>.tex`` and ``<slug>.csv`` for each table; returns the paths."""
    out_dir = Path(out_dir)
    slugs = [t.slug() for t in tables]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        raise AudiobenchError(f"several tables would be written as {', '.join(dupes)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table, slug in zip(tables, slugs, strict=True):
        for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
            path = out_dir / f"{slug}{suffix}"
            path.write_text(render(table), encoding="utf-8")
            paths.append(path)
    return paths


def _run_caption(manifest: Mapping) -> Callable[[dict[str, str]], str]:
    display = manifest.get("display", {})
    acc = manifest.get("accuracy", {})
    model = manifest.get("suite", {}).get("model", {}).get("name", "classifier")
    n_clips = {c["contamination"]: c["n"] for c in manifest.get("cells", [])}

    def caption(key: dict[str, str]) -> str:
        parts = [_show(display, col, key[col]) for col in key]
        text = " — ".join(parts) if parts else manifest.get("suite", {}).get("name", "")
        clean = acc.get("clean_test")
        here = acc.get("evaluated", {}).get(key.get("contamination", ""))
        bits = []
        if clean is not None:
            bits.append(f"{model} clean test accuracy {100 * clean:.1f}%")
        if here is not None:
            bits.append(f"{100 * here:.1f}% on these clips")
        n = n_clips.get(key.get("contamination", ""))
        if n:
            bits.append(f"{n} clips")
        return f"{text}. " + ", ".join(bits) + "." if bits else text

    return caption


def run_tables(run_dir: str | Path) -> list[Table]:
    """Every table a finished run's suite lays out, built from its stored results only."""
    from audiobench.store import load_manifest, load_run

    manifest = load_manifest(run_dir)
    frame = load_run(run_dir)
    tables: list[Table] = []
    for raw in manifest["suite"].get("tables", [{}]):
        tables += build_tables(frame, manifest["metrics"], TableSpec(**raw), manifest.get("order"),
                               manifest.get("display"), _run_caption(manifest))
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
