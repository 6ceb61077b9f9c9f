"""Localisation against ground truth: known answers on hand-made masks, sklearn as the AUC oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.groundtruth import batch_truth
from audiobench.contracts.registry import METRICS
from audiobench.contracts.targets import TargetParams
from audiobench.data.contaminations import Mixture
from audiobench.data.synth import SynthDataset as Synth
from audiobench.harness.engine import score_rows
from audiobench.methods.base import DomainModel
from audiobench.metrics.localisation import mass_fraction, roc_auc, si_sdr
from audiobench.models.cnn14 import Cnn14Spec

SR = 16000
GT = ["gt_mass", "gt_auc", "sisdr_target", "sisdr_contaminant"]


def test_roc_auc_equals_sklearn_with_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (5, 1, 12, 9), generator=gen).float() / 5  # many ties
    labels = (torch.rand(5, 1, 12, 9, generator=gen) < 0.3).float()
    ours = roc_auc(scores, labels).numpy()
    ref = [roc_auc_score(labels[i].flatten().numpy(), scores[i].flatten().numpy()) for i in range(5)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    halves = torch.rand(5, 1, 12, 9, generator=gen).half().float()  # float16 values: the histogram path
    halves[:, :, :3] = 0.5  # ties across classes
    ref16 = [roc_auc_score(labels[i].flatten().numpy(), halves[i].flatten().numpy()) for i in range(5)]
    np.testing.assert_allclose(roc_auc(halves, labels).numpy(), ref16, rtol=0, atol=1e-12)
    assert roc_auc(labels, labels).tolist() == [1.0] * 5  # the ideal mask itself
    assert roc_auc(1 - labels, labels).tolist() == [0.0] * 5  # inverted
    assert roc_auc(torch.full_like(labels, 0.5), labels).tolist() == [0.5] * 5  # constant: chance
    assert np.isnan(roc_auc(scores[:1], torch.zeros_like(scores[:1])).item())  # no positive bin


def test_mass_fraction_known_answers():
    ideal = torch.zeros(1, 1, 4, 4)
    ideal[..., :2, :] = 1  # half the bins are the target's
    assert mass_fraction(ideal, ideal).item() == 1.0
    assert mass_fraction(1 - ideal, ideal).item() == 0.0
    assert mass_fraction(torch.ones_like(ideal), ideal).item() == 0.5
    half = ideal * 0.25 + (1 - ideal) * 0.75  # mass 0.25 * 8 on target, 0.75 * 8 off
    assert mass_fraction(half, ideal).item() == pytest.approx(0.25)
    assert np.isnan(mass_fraction(torch.zeros_like(ideal), ideal).item())


def test_si_sdr_known_answers():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(2, 16000, generator=gen, dtype=torch.float64)
    n = torch.randn(2, 16000, generator=gen, dtype=torch.float64)
    n = n - (n * s).sum(-1, keepdim=True) / s.pow(2).sum(-1, keepdim=True) * s  # orthogonal to s
    n = n / n.norm(dim=-1, keepdim=True) * s.norm(dim=-1, keepdim=True) / 10 ** (10 / 20)  # 10 dB below s
    assert si_sdr(3.0 * s + n * 3.0, s).tolist() == pytest.approx([10.0, 10.0], abs=0.05)  # scale-invariant
    assert si_sdr(-0.5 * s, s).min() > 100  # a rescaled copy: as high as the floor allows
    assert torch.isnan(si_sdr(s, torch.zeros_like(s))).all()


@pytest.fixture(scope="module")
def mixed():
    """Four synthetic test clips mixed at 0 dB with clips of other classes (targets known)."""
    data = Synth({"classes": 4, "clips_per_class": 5, "seconds": 1.0})
    clips = data.load("test", SR)
    return Mixture({"snr_db": 0}).apply(clips, clips, seed=0)


def _inputs(domain, clips):
    frontend = Frontend(FrontendParams())
    rep = domain.represent(frontend, clips.waveforms)
    truth = batch_truth(domain, frontend, rep, clips.targets, clips.contaminants)
    classifier = Cnn14Spec({"width": 4, "depth": 2}).build([str(i) for i in range(4)], 80, SR).eval()
    model = DomainModel(classifier, domain, frontend).eval()
    return model, rep, truth


@pytest.mark.parametrize("domain", [Stft2Mel(), Mel()], ids=["stft2mel", "mel"])
def test_ideal_and_inverted_masks_through_the_engine(mixed, domain):
    model, rep, truth = _inputs(domain, mixed)
    metrics = [METRICS.get(n) for n in GT]
    with torch.no_grad():
        scores = model(rep.x)
    target = scores.argmax(1)

    def score(mask):
        return score_rows(model, rep.x, Explanation(mask), scores, target, metrics, mixed.labels, TargetParams(),
                          64, truth)

    ideal = truth.ideal
    assert 0.05 < ideal.mean() < 0.95  # both kinds of bins present
    values, not_applicable, _ = score(ideal)
    assert values["gt_mass"].tolist() == [1.0] * len(mixed)
    assert values["gt_auc"].tolist() == [1.0] * len(mixed)
    inv, _, _ = score(1 - ideal)
    assert inv["gt_auc"].tolist() == [0.0] * len(mixed) and inv["gt_mass"].tolist() == [0.0] * len(mixed)
    if domain.listenable:
        # the ideal mask keeps the target and drops the 0 dB partner: high against the target, low against the rest
        assert values["sisdr_target"].min() > 5
        assert values["sisdr_contaminant"].max() < -5
        assert (inv["sisdr_contaminant"] > inv["sisdr_target"]).all()  # the inverted mask: the other way round
        assert not not_applicable
    else:
        assert set(not_applicable) == {"sisdr_target", "sisdr_contaminant"}
        assert "listenable" in not_applicable["sisdr_target"]


def test_no_ground_truth_is_not_applicable(mixed):
    model, rep, _ = _inputs(Mel(), mixed)
    with torch.no_grad():
        scores = model(rep.x)
    _, not_applicable, _ = score_rows(model, rep.x, Explanation(torch.ones_like(rep.x)), scores, scores.argmax(1),
                                      [METRICS.get(n) for n in GT], mixed.labels, TargetParams(), 64, None)
    assert set(not_applicable) == set(GT)
    assert "no ground truth" in not_applicable["gt_auc"]
