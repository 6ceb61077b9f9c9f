"""L2I on multi-label (sigmoid) classifiers, as the L2I journal does (issue 24): the fidelity term of eq. 2
under the three ``loss_reduction``s, ``pooling: max`` (its L2I w/ MAX), the NMF's clips drawn per class
among positive clips, ``validate``, and a tiny end-to-end run. The softmax path is checked bit for bit
against numbers recorded from the code before this change. Trains (the end-to-end run): structural
assertions only, which hold at 1 and 2 threads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from pydantic import ValidationError

from audiobench.cli import main
from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.data.base import ClipSet
from audiobench.data.synth_multilabel import SynthMultilabelDataset
from audiobench.harness.runner import run_suite
from audiobench.kernel.nmf import cap_per_label
from audiobench.methods.base import DomainModel, FitContext
from audiobench.methods.l2i import L2I, Theta, _Encoded, l2i_loss, relevance
from audiobench.metrics.multilabel import masked_bce
from audiobench.models.cnn14 import Cnn14
from tests.paths import ROOT, TESTS

PLUGIN = TESTS / "plugins" / "toy_models.py"


def _case(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """W [F=2, K=2], H [B=2, K, T=3], x [B, T, F], Theta's logits [B, C=3], the classifier's sigmoid outputs."""
    W = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=dtype)
    H = torch.tensor([[[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]], [[0.0, 3.0, 1.0], [1.0, 0.5, 2.0]]], dtype=dtype)
    x = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [2.0, 0.5]], [[0.5, 0.0], [2.0, 2.0], [1.0, 2.0]]], dtype=dtype)
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, -3.0]], dtype=dtype)
    probs = torch.tensor([[0.9, 0.2, 0.05], [0.6, 0.7, 0.0]], dtype=dtype)  # independent labels: need not sum to 1
    return W, H, x, logits, probs


def _bce_by_hand(logits: torch.Tensor, probs: torch.Tensor) -> list[list[float]]:
    """-[f log s + (1 - f) log(1 - s)], s = 1 / (1 + e^-logit), per (clip, class), written out."""
    out = []
    for b in range(logits.shape[0]):
        row = []
        for c in range(logits.shape[1]):
            s, f = 1 / (1 + math.exp(-logits[b, c].item())), probs[b, c].item()
            row.append(-(f * math.log(s) + (1 - f) * math.log(1 - s)))
        out.append(row)
    return out


# -- eq. 2: the multi-label fidelity term ---------------------------------------------------------


def test_bce_fidelity_by_hand_and_against_masked_bce() -> None:
    W, H, x, logits, probs = case = _case()
    bce = _bce_by_hand(logits, probs)
    B, C = len(bce), len(bce[0])
    per_clip = [sum(row) for row in bce]  # eq. 2: summed over classes
    mean_bce = masked_bce(logits, probs)  # nats per (clip, class)
    expected = {"ours": sum(per_clip) / B, "paper": sum(per_clip) / B, "recipe": sum(per_clip) / (B * C)}
    for reduction, fid in expected.items():
        got = l2i_loss(*case, 10.0, 0.8, reduction, "sigmoid")
        assert got["fid_ce"].item() == pytest.approx(fid, rel=1e-12), reduction
        oracle = mean_bce if reduction == "recipe" else mean_bce * C
        assert got["fid_ce"].item() == pytest.approx(oracle.item(), rel=1e-12), reduction
        # the other terms do not depend on the output kind
        soft = l2i_loss(*case, 10.0, 0.8, reduction, "softmax")
        assert torch.equal(got["recon"], soft["recon"]) and torch.equal(got["l1"], soft["l1"])
        assert got["loss"].item() == pytest.approx(10.0 * got["recon"].item() + 0.8 * got["l1"].item() + fid, rel=1e-12)
    # the numbers of this case (so that both sides cannot agree on a wrong formula by accident)
    assert expected["ours"] == pytest.approx(3 * expected["recipe"])
    assert l2i_loss(*case, 0, 0, "ours", "sigmoid")["fid_ce"].item() != pytest.approx(
        l2i_loss(*case, 0, 0, "ours", "softmax")["fid_ce"].item(), rel=1e-3)
    with pytest.raises(ValueError, match="softmax or sigmoid"):
        l2i_loss(*case, 10.0, 0.8, "ours", "similarity")


def test_bce_fidelity_is_smallest_where_theta_reproduces_the_classifier() -> None:
    """Soft targets: for each (clip, class) the BCE is minimal at sigmoid(Theta) = f(X), and its gradient
    with respect to Theta's logits is sigmoid(Theta) - f(X) (per class; / C for the recipe's mean)."""
    W, H, x, logits, probs = _case()
    probs = probs.clamp(0.01, 0.99)
    logits = logits.clone().requires_grad_(True)
    l2i_loss(W, H, x, logits, probs, 0.0, 0.0, "ours", "sigmoid")["loss"].backward()
    torch.testing.assert_close(logits.grad, (logits.detach().sigmoid() - probs) / 2)  # mean over B = 2
    at_target = l2i_loss(W, H, x, probs.logit(), probs, 0.0, 0.0, "ours", "sigmoid")["fid_ce"]
    assert at_target < l2i_loss(W, H, x, logits.detach(), probs, 0.0, 0.0, "ours", "sigmoid")["fid_ce"]


# -- the softmax path: unchanged ------------------------------------------------------------------


def _fixed_case() -> tuple[torch.Tensor, ...]:
    """Fixed float32 tensors built from sin / cos (no random generator)."""
    B, K, T, Fb, C = 3, 4, 5, 6, 3
    W = (torch.arange(Fb * K, dtype=torch.float32).reshape(Fb, K).sin() + 1.0) / 2
    H = (torch.arange(B * K * T, dtype=torch.float32).reshape(B, K, T) * 0.7).cos().clamp_min(0)
    x = (torch.arange(B * T * Fb, dtype=torch.float32).reshape(B, T, Fb) * 0.3).sin().abs() * 2
    logits = (torch.arange(B * C, dtype=torch.float32).reshape(B, C) * 1.3).sin() * 3
    probs = ((torch.arange(B * C, dtype=torch.float32).reshape(B, C) * 0.9).cos() * 2).softmax(dim=1)
    return W, H, x, logits, probs


# l2i_loss(*_fixed_case(), 10.0, 0.8, reduction), recorded (float.hex) from the code before sigmoid support
BEFORE = {
    "ours": {"loss": "0x1.71a4080000000p+3", "recon": "0x1.dfb30e0000000p-1", "l1": "0x1.463d720000000p-2",
             "fid_ce": "0x1.ed61800000000p+0"},
    "recipe": {"loss": "0x1.4886920000000p+3", "recon": "0x1.dfb30e0000000p-1", "l1": "0x1.463d720000000p-2",
               "fid_ce": "0x1.48ebaa0000000p-1"},
    "paper": {"loss": "0x1.2019400000000p+8", "recon": "0x1.c1b7da0000000p+4", "l1": "0x1.97ccce0000000p+2",
              "fid_ce": "0x1.ed61800000000p+0"},
}


def test_softmax_loss_is_exactly_what_it_was_before_sigmoid_support() -> None:
    for reduction, terms in BEFORE.items():
        for output_kind in ((), ("softmax",)):  # the default and the explicit kind
            got = l2i_loss(*_fixed_case(), 10.0, 0.8, reduction, *output_kind)
            assert {k: v.item().hex() for k, v in got.items()} == terms, reduction


def test_attention_theta_is_the_earlier_module() -> None:
    """The default Theta creates the same layers in the same order as before ``pooling`` (so a seed gives the
    same weights and the committed fits' state dicts load), and pools by attention."""
    torch.manual_seed(3)
    theta = Theta(4, 3)
    torch.manual_seed(3)
    score, fc = torch.nn.Linear(4, 1), torch.nn.Linear(4, 3, bias=False)
    assert list(theta.state_dict()) == ["score.weight", "score.bias", "fc.weight"]
    assert torch.equal(theta.score.weight, score.weight) and torch.equal(theta.fc.weight, fc.weight)
    H = _fixed_case()[1]
    a = score(H.transpose(1, 2)).squeeze(2).softmax(dim=1)
    assert torch.equal(theta.pool(H), (H * a.unsqueeze(1)).sum(dim=2))
    assert torch.equal(theta(H), fc((H * a.unsqueeze(1)).sum(dim=2)))


# -- pooling: max (L2I w/ MAX) --------------------------------------------------------------------


def test_max_pooling_is_the_maximum_over_time() -> None:
    H = _fixed_case()[1]
    theta = Theta(4, 3, "max")
    assert list(theta.state_dict()) == ["fc.weight"]  # no attention score
    assert torch.equal(theta.pool(H), H.amax(dim=2))
    assert torch.equal(theta(H), theta.fc(H.amax(dim=2)))
    # by hand: clip 0 of the loss case, components (1, 0, 2) and (0.5, 1, 0) -> z = (2, 1)
    assert Theta(2, 3, "max").pool(_case()[1]).tolist() == [[2.0, 1.0], [3.0, 2.0]]
    # relevance of a class: the journal's r_k = z_k theta[c,k] / max_l |z_l theta[c,l]|, on z of max pooling
    weight = torch.tensor([[1.0, -4.0], [0.5, 0.5], [2.0, 1.0]], dtype=torch.float64)
    z = Theta(2, 3, "max").pool(_case()[1])
    r = relevance(z, weight, torch.tensor([0, 2]))  # clip 0, class 0: (2, -4) / 4; clip 1, class 2: (6, 2) / 6
    torch.testing.assert_close(r, torch.tensor([[0.5, -1.0], [1.0, 1 / 3]], dtype=torch.float64))
    with pytest.raises(ValueError, match="pooling"):
        Theta(4, 3, "mean")


def test_pooling_is_an_added_field_with_its_own_row_label() -> None:
    assert "pooling" not in L2I().params.model_dump() and "pooling" not in L2I().fit_params()
    assert L2I({"pooling": "max"}).fit_params()["pooling"] == "max"  # shapes the fit: its own cache key
    assert L2I({"pooling": "max", "rt": 0.4}).row_label() == "L2I w/ MAX, RT=0.4"
    assert L2I({"rt": 0.4}).row_label() == L2I({"rt": 0.4, "pooling": "attention"}).row_label() == "L2I, RT=0.4"
    with pytest.raises(ValidationError) as err:
        L2I({"pooling": "mean"})
    assert err.value.errors()[0]["loc"] == ("pooling",)


# -- the NMF's training clips on multi-hot labels --------------------------------------------------


def test_cap_per_label_draws_per_class_among_positive_clips() -> None:
    labels = torch.tensor([[1, 0, 1], [1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]]).float()
    mask = torch.ones(7, 3, dtype=torch.bool)
    mask[6, 0] = False  # clip 6: class 0 unknown, so not a positive
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    assert torch.equal(cap_per_label(labels, None), labels.bool())  # every positive, nothing drawn
    assert torch.equal(cap_per_label(labels, None, mask=mask), labels.bool() & mask)
    drawn = cap_per_label(labels, 2, g(0), mask)
    assert not (drawn & ~(labels.bool() & mask)).any()  # positives only
    assert drawn.sum(dim=0).tolist() == [2, 2, 2]  # class 0: 4 known positives, 1: 3, 2: 2 (all)
    assert drawn[:, 2].tolist() == [True] + [False] * 5 + [True]
    assert torch.equal(cap_per_label(labels, 2, g(0), mask), drawn)  # seeded
    assert len({tuple(cap_per_label(labels, 2, g(s), mask).flatten().tolist()) for s in range(20)}) > 5
    # uniform within a class: each of class 0's four known positives is drawn with probability 1/2
    counts = sum(cap_per_label(labels, 2, g(s), mask)[:, 0].double() for s in range(2000))
    share = counts[[0, 1, 2, 4]] / 2000
    assert ((share - 0.5).abs() < 0.05).all(), share
    with pytest.raises(ValueError, match="at least 1"):
        cap_per_label(labels, 0)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        cap_per_label(labels[:, 0], 2)


def _multilabel_ctx(tmp_path: Path, clips: ClipSet | None = None) -> tuple[FitContext, ClipSet]:
    ds = SynthMultilabelDataset({"classes": 4, "clips": 40, "events": [1, 2], "seconds": 0.5})
    train = clips or ds.load("train", 8000)
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=32))
    clf = Cnn14(4, n_mels=32, width=4, depth=2).eval().requires_grad_(False)
    clf.output_kind = "sigmoid"
    model = DomainModel(clf, Stft2Mel(), frontend).eval()
    ctx = FitContext(model=model, train=train, valid=ds.load("valid", 8000), augment=[], seed=0,
                     device=torch.device("cpu"), identity={"test": str(tmp_path)}, log_dir=tmp_path)
    return ctx, train


