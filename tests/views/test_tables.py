"""Tests of audiobench.tables on small hand-computed frames."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from audiobench.kernel.errors import AudiobenchError
from audiobench.tables import (
    Table,
    TableSpec,
    build_tables,
    latex_escape,
    to_csv,
    to_latex,
    to_markdown,
    write_tables,
)
from tests.paths import ROOT

REPO = ROOT

METRIC_INFO = {
    "AI": {"display": "AI", "higher_is_better": True, "aggregation": "mean"},
    "AD": {"display": "AD", "higher_is_better": False, "aggregation": "median"},
    "FF": {"display": "FF", "higher_is_better": None, "aggregation": "mean"},
}

# (domain, label) -> metric -> per-sample values. Hand-computed aggregates in the comments.
CELLS = {
    ("stft2mel", "IG"): {"AI": [0.2, 0.4, 0.9], "AD": [0.1, 0.5, 0.3], "FF": [1, 2, 3]},  # .5, .3, 2
    ("stft2mel", "L-MAC"): {"AI": [0.6, 0.8], "AD": [0.4, 0.0, 0.2, 0.9], "FF": [5]},  # .7, .3, 5
    ("stft2mel", "Saliency"): {"AI": [0.1], "AD": [0.6, 0.8]},  # .1, .7, FF missing
    ("mel", "IG"): {"AI": [0.3], "AD": [0.2], "FF": [1]},  # .3, .2, 1
    ("mel", "L-MAC"): {"AI": [0.2, 0.4, 0.0], "AD": [0.05], "FF": [9]},  # .2, .05, 9
    ("mel", "Saliency"): {"AI": [0.9, 0.1, 0.2], "AD": [0.7, 0.1, 0.3], "FF": [2]},  # .4, .3, 2
}


def long_frame(cells=CELLS, dataset="synth", contamination="mixture_3db", extra=True) -> pd.DataFrame:
    """The long per-sample frame, plus p_orig/pred_orig rows that tables must not show."""
    rows = []
    for (domain, label), metrics in cells.items():
        if extra:
            metrics = {**metrics, "p_orig": [0.9], "pred_orig": [3.0]}
        for metric, values in metrics.items():
            for sid, value in enumerate(values):
                rows.append(
                    {
                        "dataset": dataset,
                        "model": "cnn14",
                        "domain": domain,
                        "contamination": contamination,
                        "method": label.lower(),
                        "row": label,
                        "sample_id": sid,
                        "metric": metric,
                        "value": float(value),
                    }
                )
    return pd.DataFrame(rows)


def one_table(df: pd.DataFrame | None = None, **kw) -> Table:
    tables = build_tables(long_frame() if df is None else df, METRIC_INFO, **kw)
    assert len(tables) == 1
    return tables[0]


def block(table: Table, name: str) -> pd.DataFrame:
    return dict(table.blocks)[name]


def bold_cells(md: str) -> set[tuple[str, str]]:
    """(row label, header) of each **bold** cell of a grouped markdown table."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = set()
    group = ""
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        group = cells[0] or group
        for h, c in zip(header[2:], cells[2:], strict=True):
            if c.startswith("**"):
                out.add((f"{group}/{cells[1]}", h))
    return out


# -- aggregation ------------------------------------------------------------------------------


def test_mean_and_median_aggregation_are_hand_computed():
    t = one_table(order={"domain": ["stft2mel", "mel"]})
    s, m = block(t, "stft2mel"), block(t, "mel")
    assert s.loc["IG", "AI"] == pytest.approx(0.5)  # mean(.2, .4, .9)
    assert s.loc["IG", "AD"] == pytest.approx(0.3)  # median(.1, .5, .3)
    assert s.loc["L-MAC", "AD"] == pytest.approx(0.3)  # median of an even count: (.2 + .4) / 2
    assert s.loc["L-MAC", "FF"] == pytest.approx(5.0)
    assert m.loc["Saliency", "AI"] == pytest.approx(0.4)  # mean(.9, .1, .2)
    assert m.loc["Saliency", "AD"] == pytest.approx(0.3)  # median(.7, .1, .3)
    assert pd.isna(s.loc["Saliency", "FF"])
    assert t.counts.loc[("stft2mel", "L-MAC"), "AD"] == 4
    assert t.counts.loc[("stft2mel", "Saliency"), "FF"] == 0


