"""``audiobench table RUN_DIR --compare l2i_tasl``: our L2I interpreter fidelity beside the L2I
journal's Table IV (SONYC-UST columns), on a faked finished run (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audiobench.cli import main
from audiobench.kernel.errors import AudiobenchError
from audiobench.tables import compare
from audiobench.tables.compare import REFERENCES, l2i_system_key, render_comparison

DATASET = "Synth multi-label (embedded events)"
FRAME = pd.DataFrame([
    {"row": "L2I, RT=0.4", "domain": "mel", "contamination": "none", "clips": 12,
     "macro-AUPRC": 0.8123, "micro-AUPRC": 0.7456, "max-F1": 0.6789},
    {"row": "L2I w/ MAX, RT=0.4", "domain": "mel", "contamination": "none", "clips": 11,
     "macro-AUPRC": 0.5012, "micro-AUPRC": 0.6034, "max-F1": float("nan")},
])


def fake_run(tmp_path: Path, output_kind: str = "sigmoid") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"schema": 2, "output_kind": output_kind, "classes": ["a", "b", "c"],
                "suite": {"name": "fake", "dataset": {"name": "synth_multilabel"}},
                "display": {"domain": {"mel": "Mel"}, "contamination": {"none": "Clean (in-domain)"},
                            "dataset": {"synth_multilabel": DATASET}}}
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run


@pytest.fixture
def run_with_rows(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr("audiobench.tables.fidelity.fidelity_frame", lambda run_dir, manifest: FRAME)
    return fake_run(tmp_path)


def cells(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()[4:] if line.startswith("|")]


def test_our_rows_sit_beside_the_matching_published_system(run_with_rows: Path) -> None:
    (key, text), = render_comparison(run_with_rows, "l2i_tasl").items()
    assert key == "fidelity__vs__l2i_tasl-4"
    rows = {r[2] if r[2] != "–" else r[7]: r for r in cells(text)}
    assert rows["L2I, RT=0.4"] == ["Mel", "Clean (in-domain)", "L2I, RT=0.4", "12", "0.812", "0.746", "0.679",
                                   "L2I w/ ATT", "0.909 ± 0.011", "0.917 ± 0.008"]
    assert rows["L2I w/ MAX, RT=0.4"] == ["Mel", "Clean (in-domain)", "L2I w/ MAX, RT=0.4", "11", "0.501", "0.603", "–",
                                          "L2I w/ MAX", "0.866 ± 0.014", "0.913 ± 0.012"]
    assert rows["FLINT"][:7] == ["–"] * 7 and rows["FLINT"][8:] == ["0.816 ± 0.013", "0.907 ± 0.011"]
    assert rows["VIBI"][8:] == ["0.608 ± 0.027", "0.575 ± 0.019"]
    assert len(rows) == 4  # ATT and MAX taken by our rows: not repeated as published-only lines
    # the caption says what differs
    caption = text.splitlines()[0]
    assert caption.startswith("Table: ")
    for caveat in ("Tackling Interpretability in Audio Classification Networks with Non-negative Matrix Factorization",
                   "Table 4", f"our data are {DATASET}", "SONYC-UST", "decided labels", "at least one",
                   "scikit-learn's step-wise average precision", "11-threshold trapezoid", "not a reproduction"):
        assert caveat in caption, caveat


def test_table_4_spelled_out_latex_and_csv(run_with_rows: Path) -> None:
    assert render_comparison(run_with_rows, "l2i_tasl:4") == render_comparison(run_with_rows, "l2i_tasl")
    (latex,) = render_comparison(run_with_rows, "l2i_tasl", "latex").values()
    assert latex.startswith("% Interpreter fidelity") and "\\toprule" in latex and "0.909 ± 0.011" in latex
    (csv,) = render_comparison(run_with_rows, "l2i_tasl:4", "csv").values()
    lines = csv.splitlines()
    assert lines[0].startswith("Domain,Condition,Method,Clips,macro-AUPRC")
    assert "L2I w/ MAX,0.866 ± 0.014,0.913 ± 0.012" in lines[2]


def test_other_tables_and_runs_without_interpreter_rows_are_one_line_errors(tmp_path: Path, capsys) -> None:
    run = fake_run(tmp_path, output_kind="softmax")  # the real fidelity_frame: not multi-label, so empty
    with pytest.raises(AudiobenchError, match=r"^run .* has no multi-label interpreter rows to compare with l2i_tasl "
                                              r"\(a sigmoid run with L2I rows\)$"):
        render_comparison(run, "l2i_tasl")
    with pytest.raises(AudiobenchError, match="Table 4"):
        render_comparison(run, "l2i_tasl:5")
    assert main(["table", str(run), "--compare", "l2i_tasl"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no multi-label interpreter rows" in err and len(err.splitlines()) == 1


def test_the_cli_prints_it_and_names_it_in_help(run_with_rows: Path, capsys) -> None:
    assert main(["table", str(run_with_rows), "--compare", "l2i_tasl"]) == 0
    assert "0.917 ± 0.008" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["table", "--help"])
    assert "l2i_tasl" in capsys.readouterr().out


def test_row_labels_map_to_the_journals_systems() -> None:
    assert "l2i_tasl" in REFERENCES and "lmac_icml2024" in REFERENCES
    assert l2i_system_key("L2I, RT=0.4") == l2i_system_key("L2I w/ ATT") == compare.norm_label("L2I w/ ATT")
    assert l2i_system_key("L2I w/ MAX, RT=0.60") == compare.norm_label("L2I w/ MAX")
    assert l2i_system_key("L-MAC") == compare.norm_label("L-MAC")