@pytest.mark.parametrize("dictionary", ["joint", "per_class"])
def test_dictionary_on_multi_hot_labels(tmp_path: Path, dictionary: str) -> None:
    ctx, train = _multilabel_ctx(tmp_path)
    assert train.labels.dim() == 2
    base = {"dictionary": dictionary, "k": 4, "k_per_class": 2, "k_noise": 2, "nmf_iter": 5}
    W, full = L2I(base)._dictionary(ctx)
    _, capped = L2I({**base, "max_per_class": 3})._dictionary(ctx)
    per_clip = L2I(base)._pooled(ctx, train.waveforms[:1]).shape[1]
    positives = train.labels.sum(dim=0)  # per class
    drawn = cap_per_label(train.labels, 3, torch.Generator().manual_seed(0))
    if dictionary == "joint":
        assert W.shape[1] == 4
        assert full["columns"] == len(train) * per_clip  # every clip, as for single-label data
        assert capped["columns"] == int(drawn.any(dim=1).sum()) * per_clip  # the union of the classes' draws
        assert capped["columns"] < full["columns"]
    else:
        assert W.shape[1] == 4 * 2  # every class has positives here
        assert full["columns"] == [int(n) * per_clip for n in positives]  # per class its positive clips
        assert capped["columns"] == [3 * per_clip] * 4
        assert full["noise_source"] == "contaminants"


