"""L-MAC: loss terms and their signs, y_hat from the classifier, CCT gating, caching, a known region."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture
from audiobench.methods import lmac as lmac_module
from audiobench.methods.base import DomainModel, ExplainContext, FitContext
from audiobench.methods.lmac import LMAC
from audiobench.methods.lmac_objective import LmacParams, masking_loss, oracle_mask
from audiobench.models.base import AudioClassifier
from audiobench.models.cnn14 import Cnn14
from audiobench.suite import load_suite

SR = 16000
TONES = torch.tensor([500.0, 1500.0, 3000.0])
FRONT = FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32)


class Linear(AudioClassifier):
    """logits = W . mean over time of x: a model whose cross-entropies are easy to compute by hand."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2)) @ self.weight.T


def _toy_model(weight: torch.Tensor) -> DomainModel:
    return DomainModel(Linear(weight), Mel(), Frontend(FRONT))


def test_masking_loss_terms_and_signs() -> None:
    torch.manual_seed(0)
    weight = torch.randn(3, 5)
    model = _toy_model(weight)
    x = torch.rand(4, 1, 6, 5)
    mask = torch.rand(4, 1, 6, 5)
    y_hat = torch.tensor([2, 0, 1, 2])
    p = LmacParams(lambda_in=3.0, lambda_out=0.7, lambda_l1=0.25, lambda_tv=0.5)
    terms = masking_loss(model, x, mask, y_hat, p)
    ce_in = F.cross_entropy((mask * x).mean(dim=(1, 2)) @ weight.T, y_hat)
    ce_out = F.cross_entropy(((1 - mask) * x).mean(dim=(1, 2)) @ weight.T, y_hat)
    tv = mask.diff(dim=-1).abs().mean() + mask.diff(dim=-2).abs().mean()
    torch.testing.assert_close(terms["in"], ce_in)
    torch.testing.assert_close(terms["out"], ce_out)
    torch.testing.assert_close(terms["l1"], mask.mean())
    # + lambda_in CE_in  - lambda_out CE_out  + lambda_l1 |M|  + lambda_tv TV
    torch.testing.assert_close(terms["total"], 3.0 * ce_in - 0.7 * ce_out + 0.25 * mask.mean() + 0.5 * tv)
    # the masked-out term is maximised: raising lambda_out lowers the objective by exactly CE_out
    higher = masking_loss(model, x, mask, y_hat, p.model_copy(update={"lambda_out": 1.7}))
    torch.testing.assert_close(terms["total"] - higher["total"], ce_out)


