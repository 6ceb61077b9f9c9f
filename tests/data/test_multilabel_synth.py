"""The embedded multi-label data (``synth_multilabel``) and what multi-label runs rest on: each event
known, per-label ground truth, contaminations that scale every event, the masked BCE the classifier
trains with, and the class-stratified ``--limit`` on multi-hot labels. Nothing here trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.groundtruth import batch_truth, ideal_mask
from audiobench.contracts.registry import CONTAMINATIONS, DATASETS
from audiobench.data.sampling import select_clips
from audiobench.metrics.multilabel import masked_bce
from audiobench.models.base import training_loss

SMALL = {"classes": 5, "clips": 40, "events": [1, 3], "seconds": 0.5}


@pytest.fixture(scope="module")
def test_split():
    return DATASETS.get("synth_multilabel")(SMALL).load("test", 8000)


def test_every_event_is_known_and_labelled(test_split) -> None:
    clips = test_split
    n, k, length = clips.events.shape
    assert (n, k, length) == (8, 3, 4000) and clips.labels.shape == (8, 5)
    present = clips.event_labels >= 0
    assert bool((present.sum(1) >= 1).all()) and bool((present.sum(1) <= 3).all())
    for i in range(n):  # the labels are exactly the events' classes, each class at most once per clip
        classes = clips.event_labels[i][present[i]].tolist()
        assert len(set(classes)) == len(classes)
        assert sorted(classes) == clips.labels[i].nonzero().flatten().tolist()
    assert bool((clips.events[~present] == 0).all())  # an empty slot holds no signal
    torch.testing.assert_close(clips.targets, clips.events.sum(1))
    background = clips.waveforms - clips.targets  # the pink floor, 30 dB below unit-RMS events
    assert float(background.pow(2).mean() / clips.targets.pow(2).mean()) < 10 ** (-20 / 10)
    assert torch.allclose(clips.waveforms.abs().amax(1), torch.full((n,), 0.9))


def test_items_do_not_depend_on_the_split_or_the_load() -> None:
    ds = DATASETS.get("synth_multilabel")(SMALL)
    splits = {s: ds.load(s, 8000) for s in ("train", "valid", "test")}
    ids = [set(c.sample_ids) for c in splits.values()]
    assert sum(map(len, ids)) == 40 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = DATASETS.get("synth_multilabel")({**SMALL, "clips": 60}).load("train", 8000)  # more clips: item i unchanged
    first = splits["train"]
    assert again.sample_ids[:5] == first.sample_ids[:5]
    torch.testing.assert_close(again.waveforms[:5], first.waveforms[:5], rtol=0, atol=0)


def test_bad_settings_are_one_line_errors() -> None:
    for bad, words in (({"events": [0, 2]}, "1 <= fewest"), ({"events": [2, 6]}, "most <= classes"),
                       ({"level_db": [0, -6]}, "level_db"), ({"clips": 10, "splits": [0.9, 0.05, 0.05]}, "empty")):
        with pytest.raises(ValueError, match=words):
            DATASETS.get("synth_multilabel")({**SMALL, **bad})


@pytest.mark.parametrize("condition", [{"name": "white_noise", "snr_db": 5}, {"name": "mixture", "snr_db": 3}])
def test_contaminations_scale_every_event_with_the_clip(test_split, condition: dict) -> None:
    pool = DATASETS.get("synth_multilabel")(SMALL).load("train", 8000)
    c = CONTAMINATIONS.get(condition["name"])({k: v for k, v in condition.items() if k != "name"})
    out = c.apply(test_split.subset(slice(None)), pool, seed=0)
    torch.testing.assert_close(out.targets, out.events.sum(1), rtol=1e-5, atol=1e-6)
    ratio = out.events.flatten(1).norm(dim=1) / test_split.events.flatten(1).norm(dim=1)  # one factor per clip
    per_event = out.events.norm(dim=2) / test_split.events.norm(dim=2).clamp_min(1e-12)
    present = test_split.event_labels >= 0
    torch.testing.assert_close(per_event[present], ratio[:, None].expand_as(per_event)[present], rtol=1e-4, atol=1e-6)


def test_the_ground_truth_of_a_label_is_its_own_event() -> None:
    """Known answer: event A (class 2) fills the first half of the clip, event B (class 0) the second;
    explaining class 2 localises A against B and the floor, class 0 B against A, and a class with no
    event has nothing to localise."""
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=32))
    t = torch.arange(8000) / 8000
    a = torch.where(t < 0.5, torch.sin(2 * torch.pi * 500 * t), 0.0)
    b = torch.where(t >= 0.5, torch.sin(2 * torch.pi * 2000 * t), 0.0)
    floor = 1e-3 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    events = torch.stack([a, b, torch.zeros(8000)])[None]  # [1, 3, L]
    labels = torch.tensor([[2, 0, -1]])
    wave = (a + b + floor)[None]
    domain = Stft2Mel()
    rep = domain.represent(frontend, wave)
    truth = batch_truth(domain, frontend, rep, a[None] + b[None], floor[None], events, labels)
    rows = truth.subset(torch.tensor([0, 0, 0])).for_labels(torch.tensor([2, 0, 4]))
    torch.testing.assert_close(rows.target, torch.stack([a, b, torch.zeros(8000)]))
    torch.testing.assert_close(rows.target + rows.contaminant, wave.expand(3, -1))
    torch.testing.assert_close(rows.ideal[0:1], ideal_mask(domain, frontend, a[None], (b + floor)[None]))
    frames = rows.ideal.shape[2]
    first, second = rows.ideal[:, 0, : frames // 2 - 2].sum(dim=(1, 2)), rows.ideal[:, 0, frames // 2 + 2 :].sum(dim=(1, 2))
    assert first[0] > 0 and second[0] == 0 and first[1] == 0 and second[1] > 0  # each label's own half
    assert float(rows.ideal[2].sum()) == 0.0
    single = batch_truth(domain, frontend, rep, a[None] + b[None], floor[None])  # single-label data: unchanged
    assert single.for_labels(torch.tensor([1])) is single
    with pytest.raises(ValueError, match="one class per row"):
        truth.for_labels(torch.tensor([0, 1]))


def test_the_classifier_loss_leaves_unknown_labels_out() -> None:
    """BCE over the known (clip, label) pairs only: equal to masked_bce and to a hand computation;
    a label changed where it is unknown changes nothing (OpenMIC's unannotated pairs)."""
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(6, 4, generator=g)
    labels = (torch.rand(6, 4, generator=g) > 0.5).float()
    mask = torch.rand(6, 4, generator=g) > 0.3
    loss = training_loss(scores, labels, "sigmoid", mask)
    p = scores.sigmoid()
    by_hand = -(labels * p.log() + (1 - labels) * (1 - p).log())[mask].mean()
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(loss, masked_bce(scores, labels, mask))
    flipped = torch.where(mask, labels, 1 - labels)
    torch.testing.assert_close(training_loss(scores, flipped, "sigmoid", mask), loss, rtol=0, atol=0)
    torch.testing.assert_close(training_loss(scores, labels, "sigmoid"), F.binary_cross_entropy_with_logits(scores, labels))


def test_limit_stratifies_multi_hot_labels(test_split) -> None:
    chosen, record = select_clips(test_split, 4, seed=0)
    assert len(chosen) == 4 and "first labelled class" in record["reason"]
    assert chosen.events.shape[0] == 4 and chosen.labels.shape == (4, 5)
    again, _ = select_clips(test_split, 4, seed=0)
    assert again.sample_ids == chosen.sample_ids