def test_per_class_noise_from_clips_with_no_positive_label(tmp_path: Path) -> None:
    """Without known contaminants, the noise components are learnt on the clips with no positive label
    (every label known), the journal's W_noise (App. A.1)."""
    _, train = _multilabel_ctx(tmp_path)
    labels = train.labels.clone()
    labels[:4] = 0.0  # four clips with no positive label
    mask = torch.ones_like(labels, dtype=torch.bool)
    mask[0, 1] = False  # one of them with an unknown label: not known to be empty
    clips = ClipSet(train.waveforms, labels, train.sample_ids, train.class_names, train.sample_rate, label_mask=mask)
    ctx, _ = _multilabel_ctx(tmp_path, clips)
    method = L2I({"dictionary": "per_class", "k_per_class": 2, "k_noise": 2, "nmf_iter": 5})
    x = method._pooled(ctx, clips.waveforms)
    noise, source = method._noise_columns(ctx, x)
    assert source == "clips with no positive label"
    assert noise.shape[1] == 3 * x.shape[1]
    _, info = method._dictionary(ctx)
    assert info["noise_source"] == source


def test_interpreter_trains_against_the_classifiers_sigmoid_outputs(tmp_path: Path) -> None:
    ctx, train = _multilabel_ctx(tmp_path)
    method = L2I({"k": 4, "blocks": 2, "channels": 4})
    method.block_idx = [1, 2]
    feats, x, probs = _Encoded(method, ctx, [train.waveforms[:5]]).batch(torch.arange(5))
    with torch.no_grad():
        logits = ctx.model(ctx.model.domain.represent(ctx.model.frontend, train.waveforms[:5]).x)
    torch.testing.assert_close(probs, logits.sigmoid())
    assert not torch.allclose(probs.sum(dim=1), torch.ones(5))
    # the log's fidelity for a sigmoid classifier: agreement of the decisions at p > 0.5
    method.psi, method.theta = method._build(ctx.model, 4, 4)
    assert method.model_kind == "sigmoid"
    terms = method._loss(torch.rand(x.shape[2], 4), feats, x, probs)
    assert "fidelity_top1" not in terms and 0 <= float(terms["fidelity_labels"]) <= 1