def test_aux_metrics_excluded_unless_asked():
    t = one_table()
    assert t.columns == ["AI", "AD", "FF"]  # metric_info order; p_orig/pred_orig not in metric_info
    assert "p_orig" not in to_markdown(t) and "p_orig" not in to_csv(t)

    info = {**METRIC_INFO, "p_orig": {"display": "p", "aggregation": "mean"}}
    t2 = build_tables(long_frame(), info, TableSpec(metrics=("AD", "p_orig")))[0]
    assert t2.columns == ["AD", "p_orig"]
    assert t2.headers == ["AD↓", "p"]
    assert block(t2, "mel").loc["IG", "p_orig"] == pytest.approx(0.9)

    # metrics in metric_info but absent from the frame are left out when spec.metrics is None
    t3 = build_tables(long_frame(), {**METRIC_INFO, "ZZ": {"display": "ZZ"}})[0]
    assert t3.columns == ["AI", "AD", "FF"]

    with pytest.raises(AudiobenchError, match="unknown metric 'AJ'.*AI"):
        build_tables(long_frame(), METRIC_INFO, TableSpec(metrics=("AJ",)))


def test_bad_aggregation_and_missing_columns_raise():
    with pytest.raises(AudiobenchError, match="aggregation"):
        build_tables(long_frame(), {"AI": {"aggregation": "mode"}})
    with pytest.raises(AudiobenchError, match="lacks column"):
        build_tables(long_frame().drop(columns="domain"), METRIC_INFO)


# -- bold -------------------------------------------------------------------------------------


def test_bold_max_for_up_min_for_down_per_block_ties_and_none():
    md = to_markdown(one_table(order={"domain": ["stft2mel", "mel"]}))
    assert bold_cells(md) == {
        ("stft2mel/L-MAC", "AI↑"),  # .7 is the max of .5/.7/.1
        ("stft2mel/IG", "AD↓"),  # .3 ties with L-MAC's .3: both bold
        ("stft2mel/L-MAC", "AD↓"),
        ("mel/Saliency", "AI↑"),  # per block: .4 in mel, though stft2mel has .7
        ("mel/L-MAC", "AD↓"),  # .05
    }  # FF (higher_is_better None) is never bold
    assert md.count("**") == 2 * 5


def test_bold_compares_rounded_values():
    cells = {("mel", "A"): {"AI": [0.421]}, ("mel", "B"): {"AI": [0.419]}, ("mel", "C"): {"AI": [0.3]}}
    df = long_frame(cells)
    md2 = to_markdown(one_table(df))
    assert "**0.42**" in md2 and md2.count("**0.42**") == 2  # both print as 0.42
    md3 = to_markdown(one_table(df, spec=TableSpec(precision=3)))
    assert "**0.421**" in md3 and "**0.419**" not in md3


def test_single_row_block_is_not_bold():
    cells = {("mel", "A"): {"AI": [0.5], "AD": [0.1]}, ("stft2mel", "A"): {"AI": [0.1]}}
    cells[("stft2mel", "B")] = {"AI": [0.2]}
    t = one_table(long_frame(cells))
    assert bold_cells(to_markdown(t)) == {("stft2mel/B", "AI↑")}
    assert r"\textbf" not in to_latex(one_table(long_frame({("mel", "A"): {"AI": [0.5]}})))


# -- order, display, split ----------------------------------------------------------------------


