"""L-MAC on multi-label (sigmoid) classifiers (issue 24), its one shared mask per clip (``label_masks: shared``;
the rank channels, the default, are in test_lmac_ranked.py): the binary cross-entropy masking loss by hand,
the softmax loss unchanged, validate's output kinds, the decided labels the fit trains on, and a tiny
end-to-end run whose (clip, label) rows share the clip's mask. Trains: structural assertions only,
checked at 1 and 2 threads (README *Determinism*)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from audiobench.cli import main
from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.targets import TargetParams
from audiobench.harness.runner import run_suite
from audiobench.methods import lmac as lmac_module
from audiobench.methods.base import DomainModel
from audiobench.methods.lmac import LMAC
from audiobench.methods.lmac_objective import LmacParams, decided_labels, finetune_loss, masking_loss
from audiobench.models.cnn14 import Cnn14
from audiobench.store.masks import read_masks
from tests.contracts.test_output_kinds import _suite
from tests.harness.test_multilabel_run import SUITE
from tests.methods.test_lmac import FRONT, Linear, _fit_ctx, _tiny_problem, _toy_model


class SigmoidLinear(Linear):
    """The toy linear model read as multi-label: p_c = sigmoid(W . mean x)_c."""

    output_kind = "sigmoid"


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(123)
    weight = torch.randn(4, 5)
    x = torch.rand(3, 1, 6, 5) * 2
    mask = torch.rand(3, 1, 6, 5)
    clean = torch.rand(3, 1, 6, 5)
    return weight, x, mask, clean, torch.tensor([3, 0, 1])


# ----------------------------------------------------------------------------------------------
# the sigmoid loss by hand; the softmax loss as it was


def test_sigmoid_masking_loss_known_answer() -> None:
    weight, x, mask, _, _ = _case()
    model = DomainModel(SigmoidLinear(weight), _toy_model(weight).domain, _toy_model(weight).frontend)
    y = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]])  # clip 1: no decided label
    p = LmacParams(lambda_in=3.0, lambda_out=0.7, lambda_l1=0.25, lambda_tv=0.5, lr_schedule="plateau")
    terms = masking_loss(model, x, mask, y, p)
    s_in = (mask * x).mean(dim=(1, 2)) @ weight.T
    s_out = ((1 - mask) * x).mean(dim=(1, 2)) @ weight.T
    sig = lambda s: 1 / (1 + torch.exp(-s))  # noqa: E731
    bce_in = -(y * torch.log(sig(s_in)) + (1 - y) * torch.log(1 - sig(s_in))).sum() / 12  # mean over 3 x 4 pairs
    out_pairs = [-math.log(float(sig(s_out[i, c]))) for i, c in ((0, 0), (0, 2), (2, 1))]  # the decided pairs
    out = sum(out_pairs) / 3
    tv = mask.diff(dim=-1).abs().mean() + mask.diff(dim=-2).abs().mean()
    torch.testing.assert_close(terms["in"], bce_in)
    torch.testing.assert_close(terms["out"], torch.tensor(out))
    torch.testing.assert_close(terms["total"], 3.0 * bce_in - 0.7 * out + 0.25 * mask.mean() + 0.5 * tv)
    kept = sum(float(sig(s_in[i, c])) > 0.5 for i, c in ((0, 0), (0, 2), (2, 1)))
    assert float(terms["fid_in"]) == pytest.approx(kept / 3)
    # out_cap: each pair at most log 2 (a binary label's log C)
    capped = masking_loss(model, x, mask, y, p.model_copy(update={"out_cap": "log_classes"}))
    torch.testing.assert_close(capped["out"], torch.tensor(sum(min(v, math.log(2)) for v in out_pairs) / 3))
    # no decided label in the batch: no masked-out term, Fid-In vacuously 1
    none = masking_loss(model, x, mask, torch.zeros_like(y), p)
    assert float(none["out"]) == 0.0 and float(none["fid_in"]) == 1.0
    # the decided labels: the targets' (p > threshold, or top_k) for sigmoid, the argmax for softmax
    scores = torch.tensor([[2.0, -1.0, 0.1], [-3.0, -0.2, -0.1]])
    assert decided_labels(scores, "sigmoid", TargetParams()).tolist() == [[1, 0, 1], [0, 0, 0]]
    assert decided_labels(scores, "sigmoid", TargetParams(threshold=0.45)).tolist() == [[1, 0, 1], [0, 1, 1]]
    assert decided_labels(scores, "sigmoid", TargetParams(top_k=1)).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert decided_labels(scores, "softmax", TargetParams()).tolist() == [0, 2]


# masking_loss / finetune_loss terms on _case(), computed with the code before sigmoid support existed
# (commit fdfc12a), as float.hex of each float32 term: the softmax path must not move
SOFTMAX_BEFORE = {
    "default": ({}, {"in": "0x1.9ba0eep+0", "out": "0x1.c36552p+0", "l1": "0x1.f73efep-2", "total": "0x1.91a3d6p+2"}),
    "tv_cap_sum": ({"lambda_tv": 0.3, "out_cap": "log_classes", "l1_reduction": "batch_sum"},
                   {"in": "0x1.9ba0eep+0", "out": "0x1.01cbaap+0", "l1": "0x1.796f3ep+0", "tv": "0x1.3f44p-1",
                    "total": "0x1.c0746cp+2"}),
    "plateau": ({"lr_schedule": "plateau"}, {"fid_in": "0x1.555556p-2", "total": "0x1.91a3d6p+2"}),
    "ft_bce": ({"finetune": {"lambda_g": 2.0, "guidance": "bce"}},
               {"guidance": "0x1.42feaep-1", "l1": "0x1.6048a6p-3", "total": "0x1.da360ap+2"}),
    "ft_regulariser": ({"finetune": {"lambda_g": 2.0}}, {"guidance": "0x1.cba32ap-2", "total": "0x1.cb183cp+2"}),
}


@pytest.mark.parametrize("case", sorted(SOFTMAX_BEFORE))
def test_the_softmax_loss_is_unchanged(case: str) -> None:
    """Bit for bit on the machine they were recorded on; asserted to 1e-6 (one float32 ulp is 1.2e-7) so
    another CPU's reduction order cannot fail it, while any change of the formula would."""
    weight, x, mask, clean, y_hat = _case()
    model = _toy_model(weight)
    settings, expected = SOFTMAX_BEFORE[case]
    p = LmacParams(**settings)
    gate = torch.tensor([True, False, True])
    terms = finetune_loss(model, x, mask, y_hat, clean, gate, p) if p.finetune else masking_loss(model, x, mask, y_hat, p)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name].double(), torch.tensor(float.fromhex(value), dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7, msg=f"{case} {name}")