def test_random_baselines_mean_count_is_over_the_detected_labels(tmp_path: Path) -> None:
    """``random_count: mean`` on a sigmoid classifier: mean |L| over the (clip, label) pairs with p > 0.5."""
    ctx, train = _multilabel_ctx(tmp_path)
    torch.manual_seed(0)
    method = L2I({"k": 6, "blocks": 2, "channels": 4, "rt": 0.1})
    method.block_idx = [1, 2]
    method.psi, method.theta = method._build(ctx.model, 6, 4)
    method.psi.eval(), method.theta.eval()
    method.W = torch.rand(ctx.model.frontend.n_freqs, 6)
    with torch.no_grad():
        method.theta.fc.weight.normal_()
        ctx.model.classifier.fc_audioset.bias.copy_(torch.tensor([3.0, -3.0, 0.0, -20.0]))  # label 3: never detected
        x = ctx.model.domain.represent(ctx.model.frontend, train.waveforms[:10]).x
        detected = ctx.model(x).sigmoid() > 0.5
    assert 10 < int(detected.sum()) < 40 and not detected[:, 3].any()
    counts = [int((method.interpret(x[n : n + 1], torch.tensor([c]), ctx.model).relevance > 0.1).sum())
              for n, c in detected.nonzero().tolist()]
    got = method.mean_relevant_count(ctx.model, train.waveforms[:10], max_rows=3)
    assert got == pytest.approx(sum(counts) / len(counts), rel=1e-12)


# -- validate ------------------------------------------------------------------------------------


def test_validate_accepts_l2i_on_the_multilabel_suite(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "suites" / "synth_multilabel.yaml").read_text())
    raw["methods"] = ["l2i", {"name": "l2i", "pooling": "max", "rt": 0.4}]
    path = tmp_path / "synth_multilabel_l2i.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 0