def test_rows_and_groups_follow_order_then_first_appearance():
    order = {"domain": ["mel", "stft2mel"], "row": ["Saliency", "IG"]}
    display = {"domain": {"stft2mel": "STFT→Mel", "mel": "Mel"}, "row": {"IG": "Integrated Gradients"}}
    t = one_table(order=order, display=display)
    assert [g for g, _ in t.blocks] == ["Mel", "STFT→Mel"]
    assert list(block(t, "Mel").index) == ["Saliency", "Integrated Gradients", "L-MAC"]
    assert list(t.values.index) == [
        ("mel", "Saliency"),
        ("mel", "IG"),
        ("mel", "L-MAC"),
        ("stft2mel", "Saliency"),
        ("stft2mel", "IG"),
        ("stft2mel", "L-MAC"),
    ]
    # default: order of first appearance
    t0 = one_table()
    assert [g for g, _ in t0.blocks] == ["stft2mel", "mel"]
    assert list(block(t0, "mel").index) == ["IG", "L-MAC", "Saliency"]


def test_one_table_per_key_in_order_with_captions_and_slugs():
    df = pd.concat(
        [
            long_frame(dataset="synth", contamination="mixture_3db"),
            long_frame(dataset="esc50", contamination="clean"),
            long_frame(dataset="synth", contamination="clean"),
        ]
    )
    display = {"contamination": {"mixture_3db": "Mixture 3 dB", "clean": "Clean"}}
    order = {"dataset": ["synth", "esc50"], "contamination": ["clean"]}
    tables = build_tables(df, METRIC_INFO, order=order, display=display)
    assert [t.key for t in tables] == [
        {"dataset": "synth", "contamination": "clean"},
        {"dataset": "synth", "contamination": "mixture_3db"},
        {"dataset": "esc50", "contamination": "clean"},
    ]
    assert [t.slug() for t in tables] == [
        "main__synth__clean",
        "main__synth__mixture_3db",
        "main__esc50__clean",
    ]
    assert tables[1].caption == "dataset=synth, contamination=Mixture 3 dB"
    assert block(tables[2], "stft2mel").loc["IG", "AI"] == pytest.approx(0.5)
    assert tables[0].counts.loc[("stft2mel", "IG"), "AI"] == 3  # not mixed with the other tables

    custom = build_tables(df, METRIC_INFO, caption=lambda k: f"Results on {k['dataset']}")
    assert custom[0].caption == "Results on synth"
    bare = Table(TableSpec.model_construct(name="x/y"),  # a suite refuses such a name; slug() is safe anyway
                  {"d": "a b", "e": "ü"}, "", [], [], pd.DataFrame())
    assert bare.slug() == "x-y__a-b__none"  # file-name-safe


def test_no_group_no_per():
    t = one_table(spec=TableSpec(name="flat", group=None, per=(), metrics=("AI",)))
    assert t.key == {} and t.caption == "flat" and t.slug() == "flat"
    assert [g for g, _ in t.blocks] == [""]
    # mean over both domains: IG (.2 .4 .9 .3), L-MAC (.6 .8 .2 .4 0), Saliency (.1 .9 .1 .2)
    b = t.blocks[0][1]
    assert b.loc["IG", "AI"] == pytest.approx(0.45)
    assert b.loc["L-MAC", "AI"] == pytest.approx(0.4)
    assert b.loc["Saliency", "AI"] == pytest.approx(0.325)
    assert r"\multicolumn" not in to_latex(t)
    md = to_markdown(t)
    assert "Domain" not in md and "| **0.45** |" in md
    frame = pd.read_csv(io.StringIO(to_csv(t)))
    assert list(frame.columns) == ["row", "AI", "n"]


# -- rendering ----------------------------------------------------------------------------------


def test_missing_cell_prints_dash_never_nan():
    t = one_table()
    md, tex, csv = to_markdown(t), to_latex(t), to_csv(t)
    for text in (md, tex, csv):
        assert "nan" not in text.lower()
    sal = next(ln for ln in md.splitlines() if "Saliency" in ln and "0.70" in ln)
    assert sal.rstrip("|").split("|")[-1].strip() == "–"
    assert re.search(r"^Saliency & 0\.10 & 0\.70 & -- \\\\$", tex, re.M)
    row = next(ln for ln in csv.splitlines() if "stft2mel,Saliency" in ln)
    assert row.split(",")[-2] == ""  # FF empty


