"""PIQ (methods/piq.py, methods/piq_vq.py): the vector quantiser and the loss terms against hand computation and
brute force, a tiny fit that lowers its training loss, the cache, and the explainer contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.methods.base import DomainModel, ExplainContext, FitContext
from audiobench.methods.piq import PIQ
from audiobench.methods.piq_vq import (
    ClassQuantiser,
    PiqParams,
    bernoulli_nll,
    key_classes,
    nearest_keys,
    oracle_mask,
    piq_loss,
    vq_terms,
)
from audiobench.models.cnn14 import Cnn14
from audiobench.testing import _tones, check_method

SMALL = {"epochs": 2, "codebook_size": 16, "dim": 8, "batch_size": 4}


# -- the quantiser -------------------------------------------------------------------------------


def test_key_classes_is_the_recipes_contiguous_partition() -> None:
    # round(linspace(-0.5, C - 0.51, K)) (recipe's get_irrelevant_regions): -0.5 rounds to 0 (half to even)
    assert key_classes(10, 2).tolist() == [0] * 5 + [1] * 5
    parts = key_classes(1024, 10)
    assert parts.diff().ge(0).all() and set(parts.tolist()) == set(range(10))
    counts = torch.bincount(parts)
    assert counts.min() >= 1024 // 10 - 1 and counts.max() <= 1024 // 10 + 2


def test_nearest_key_matches_brute_force_with_and_without_class_ranges() -> None:
    g = torch.Generator().manual_seed(0)
    z, book = torch.randn(200, 6, generator=g), torch.randn(30, 6, generator=g)
    brute = torch.tensor([min(range(30), key=lambda k, v=v: float(((v - book[k]) ** 2).sum())) for v in z])
    assert torch.equal(nearest_keys(z, book), brute)
    classes = key_classes(30, 3)
    labels = torch.randint(3, (200,), generator=g)
    allowed = classes[None, :] == labels[:, None]
    brute_c = torch.tensor([min((k for k in range(30) if classes[k] == c), key=lambda k, v=v: float(((v - book[k]) ** 2).sum()))
                            for v, c in zip(z, labels, strict=True)])
    got = nearest_keys(z, book, allowed)
    assert torch.equal(got, brute_c) and torch.equal(classes[got], labels)


def test_quantiser_codes_stay_in_the_class_range_and_pass_the_gradient_straight_through() -> None:
    torch.manual_seed(0)
    q = ClassQuantiser(12, 4, 3)
    z_e = torch.randn(2, 4, 3, 5, requires_grad=True)
    labels = torch.tensor([2, 0])
    z_st, z_q, idx = q(z_e, labels)
    assert idx.shape == (2, 3, 5)
    assert (q.classes[idx[0]] == 2).all() and (q.classes[idx[1]] == 0).all()
    assert torch.equal(z_st, q.codebook.weight[idx].permute(0, 3, 1, 2))  # the codes themselves, exactly
    w = torch.randn_like(z_st)
    (z_st * w).sum().backward()
    assert torch.equal(z_e.grad, w)  # identity gradient to the encoder
    assert q.codebook.weight.grad is None  # the decoder's path gives the codebook nothing


def test_codebook_and_commitment_terms_on_a_hand_set_example() -> None:
    q = ClassQuantiser(2, 2, 1)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z_e = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).requires_grad_(True)
    _, z_q, idx = q(z_e, torch.tensor([0]))
    assert idx.item() == 1  # distances 5 and 1
    codebook, commit = vq_terms(z_e, z_q)
    assert codebook.item() == pytest.approx(0.5) and commit.item() == pytest.approx(0.5)  # ((1-1)^2 + (1-2)^2) / 2
    (codebook + 0.25 * commit).backward()
    # d codebook / d e_1 = 2 (e_1 - z_e) / 2; d commit / d z_e = 2 (z_e - e_1) / 2
    assert torch.allclose(q.codebook.weight.grad, torch.tensor([[0.0, 0.0], [0.0, -1.0]]))
    assert torch.allclose(z_e.grad.flatten(), 0.25 * torch.tensor([0.0, 1.0]))


# -- the loss terms ------------------------------------------------------------------------------


def test_reconstruction_target_and_bernoulli_term_by_hand() -> None:
    logmag = torch.tensor([[0.0, 1.0], [3.0, 10.0]]).view(1, 1, 2, 2)
    assert oracle_mask(logmag, 0.35).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]  # > 3.5 only; strict >
    assert oracle_mask(logmag, 0.3).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]  # 3.0 is not > 3.0
    mask = torch.tensor([0.9, 0.2, 0.5, 0.6]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    want = -(math.log(0.9) + math.log(0.8) + math.log(0.5) + math.log(0.6)) / 4
    assert bernoulli_nll(mask, target).item() == pytest.approx(want, rel=1e-6)


def test_total_weighs_the_terms_as_documented() -> None:
    mask = torch.tensor([0.9, 0.2]).view(1, 1, 1, 2)
    oracle = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    z_e, z_q = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1), torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    p = PiqParams(rec_weight=2.0, beta=0.25, lambda_fid=3.0)
    t = piq_loss(mask, oracle, z_e, z_q, p, fid=torch.tensor(0.7))
    rec = -(math.log(0.9) + math.log(0.8)) / 2
    assert t["rec"].item() == pytest.approx(rec, rel=1e-6)
    assert t["total"].item() == pytest.approx(2.0 * rec + 0.5 + 0.25 * 0.5 + 3.0 * 0.7, rel=1e-6)
    assert piq_loss(mask, oracle, z_e, z_q, PiqParams())["total"].item() == pytest.approx(rec + 1.0, rel=1e-6)


def test_defaults_are_the_recipes() -> None:
    p = PiqParams()
    assert (p.codebook_size, p.dim, p.block, p.mask_th, p.rec_weight, p.beta, p.lambda_fid) == (1024, 256, -1, 0.35, 1.0, 1.0, 0.0)
    assert (p.epochs, p.lr, p.weight_decay, p.batch_size, p.augment_prob) == (200, 2e-4, 2e-6, 16, 0.0)
    assert PIQ.output_kinds == ("softmax",) and PIQ.trainable and not PIQ.stochastic


# -- fitting and explaining ----------------------------------------------------------------------


def _setup(tmp: Path):
    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    clf = Cnn14(3, n_mels=32, width=4, depth=2).eval().requires_grad_(False)
    clf.class_names = ["c0", "c1", "c2"]
    model = DomainModel(clf, Stft2Mel(), frontend).eval()
    clips = _tones(12, 3)
    ctx = FitContext(model=model, train=clips, valid=clips, augment=[], seed=0, device=torch.device("cpu"),
                     identity={"test_piq": str(tmp)}, log_dir=tmp / "logs", progress=False)
    return model, clips, ctx


def test_a_tiny_fit_lowers_its_training_loss_and_is_cached(tmp_path: Path) -> None:
    model, clips, ctx = _setup(tmp_path)
    params = {**SMALL, "epochs": 12, "lr": 3e-3}
    piq = PIQ(params)
    info = piq.fit(ctx)
    assert info["cached"] is False and info["block"] == 2 and info["stages"] >= 1
    history = [json.loads(line) for line in (tmp_path / "logs" / "train.jsonl").read_text().splitlines()]
    # measured at 1 and 2 threads: total 2.44 -> 1.05 (0.43x), reconstruction 0.68 -> 0.26 (0.39x); the codebook and
    # commitment terms rise for a few epochs while the keys (initialised at +-1/K) catch up with the encoder's scale
    first, last = history[0], min(history[-3:], key=lambda h: h["train_total"])
    assert last["train_total"] < 0.75 * first["train_total"], (first, last)
    assert last["train_rec"] < 0.65 * first["train_rec"], (first, last)
    assert {"valid_fid_in", "valid_keys_used", "valid_rec", "valid_codebook", "valid_commit"} <= set(history[0])
    x = Stft2Mel().represent(model.frontend, clips.waveforms).x
    target = model(x).argmax(-1)
    mask = piq.explain(x, target, ExplainContext(model)).mask
    again = PIQ(params)
    assert again.fit(ctx)["cached"] is True
    assert torch.equal(again.explain(x, target, ExplainContext(model)).mask, mask)
    # class-specific: another class's codebook range decodes another mask
    other = piq.explain(x, (target + 1) % 3, ExplainContext(model)).mask
    assert not torch.equal(other, mask)


def test_fit_key_follows_the_parameters_that_shape_it() -> None:
    base = PIQ(SMALL).fit_params()
    assert PIQ({**SMALL, "nonneg": "abs"}).fit_params() == base
    assert PIQ({**SMALL, "beta": 0.25}).fit_params() != base


def test_piq_passes_the_explainer_contract() -> None:
    assert check_method("piq", params=SMALL) == [
        "registered", "params", "explain[stft2mel]", "explain[stft2mel_log1p]", "explain[mel]",
        "explain[stft2mel, waveform model]"]


def test_validate_checks_the_block_against_the_classifier() -> None:
    assert PIQ({"block": 3}).check_classifier(2)
    assert not PIQ({"block": -1}).check_classifier(2)
