"""Class-wise faithfulness of L2I rows on multi-label runs (the L2I journal's Fig. 2-3): medians per
explained class, worked by hand, and the files a sigmoid run gets (none for a softmax run)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audiobench.store.records import Manifest
from audiobench.tables.classwise import classwise_medians, write_classwise


def _frame() -> pd.DataFrame:
    rows = []
    # class 0 explained in three clips (ff 0.1, 0.5, 0.3: median 0.3), class 2 in two (0.2, 0.4: 0.3 as well,
    # the mean of the middle pair); the random removals 0.0 / 0.01
    for sid, target, ff, rnd in [("a", 0, 0.1, 0.0), ("b", 0, 0.5, 0.0), ("c", 0, 0.3, 0.01), ("a", 2, 0.2, 0.0),
                                 ("b", 2, 0.4, 0.01)]:
        for metric, value in (("ff_l2i", ff), ("ff_l2i_random", rnd), ("ai", 1.0)):
            rows.append({"contamination": "none", "domain": "mel", "row": "L2I, RT=0.4", "sample_id": sid,
                         "target": target, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def test_medians_per_explained_class_by_hand() -> None:
    got = classwise_medians(_frame(), ["tone", "chirp", "bell"]).set_index("class")
    assert list(got.index) == ["tone", "bell"] and list(got.clips) == [3, 2]
    assert abs(got.loc["tone", "ff_l2i"] - 0.3) < 1e-12 and abs(got.loc["bell", "ff_l2i"] - 0.3) < 1e-12
    assert got.loc["tone", "ff_l2i_random"] == 0.0 and abs(got.loc["bell", "ff_l2i_random"] - 0.005) < 1e-12


def test_a_sigmoid_run_gets_the_table_and_a_figure_a_softmax_run_none(tmp_path: Path) -> None:
    sigmoid = Manifest.model_validate({"output_kind": "sigmoid", "classes": ["tone", "chirp", "bell"]})
    written = write_classwise(_frame(), sigmoid, tmp_path / "tables", tmp_path / "plots")
    assert sorted(p.name for p in written) == ["classwise.csv", "classwise__none.pdf", "classwise__none.png"]
    assert pd.read_csv(tmp_path / "tables" / "classwise.csv")["class"].tolist() == ["tone", "bell"]
    softmax = Manifest.model_validate({"output_kind": "softmax", "classes": ["tone", "chirp", "bell"]})
    assert write_classwise(_frame(), softmax, tmp_path / "t2", tmp_path / "p2") == []