def test_negative_zero_is_not_printed():
    t = one_table(long_frame({("mel", "A"): {"AI": [-0.001]}, ("mel", "B"): {"AI": [0.5]}}))
    md = to_markdown(t)
    assert "-0.00" not in md and re.search(r"\| +0\.00 \|", md)


def test_markdown_parses_back():
    md = to_markdown(one_table(display={"domain": {"stft2mel": "STFT→Mel"}}))
    assert md.startswith("Table: dataset=synth, contamination=mixture_3db\n\n")
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 6
    widths = {len(ln.split("|")) for ln in lines}
    assert widths == {len(["", "Domain", "Method", "AI↑", "AD↓", "FF", ""])}
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Domain", "Method", "AI↑", "AD↓", "FF"]
    first_col = [ln.strip("|").split("|")[0].strip() for ln in lines[2:]]
    assert first_col == ["STFT→Mel", "", "", "mel", "", ""]


def test_markdown_escapes_pipes():
    t = one_table(long_frame({("mel", "a|b"): {"AI": [0.1]}, ("mel", "c"): {"AI": [0.2]}}))
    lines = [ln for ln in to_markdown(t).splitlines() if ln.startswith("|")]
    assert len({len(re.split(r"(?<!\\)\|", ln)) for ln in lines}) == 1


NASTY = r"L-MAC, FT, λg=16 & 50%_x #1 $a$ {b} ~c^d \e"


def nasty_table() -> Table:
    cells = {
        ("stft2mel", NASTY): {"AI": [0.5], "AD": [0.2]},
        ("stft2mel", "IG"): {"AI": [0.4], "AD": [0.3], "FF": [1]},
        ("mel_x", "IG"): {"AI": [0.1], "AD": [0.2]},
    }
    display = {"domain": {"stft2mel": "STFT→Mel"}, "contamination": {"mixture_3db": "Mixture 3 dB & 50%"}}
    return one_table(long_frame(cells), display=display)


def _braces_balanced(tex: str) -> bool:
    depth = 0
    for tok in re.findall(r"\\[{}]|[{}]", tex.replace("\\\\", "")):
        if tok in "{}":
            depth += 1 if tok == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def test_latex_structure_and_escaping():
    t = nasty_table()
    tex = to_latex(t)
    lines = tex.splitlines()
    assert lines[0] == r"% requires \usepackage{booktabs}"
    for needed in (r"\begin{table}", r"\centering", r"\toprule", r"\bottomrule", r"\end{table}"):
        assert needed in tex
    assert r"\caption{dataset=synth, contamination=Mixture 3 dB \& 50\%}" in tex
    assert r"\label{tab:main__synth__mixture_3db}" in tex
    assert r"\begin{tabular}{lrrr}" in tex
    escaped = (
        r"L-MAC, FT, $\lambda$g=16 \& 50\%\_x \#1 \$a\$ \{b\} \textasciitilde{}c\textasciicircum{}d "
        r"\textbackslash{}e"
    )
    assert escaped in tex
    assert r"AI$\uparrow$ & AD$\downarrow$ & FF \\" in tex
    assert r"\multicolumn{4}{l}{\textit{STFT$\rightarrow$Mel}} \\" in tex
    assert r"\multicolumn{4}{l}{\textit{mel\_x}} \\" in tex
    assert r"& \textbf{0.50} & \textbf{0.20} & -- \\" in tex
    assert _braces_balanced(tex)
    assert tex.count(r"\midrule") == 2  # under the header (= before the first group), between groups
    assert not any(ch in tex for ch in "↑↓→λ–")
    data_rows = [ln for ln in lines if ln.endswith(r"\\") and not ln.startswith(r"\multicolumn")]
    assert len(data_rows) == 1 + 3
    for ln in data_rows:
        assert len(re.findall(r"(?<!\\)&", ln)) == len(t.columns)  # columns - 1, with the label column