def test_y_hat_is_the_classifier_decision_not_the_label(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clips, model = _tiny_problem()
    clips.labels = (clips.labels + 1) % 3  # labels now disagree with what the classifier learned
    seen: list[torch.Tensor] = []
    original = lmac_module.masking_loss

    def spy(model, x, mask, y_hat, p, threshold=0.5):
        with torch.no_grad():
            seen.append((y_hat.clone(), model(x).argmax(-1)))
        return original(model, x, mask, y_hat, p, threshold)

    monkeypatch.setattr(lmac_module, "masking_loss", spy)
    method = LMAC({"epochs": 1, "hidden": 4, "blocks": 2, "batch_size": 8})
    method.fit(_fit_ctx(model, clips, tmp_path))
    assert seen
    for y_hat, decision in seen:
        assert torch.equal(y_hat, decision)
    labels_match = sum(int((y == clips.labels[: len(y)]).all()) for y, _ in seen)
    assert labels_match < len(seen)  # the labels were not used


def test_oracle_is_the_binarised_clean_spectrogram() -> None:
    clean = torch.tensor([[[[0.1, 0.4], [1.0, 0.34]]]])
    assert oracle_mask(clean, 0.35).flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


def test_labels_follow_the_paper() -> None:
    assert LMAC().row_label() == "L-MAC"
    assert LMAC({"finetune": {"lambda_g": 4}}).row_label() == "L-MAC, FT, λg=4"
    assert LMAC({"finetune": {"lambda_g": 16, "cct": 0.7}}).row_label() == "L-MAC, FT, λg=16, CCT 0.7"


def test_suite_lists_variants_as_rows(write_suite) -> None:
    suite = load_suite(write_suite({"methods": [
        "lmac", "lmac{finetune: {lambda_g: 4}}", "lmac{finetune: {lambda_g: 16, cct: 0.7}}",
    ]}))
    assert [m.label for m in suite.methods] == ["L-MAC", "L-MAC, FT, λg=4", "L-MAC, FT, λg=16, CCT 0.7"]


# ----------------------------------------------------------------------------------------------
# trained on a problem whose class evidence is confined to a known region


class WindowedCnn14(Cnn14):
    """A CNN14 that only sees the first half of the clip: its evidence is confined there by construction."""

    def features(self, logmel: torch.Tensor) -> list[torch.Tensor]:
        window = torch.zeros_like(logmel)
        window[:, :, : logmel.shape[2] // 2] = 1.0
        return super().features(logmel * window)


def _tiny_problem(n: int = 60, seed: int = 0) -> tuple[ClipSet, DomainModel]:
    """Three classes: a 500 Hz, 1.5 kHz or 3 kHz tone in the first half of the clip, noise everywhere.

    The classifier sees only the first half, so nothing in the second half can matter to it: a mask
    there changes no cross-entropy and only the sparsity term acts on it.
    """
    gen = torch.Generator().manual_seed(seed)
    length = SR // 2
    t = torch.arange(length) / SR
    labels = torch.arange(n) % 3
    freq = TONES[labels]
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
    tone = torch.sin(2 * math.pi * freq[:, None] * t + phase) * (t < 0.25).float()
    noise = 0.05 * torch.randn(n, length, generator=gen)
    clips = ClipSet(tone + noise, labels, [f"c{i}" for i in range(n)], ["low", "mid", "high"], SR, targets=tone)
    frontend = Frontend(FRONT)
    torch.manual_seed(seed)
    clf = WindowedCnn14(3, FRONT.n_mels, width=4, depth=3)
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    feats = frontend.logmel(clips.waveforms / clips.waveforms.abs().amax(1, keepdim=True))
    for _ in range(60):
        loss = F.cross_entropy(clf(feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # settle the batch-norm running statistics on the data before evaluating
        for _ in range(30):
            clf(feats)
    clf.eval().requires_grad_(False)
    assert (clf(feats).argmax(-1) == labels).float().mean() == 1.0
    return clips, DomainModel(clf, Stft2Mel(), frontend).eval()


def _fit_ctx(model: DomainModel, clips: ClipSet, tmp_path: Path, augment: list | None = None) -> FitContext:
    return FitContext(
        model=model, train=clips, valid=clips.subset(slice(0, 16)), augment=augment or [], seed=0,
        device=torch.device("cpu"), identity={"test": str(tmp_path)}, log_dir=tmp_path / "logs", progress=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("lmac")
    clips, model = _tiny_problem()
    method = LMAC({"epochs": 15, "hidden": 8, "blocks": 3, "batch_size": 8, "lr": 3e-3, "lambda_l1": 1.0})
    info = method.fit(_fit_ctx(model, clips, tmp))
    return method, info, clips, model, tmp


def test_trained_mask_puts_its_mass_on_the_evidence(trained) -> None:
    method, info, clips, model, _ = trained
    test, _ = _tiny_problem(n=18, seed=1)
    x = model.domain.represent(model.frontend, test.waveforms / test.waveforms.abs().amax(1, keepdim=True)).x
    mask = method.explain(x, model(x).argmax(-1), ExplainContext(model)).mask
    frames = x.shape[2]
    evidence_time = slice(0, frames // 2)  # all the classifier sees
    inside = mask[:, :, evidence_time].sum(dim=(1, 2, 3))
    share = inside / mask.sum(dim=(1, 2, 3))
    assert share.min() > 0.9, share
    with torch.no_grad():  # and the kept part still carries the decision
        c = model(x).argmax(-1)
        assert (model(mask * x).argmax(-1) == c).float().mean() >= 0.9
    assert info["selected_by"] == "valid_total" and info["best"]["valid_total"] < float("inf")
    assert info["blocks"] == [3, 2, 1]


def test_fit_is_cached_and_logged(trained) -> None:
    method, info, clips, model, tmp = trained
    assert info["cached"] is False
    lines = (tmp / "logs" / "train.jsonl").read_text().splitlines()
    assert len(lines) == 15 and '"train_in"' in lines[0] and '"valid_total"' in lines[0]
    again = LMAC(method.params)
    info2 = again.fit(_fit_ctx(model, clips, tmp))
    assert info2["cached"] is True and info2["key"] == info["key"]
    for a, b in zip(method.decoder.state_dict().values(), again.decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_finetune_starts_from_the_trained_decoder_and_is_cached(trained) -> None:
    method, info, clips, model, tmp = trained
    ft = LMAC(method.params.model_copy(update={"finetune": LmacParams(finetune={"lambda_g": 4, "epochs": 1}).finetune}))
    ctx = _fit_ctx(model, clips, tmp, augment=[Mixture({"snr_db": 3})])
    out = ft.fit(ctx)
    assert out["stage"] == "finetune" and out["base"]["cached"] is True and out["base"]["key"] == info["key"]
    record = (tmp / "logs" / "finetune.jsonl").read_text().splitlines()[0]
    assert '"train_guidance"' in record and '"train_gated"' in record
    assert LMAC(ft.params).fit(ctx)["cached"] is True


def test_block_choice_is_shared_with_l2i_and_refuses_blocks_the_classifier_lacks() -> None:
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.methods.base import classifier_blocks
    from audiobench.methods.l2i import L2I

    assert classifier_blocks(3, 4, "lmac") == [2, 3, 4]
    assert classifier_blocks([4, -3, 4], 4, "lmac") == [4, 2]  # -1 is the deepest block; repeats dropped
    for bad in (0, 5, [5], [-5], []):
        with pytest.raises(AudiobenchError, match=r"^lmac: blocks"):
            classifier_blocks(bad, 4, "lmac")
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    model = DomainModel(Cnn14(3, n_mels=32, width=4, depth=3), Mel(), frontend)
    lmac = LMAC({"blocks": [1, 3]})
    lmac._build(model)
    assert lmac.block_idx == [3, 1]  # the decoder reads the deepest block first
    # the classifier has 3 blocks: L-MAC's default 4 reads all of them; a list beyond them is a one-line error
    deep = LMAC({"blocks": 4})
    deep._build(model)
    assert deep.block_idx == [3, 2, 1]
    with pytest.raises(AudiobenchError, match=r"^lmac: blocks \[4, 1\] out of range for a classifier with 3 blocks$"):
        LMAC({"blocks": [4, 1]})._build(model)
    with pytest.raises(AudiobenchError, match=r"^l2i: blocks=4 but the classifier has 3 blocks$"):
        L2I({"blocks": 4})._build(model, 8, 3)