def test_validate_still_refuses_l2i_for_a_similarity_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = {"name": "kinds", "seed": 0, "plugins": [str(PLUGIN)], "dataset": {"name": "tones", "events": 1},
             "model": {"name": "band_prompts"}, "domains": ["mel"], "contaminations": ["none"],
             "methods": ["saliency", {"name": "l2i", "pooling": "max"}], "metrics": ["ai"]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "method 'l2i' explains softmax or sigmoid models, but model 'band_prompts' is similarity" in err


# -- end to end ----------------------------------------------------------------------------------

L2I_ROW = {"rt": 0.4, "k": 8, "epochs": 3, "nmf_iter": 20, "channels": 8, "blocks": 2}  # the model has 2 blocks
SUITE = {
    "name": "tiny_multilabel_l2i", "seed": 0,
    "dataset": {"name": "synth_multilabel", "classes": 4, "clips": 160, "events": [1, 2], "seconds": 0.5},
    "frontend": {"sample_rate": 8000, "n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
    "model": {"name": "cnn14", "output_kind": "sigmoid", "width": 8, "depth": 2, "train": {"epochs": 12, "batch_size": 16}},
    "batch_size": 8, "domains": ["stft2mel"], "contaminations": ["none"],
    "methods": [{"name": "l2i", **L2I_ROW}, {"name": "l2i", "pooling": "max", **L2I_ROW}],
    "metrics": ["ff", "ff_l2i", "ff_l2i_random", "n_components"],
    "tables": [{"name": "main", "rows": "row", "metrics": ["ff", "ff_l2i", "n_components"]}], "audio": {"n": 0},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("multilabel_l2i")
    path = where / "suite.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return run_suite(path, where / "run", progress=False).run_dir


def test_both_poolings_explain_every_detected_label(run: Path) -> None:
    frame = pd.read_parquet(run / "per_sample.parquet")
    assert set(frame.row) == {"L2I, RT=0.4", "L2I w/ MAX, RT=0.4"}
    for row, rows in frame.groupby("row"):
        ff, ff_l2i = rows[rows.metric == "ff"], rows[rows.metric == "ff_l2i"]
        assert len(ff) > 0 and len(ff_l2i) == len(ff), row  # one value per (clip, label)
        assert ff_l2i.value.notna().all() and ff.value.notna().all(), row
        assert ff_l2i.value.between(-1, 1).all(), row  # a drop in one label's sigmoid probability
        assert ff.groupby("sample_id").target.nunique().max() >= 2, row  # clips explained for two labels
        assert not ff.duplicated(["sample_id", "target"]).any(), row
    # both rows explain the same (clip, label) pairs: the classifier's detections
    pairs = {row: set(zip(r[r.metric == "ff"].sample_id, r[r.metric == "ff"].target, strict=True))
             for row, r in frame.groupby("row")}
    assert pairs["L2I, RT=0.4"] == pairs["L2I w/ MAX, RT=0.4"]


def test_fits_log_the_multilabel_fidelity(run: Path) -> None:
    """Each pooling has its own fit; its log holds, per epoch, eq. 2's term and the share of (clip, label)
    decisions the interpreter shares with the classifier (no top-1 agreement, meaningless for labels)."""
    logs = sorted(run.glob("logs/l2i*/stft2mel/train.jsonl"))
    assert [p.parts[-3] for p in logs] == ["l2i-rt-0-4", "l2i-w-max-rt-0-4"]
    for log in logs:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2, 3]
        for r in records:
            assert not any("top1" in k for k in r)
            assert 0 <= r["valid_fidelity_labels"] <= 1 and 0 <= r["train_fidelity_labels"] <= 1
            assert math.isfinite(r["valid_loss"]) and r["valid_fid_ce"] > 0


def test_top_k_fidelity_is_not_defined_on_multi_label_runs() -> None:
    """The journal's top-k fidelity is its multi-class measure; a sigmoid run records why it has none
    (its fidelity is tables/fidelity.md) instead of a number."""
    from audiobench.metrics.base import METRICS, MetricInputs

    def inputs(kind: str) -> MetricInputs:
        s = torch.zeros(2, 3)
        return MetricInputs(x=torch.ones(2, 1, 4, 4), mask=torch.ones(2, 1, 4, 4), scores_orig=s, scores_in=s,
                            scores_out=s, target=torch.tensor([0, 1]), output_kind=kind, interpreter_scores=torch.zeros(2, 3))

    for name in ("fidelity_top1", "fidelity_top5"):
        assert METRICS.get(name).applies(inputs("sigmoid")) == "not defined for sigmoid models"
        assert METRICS.get(name).applies(inputs("softmax")) is None
