"""Renderers: a :class:`Table` as Markdown, LaTeX (booktabs) or CSV, and the three files written."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from audiobench.kernel.errors import AudiobenchError
from audiobench.tables.aggregate import MISSING, MISSING_LATEX, Table, TableSpec

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
            if table.ci is not None:  # with intervals: the best row only, and only where the paired test separates it
                if table.separated.get((gname, m), (False, 1.0))[0]:
                    raw = block.iloc[:, j]
                    top = raw.max() if direction else raw.min()
                    for i in range(len(printed)):
                        bold[i][j] = bool(raw.iloc[i] == top) and shown[i] is not None
                continue
            for i, v in enumerate(shown):
                bold[i][j] = v == best
        if table.ci is not None:  # value ± half-width of its 95 % interval
            hw = table.ci.xs(_raw_group(table, gname), level=0) if table.spec.group is not None else table.ci.droplevel(0)
            printed = [[f"{t} ± {_fmt(float(h), p)}" if t and not math.isnan(float(h)) else t
                        for t, h in zip(row, hw.iloc[i], strict=True)] for i, row in enumerate(printed)]
        rows = [
            (str(name), list(zip(printed[i], bold[i], strict=True))) for i, name in enumerate(block.index)
        ]
        out.append((gname, rows))
    return out


def _raw_group(table: Table, shown: str) -> str:
    """The raw group value of a block whose display name is ``shown``."""
    raws = list(dict.fromkeys(table.values.index.get_level_values(0)))
    return raws[[b for b, _ in table.blocks].index(shown)]


def _row_header(spec: TableSpec) -> str:
    return "Method" if spec.rows in ("row", "method") else spec.rows.replace("_", " ").capitalize()


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
    "⊙": r"\odot",
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
            shown = [(rf"\textbf{{{t}}}" if b else t).replace("±", r"$\pm$") if t else MISSING_LATEX for t, b in cells]
            lines.append(" & ".join([latex_escape(name), *shown]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per (group, row): key columns, raw group/row values, full-precision values, ``n``.

    ``n`` is the largest per-metric sample count of the row (per-metric counts: ``table.counts``).
    """
    values = table.values.copy()
    values["n"] = table.counts.max(axis=1) if table.columns else 0
    if table.ci is not None:  # the 95 % bootstrap half-width of each metric, after the values
        for m in table.columns:
            values[f"{m}__ci95"] = table.ci[m].to_numpy()
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