def test_latex_escape_unicode():
    assert latex_escape("αΩ→x") == r"$\alpha \Omega \rightarrow$x"
    assert latex_escape("$λ") == r"\$$\lambda$"  # an escaped dollar never merges with math
    assert latex_escape("Βeta") == "Beta"  # Greek capital beta looks like B
    assert latex_escape("a–b") == "a--b"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _pdflatex() -> str:
    """pdflatex's path; in CI its absence fails the test (`make test` installs it: tools/ensure_latex.sh)."""
    path = shutil.which("pdflatex")
    if path is None:
        if _in_ci():
            pytest.fail("pdflatex not installed in CI: `make test` installs it (tools/ensure_latex.sh, as root)")
        pytest.skip("pdflatex not installed (`make latex` installs it as root; in CI this test fails)")
    return path


COMMITTED_TEX = sorted((ROOT / "results").glob("*/tables/*.tex"))


def _compile(tmp_path: Path, tables: list[str]) -> str:
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n%s\\end{document}\n"
    # each table on its own page: LaTeX holds at most 18 floats waiting for a place ("Too many unprocessed floats")
    (tmp_path / "doc.tex").write_text(doc % "\n\\clearpage\n".join(tables), encoding="utf-8")
    proc = subprocess.run(
        [_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    return (tmp_path / "doc.log").read_text(errors="replace")


@pytest.mark.latex
def test_latex_compiles(tmp_path):
    log = _compile(tmp_path, [to_latex(nasty_table())])
    assert "Missing character" not in log


@pytest.mark.latex
def test_committed_latex_tables_compile(tmp_path):
    assert len(COMMITTED_TEX) >= 4  # the quickstart's main and l2i tables, clean and mixture
    log = _compile(tmp_path, [p.read_text(encoding="utf-8") for p in COMMITTED_TEX])
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_latex_test_fails_in_ci_without_pdflatex(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pdflatex not installed in CI"):
        _pdflatex()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        _pdflatex()


def test_csv_is_machine_readable():
    t = one_table(long_frame({**CELLS, ("mel", "Third"): {"AI": [0.1, 0.2, 0.2]}}))
    frame = pd.read_csv(io.StringIO(to_csv(t)))
    assert list(frame.columns) == ["dataset", "contamination", "domain", "row", "AI", "AD", "FF", "n"]
    assert len(frame) == 7
    third = frame.set_index(["domain", "row"]).loc[("mel", "Third")]
    assert third["AI"] == pytest.approx(0.5 / 3, abs=1e-15)  # full precision, not 0.17
    assert pd.isna(third["AD"]) and third["n"] == 3
    sal = frame.set_index(["domain", "row"]).loc[("stft2mel", "Saliency")]
    assert sal["n"] == 2  # max over metrics of the per-metric sample counts (1, 2, 0)
    assert (frame["dataset"] == "synth").all()


def test_write_tables(tmp_path):
    df = pd.concat([long_frame(), long_frame(contamination="clean")])
    tables = build_tables(df, METRIC_INFO)
    paths = write_tables(tables, tmp_path / "out")
    assert [p.name for p in paths] == [
        f"main__synth__{c}{s}" for c in ("mixture_3db", "clean") for s in (".md", ".tex", ".csv")
    ]
    assert all(p.read_text(encoding="utf-8") for p in paths)
    with pytest.raises(AudiobenchError, match="several tables"):
        write_tables([tables[0], tables[0]], tmp_path / "dup")


def test_empty_frame_gives_no_tables():
    assert build_tables(long_frame().iloc[:0], METRIC_INFO) == []
    assert build_tables(long_frame(), {"other": {}}) == []


def test_import_does_not_pull_torch():
    code = "import sys, audiobench.tables; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
