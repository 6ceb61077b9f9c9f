"""Which methods a listener rates and how many share a MUSHRA page (issue 27: 16 sliders per page on the
quickstart; ITU-R BS.1534 keeps pages to about 12 conditions)."""

from __future__ import annotations

import pytest

from audiobench.kernel.errors import AudiobenchError
from audiobench.listen.trials import ANCHOR, REFERENCE, Trial, select_stimuli

ROWS = ["Saliency", "IG", "GradCAM", "L-MAC", "L-MAC, FT, λg=4"]


def _trials() -> list[Trial]:
    stimuli = {REFERENCE: "in.wav", ANCHOR: "random.wav", **{r: f"{r}.wav" for r in ROWS}}
    return [Trial(f"t{i:03d}", "none", "clean", f"c{i}", "dog", "in.wav", dict(stimuli)) for i in (1, 2)]


def test_no_choice_keeps_the_trials_and_their_ids() -> None:
    trials = _trials()
    assert select_stimuli(trials) == trials  # ratings already stored keep their trials


def test_chosen_rows_keep_reference_and_anchor_and_get_their_own_trial_ids() -> None:
    out = select_stimuli(_trials(), ["L-MAC", "IG"])
    assert [sorted(t.stimuli) for t in out] == [sorted([REFERENCE, ANCHOR, "L-MAC", "IG"])] * 2
    assert [t.sample_id for t in out] == ["c1", "c2"]
    assert all(t.id.startswith(("t001__", "t002__")) and t.id.endswith("p1") for t in out)
    other = select_stimuli(_trials(), ["L-MAC"])
    assert {t.id for t in out}.isdisjoint(t.id for t in other)  # another selection: other trials, no clash


def test_pages_split_each_clip_s_rows_in_table_order() -> None:
    out = select_stimuli(_trials(), per_page=2)
    assert len(out) == 6  # 2 clips x ceil(5 / 2) pages
    pages = [[n for n in t.stimuli if n not in (REFERENCE, ANCHOR)] for t in out[:3]]
    assert pages == [ROWS[0:2], ROWS[2:4], ROWS[4:5]]
    assert all({REFERENCE, ANCHOR} <= set(t.stimuli) for t in out)
    assert len({t.id for t in out}) == 6


def test_unknown_rows_and_bad_page_sizes_are_one_line_errors() -> None:
    with pytest.raises(AudiobenchError, match=r"--method: no listenable interpretations of 'LIME' in this run; rows: 'Saliency'"):
        select_stimuli(_trials(), ["LIME", "IG"])
    with pytest.raises(AudiobenchError, match="--per-page must be at least 1, got 0"):
        select_stimuli(_trials(), per_page=0)
