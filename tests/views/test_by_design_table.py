"""The L2I journal's Table VIII layout (audiobench/tables/by_design.py) from fake run manifests: rows, order,
measure by output kind, and the refusals that keep rows comparable."""

from __future__ import annotations

import json

import pytest

from audiobench.kernel.errors import AudiobenchError
from audiobench.tables.by_design import by_design_rows, render, write_by_design


def _bd(prediction: str, g: float, f: float, kind: str = "sigmoid", seed: int = 0) -> dict:
    scores = {"g": {"accuracy": 0.9, "macro_auprc": g}, "f": {"accuracy": 0.8, "macro_auprc": f}}
    if kind == "softmax":
        scores = {"g": {"accuracy": g}, "f": {"accuracy": f}}
    return {"suite": {"name": f"bd_{prediction}", "dataset": {"name": "synth_multilabel"}, "split": "test"},
            "seed": seed, "output_kind": kind,
            "classifier": {"hash": f"h{prediction}", "model": {"name": "l2i_bd", "prediction": prediction},
                           "by_design": {"test": scores, "valid": {"g": {"accuracy": 0.1, "macro_auprc": 0.1}}}}}


def _posthoc_suite(kind: str = "sigmoid") -> dict:
    return {"suite": {"name": "synth_multilabel", "dataset": {"name": "synth_multilabel"}, "split": "test"},
            "seed": 0, "output_kind": kind,
            "classifier": {"hash": "c", "model": {"name": "cnn14"}, "accuracy": {"test": 0.95},
                           "macro_auprc": {"test": 0.916}}}


def test_rows_order_and_values_multilabel() -> None:
    table, caption = by_design_rows([_bd("g", 0.70, 0.5), _posthoc_suite(), _bd("posthoc", 0.80, 0.85), _bd("f", 0.88, 0.9)])
    ours = table[table["model"] != "published only"]
    assert list(ours["system"]) == ["L2I BD w/ ATT", "L2I-PostHoc", "L2I BD-NoPred", "BASE-f",
                                    "BASE-f (synth_multilabel)"]
    assert list(ours["macro-AUPRC"]) == [0.88, 0.80, 0.70, 0.85, 0.916]  # test split, g (f for BASE-f)
    # the journal's SONYC-UST column beside ours (Table VIII as printed), and its systems not built here
    assert list(ours["journal, SONYC-UST"]) == [0.581, 0.567, 0.563, 0.601, 0.601]
    assert list(table.loc[table["model"] == "published only", "system"]) == ["APNet", "Unsupervised-NMF", "TD-NMF", "FLINT"]
    assert "Table VIII" in caption and "seed 0" in caption and "SONYC-UST" in caption
    text = render(table, caption)
    assert "| L2I BD w/ ATT | 0.880 | 0.581 | hf | bd_f |" in text and "| FLINT | - | 0.556 | published only | - |" in text


def test_softmax_reads_accuracy_in_percent() -> None:
    table, _ = by_design_rows([_bd("f", 0.705, 0.8, "softmax"), _bd("posthoc", 0.654, 0.825, "softmax")])
    assert table.columns[1] == "accuracy (%)" and table.columns[2] == "journal, ESC-50 (%)"
    ours = table[table["model"] != "published only"]
    assert list(ours["accuracy (%)"]) == pytest.approx([70.5, 65.4, 82.5])
    assert list(ours["journal, ESC-50 (%)"]) == [70.1, 65.4, 82.5]


def test_refuses_incomparable_or_repeated_runs(tmp_path) -> None:
    with pytest.raises(AudiobenchError, match="one dataset, split, seed"):
        by_design_rows([_bd("f", 0.8, 0.8), _bd("g", 0.7, 0.7, seed=1)])
    with pytest.raises(AudiobenchError, match="two runs give the row"):
        by_design_rows([_bd("f", 0.8, 0.8), _bd("f", 0.7, 0.7)])
    with pytest.raises(AudiobenchError, match="no manifest"):
        write_by_design([tmp_path])
    (tmp_path / "manifest.json").write_text(json.dumps(_bd("f", 0.8, 0.8)))
    out = tmp_path / "t.md"
    assert write_by_design([tmp_path], out) == out.read_text()


def test_a_variant_of_the_losses_reduction_is_its_own_named_row() -> None:
    recipe = _bd("f", 0.75, 0.8)
    recipe["classifier"]["model"]["loss_reduction"] = "recipe"
    table, _ = by_design_rows([_bd("f", 0.65, 0.67), recipe])
    ours = table[table["model"] != "published only"]
    assert list(ours["system"]) == ["L2I BD w/ ATT", "L2I BD w/ ATT (recipe reduction)"]
    assert list(ours["macro-AUPRC"]) == [0.65, 0.75] and list(ours["journal, SONYC-UST"]) == [0.581, 0.581]


def test_a_partial_set_of_runs_lists_each_row_once_and_the_command_fails_in_one_line(tmp_path, capsys) -> None:
    from audiobench.tables.by_design import main

    table, _ = by_design_rows([_bd("f", 0.65, 0.67)])
    assert table["system"].is_unique and list(table["system"])[0] == "L2I BD w/ ATT" and len(table) == 8
    assert table.loc[table["system"] == "L2I-PostHoc", "model"].item() == "published only"
    with pytest.raises(AudiobenchError, match=r"two runs give the row 'L2I BD w/ ATT': models hf and hf"):
        by_design_rows([_bd("f", 0.8, 0.8), _bd("f", 0.7, 0.7)])
    assert main([str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no manifest.json" in err
