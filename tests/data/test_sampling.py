"""``--limit`` draws a seeded, class-stratified sample that does not depend on file order, and records it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from audiobench.data.base import ClipSet
from audiobench.data.sampling import select_clips
from audiobench.harness.runner import run_suite
from audiobench.store.run_dir import load_run


def _sorted_by_class(sizes: list[int]) -> ClipSet:
    """Clips in file order of a folder whose names start with the label: every clip of class 0 first."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    ids = [f"{'abc'[c]}_{i:03d}" for c, n in enumerate(sizes) for i in range(n)]
    return ClipSet(torch.randn(len(ids), 16), labels, ids, ["a", "b", "c"], 8000)


def test_limit_is_stratified_seeded_and_independent_of_file_order() -> None:
    clips = _sorted_by_class([20, 20, 20])
    chosen, record = select_clips(clips, 6, seed=0)
    assert Counter(chosen.labels.tolist()) == {0: 2, 1: 2, 2: 2}
    assert record["per_class"] == {"a": 2, "b": 2, "c": 2} and record["n"] == 6 and record["of"] == 60
    assert record["sample_ids"] == chosen.sample_ids and "class-stratified" in record["reason"]
    # not the first files of each class, and the same choice whatever the file order
    assert sorted(chosen.sample_ids) != ["a_000", "a_001", "b_000", "b_001", "c_000", "c_001"]
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(5))
    again, _ = select_clips(clips.subset(perm), 6, seed=0)
    assert set(again.sample_ids) == set(chosen.sample_ids)
    # rows stay aligned: each chosen id keeps its own waveform and label
    pos = {sid: i for i, sid in enumerate(clips.sample_ids)}
    rows = [pos[s] for s in again.sample_ids]
    torch.testing.assert_close(again.waveforms, clips.waveforms[rows])
    assert again.labels.tolist() == clips.labels[rows].tolist()
    # another seed draws other clips (same shares)
    other, _ = select_clips(clips, 6, seed=1)
    assert set(other.sample_ids) != set(chosen.sample_ids) and Counter(other.labels.tolist()) == {0: 2, 1: 2, 2: 2}


def test_uneven_classes_small_and_large_limits() -> None:
    clips = _sorted_by_class([30, 10, 5])
    assert Counter(select_clips(clips, 9, 0)[0].labels.tolist()) == {0: 6, 1: 2, 2: 1}
    two, record = select_clips(clips, 2, 0)
    assert len(two) == 2 and len(set(two.labels.tolist())) == 2 and sum(record["per_class"].values()) == 2
    everything, record = select_clips(clips, 100, 0)
    assert everything.sample_ids == clips.sample_ids and record["n"] == record["of"] == 45  # all, order kept
    assert select_clips(clips, None, 0)[0] is clips
    with pytest.raises(ValueError, match="at least 1"):
        select_clips(clips, 0, 0)


def test_run_limit_covers_every_class_and_is_recorded(write_suite, tmp_path: Path) -> None:
    suite = write_suite({"methods": ["random"], "domains": ["mel"], "contaminations": ["none"], "metrics": ["ai"]})
    result = run_suite(suite, tmp_path / "lim", limit=3, progress=False)
    frame = load_run(tmp_path / "lim")
    truth = frame[frame.metric == "y_true"]
    assert sorted(truth.value.astype(int)) == [0, 1, 2]  # one clip of each of the 3 classes, not the first 3 files
    selection = result.manifest["selection"]
    assert selection["n"] == 3 and selection["of"] == 6 and selection["per_class"] == {k: 1 for k in selection["per_class"]}
    assert sorted(truth.sample_id) == sorted(selection["sample_ids"])