# ----------------------------------------------------------------------------------------------
# validate; the labels the fit trains on


def _write(tmp_path: Path, suite: dict) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_validate_accepts_lmac_on_a_sigmoid_model_and_refuses_it_on_a_zero_shot_one(
    tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    methods = [{"name": "lmac", "epochs": 1}, {"name": "lmac", "epochs": 1, "finetune": {"lambda_g": 4}}]
    assert main(["validate", str(_write(tmp_path, {**SUITE, "methods": methods}))]) == 0
    capsys.readouterr()
    zero_shot = _suite(tmp_path, {"name": "band_prompts"}, {"name": "tones", "events": 1}, methods=methods)
    assert main(["validate", str(zero_shot)]) == 1
    assert "method 'lmac' explains softmax or sigmoid models, but model 'band_prompts' is similarity" in capsys.readouterr().err


def test_a_sigmoid_fit_trains_on_the_decided_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clips, _ = _tiny_problem(n=16)
    torch.manual_seed(0)
    clf = Cnn14(3, FRONT.n_mels, width=4, depth=3).eval().requires_grad_(False)
    clf.output_kind = "sigmoid"
    with torch.no_grad():  # biases that make some labels decided and others not
        clf.fc_audioset.bias.copy_(torch.tensor([4.0, -4.0, 0.0]))
    model = DomainModel(clf, Stft2Mel(), Frontend(FRONT)).eval()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = lmac_module.masking_loss

    def spy(model, x, mask, y_hat, p, threshold):
        with torch.no_grad():
            seen.append((y_hat.clone(), model(x).sigmoid()))
        assert threshold == 0.3
        return original(model, x, mask, y_hat, p, threshold)

    monkeypatch.setattr(lmac_module, "masking_loss", spy)
    ctx = _fit_ctx(model, clips, tmp_path)
    ctx.targets = TargetParams(threshold=0.3)  # the suite's targets decide the labels trained for
    info = LMAC({"epochs": 1, "hidden": 4, "blocks": 2, "batch_size": 8, "label_masks": "shared"}).fit(ctx)
    assert seen and info["stage"] == "train" and math.isfinite(info["best"]["valid_total"])
    for y, prob in seen:
        assert y.shape == prob.shape and torch.equal(y, (prob > 0.3).to(y.dtype))
    decided = torch.cat([y for y, _ in seen])
    assert decided[:, 0].all() and not decided[:, 1].any()  # multi-hot, not an argmax


# ----------------------------------------------------------------------------------------------
# end to end: one row per (clip, decided label), the clip's mask on each


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("lmac_multilabel")
    suite = {**SUITE, "name": "tiny_multilabel_lmac",
             "methods": [{"name": "lmac", "epochs": 2, "blocks": 2, "hidden": 8, "batch_size": 16, "label_masks": "shared"}],
             "metrics": ["ai", "ff", "mm", "gt_mass"],
             "tables": [{"name": "main", "rows": "row", "metrics": ["ai", "ff", "mm", "gt_mass"]}],
             "masks": {"precision": "float32"}}
    return run_suite(_write(where, suite), where / "run", progress=False).run_dir


def test_each_decided_label_is_a_row_and_the_clips_rows_share_its_mask(run: Path) -> None:
    frame = pd.read_parquet(run / "per_sample.parquet")
    rows = frame[(frame.method == "lmac") & (frame.metric == "ai")]
    assert rows.groupby("sample_id").target.nunique().max() >= 2  # clips explained for two labels
    assert not rows.duplicated(["sample_id", "target", "contamination"]).any()
    (path,) = (run / "masks").glob("*.npz")
    stored = read_masks(path)
    masks = stored.explanation.mask.numpy()
    ids, targets = np.asarray(stored.sample_ids), np.asarray(stored.targets)
    assert len(ids) == len(rows) and float(masks.min()) >= 0 and float(masks.max()) <= 1
    shared = 0
    for sid in np.unique(ids):
        at = np.flatnonzero(ids == sid)
        assert len(set(targets[at].tolist())) == len(at)  # one row per label
        for j in at[1:]:
            assert np.array_equal(masks[at[0]], masks[j])
        shared += len(at) > 1
    assert shared >= 1
    mm = frame[(frame.method == "lmac") & (frame.metric == "mm")].groupby("sample_id").value
    assert float((mm.max() - mm.min()).max()) == 0.0  # MM reads the mask alone: equal on a clip's rows


def test_the_fit_is_recorded_with_its_sigmoid_terms(run: Path) -> None:
    (log,) = (run / "logs").rglob("train.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert all(math.isfinite(r[k]) for k in ("train_in", "train_out", "train_l1", "valid_total"))
        assert r["train_in"] > 0 and r["train_out"] >= 0
