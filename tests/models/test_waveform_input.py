"""Models of input kind ``waveform`` (issue 23): each row read with its own clip's phase, in every batch
layout the harness and the built-in methods use; refused where the phase cannot be given."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS
from audiobench.kernel.batching import chunked, row_clips
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import DomainModel, Explainer
from audiobench.models.base import AudioClassifier
from audiobench.models.wavecnn import WaveCnn, WaveCnnSpec
from audiobench.suite import SuiteErrors, load_suite
from audiobench.testing import check_method, check_model

FE = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))


def _clips(n: int = 4, seconds: float = 0.25) -> torch.Tensor:
    """Tones of distinct pitch and phase offset: a row given another clip's phase is another waveform."""
    t = torch.arange(int(seconds * 16000)) / 16000
    f = 300.0 + 170.0 * torch.arange(n, dtype=torch.float32)
    return 0.5 * torch.sin(2 * math.pi * f[:, None] * t + torch.arange(n)[:, None])


class Recorder(AudioClassifier):
    """Scores the waveform it reads by its first samples; keeps the last input."""

    input_kind = "waveform"

    def __init__(self) -> None:
        super().__init__()
        self.read: torch.Tensor | None = None

    def blocks(self) -> list[torch.nn.Module]:
        return []

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        self.read = inp.detach()
        return inp[:, :3]


@pytest.mark.parametrize("operator", ["linear", "log1p", "log1p_power"])
def test_an_unmasked_row_reads_its_own_clip_in_every_layout(operator: str) -> None:
    wave = _clips()
    domain = Stft2Mel({"operator": operator})
    rep = domain.represent(FE, wave)
    rec = Recorder()
    model = DomainModel(rec, domain, FE)
    with model.reading(rep):
        model(rep.x)  # the batch itself
        assert torch.allclose(rec.read, wave, atol=1e-5)
        model(rep.x.repeat(3, 1, 1, 1))  # tiled: row j from clip j mod N (SmoothGrad, IG, the metrics' passes)
        assert torch.allclose(rec.read, wave.repeat(3, 1), atol=1e-5)
        order = torch.tensor([2, 2, 0, 3, 1, 1, 1])
        with row_clips(order):  # clip-major copies named row by row (occlusion, LIME)
            model(rep.x[order])
        assert torch.allclose(rec.read, wave[order], atol=1e-5)
        rows = []  # chunks of a tiled batch: each chunk's offset maps its rows (chunk size not a multiple of N)
        chunked(lambda c: rows.append(model(c) is not None and rec.read) or torch.zeros(len(c)), rep.x.repeat(3, 1, 1, 1), 5)
        assert torch.allclose(torch.cat(rows), wave.repeat(3, 1), atol=1e-5)
    with model.reading(rep.subset(torch.tensor([3, 1]))):  # the explained rows of a multi-label batch
        model(rep.x[[3, 1]])
        assert torch.allclose(rec.read, wave[[3, 1]], atol=1e-5)


def test_masked_rows_read_the_masked_magnitudes_with_the_clips_phase() -> None:
    wave = _clips()
    domain = Stft2Mel()
    rep = domain.represent(FE, wave)
    mask = (torch.rand(rep.x.shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    rec = Recorder()
    with DomainModel(rec, domain, FE).reading(rep) as model:
        model(mask * rep.x)
    assert torch.allclose(rec.read, domain.to_audio(FE, mask, rep), atol=1e-6)  # what a listener hears


def test_rows_without_a_mapping_and_a_model_without_the_phase_are_one_line_errors() -> None:
    wave = _clips()
    domain = Stft2Mel()
    rep = domain.represent(FE, wave)
    model = DomainModel(Recorder(), domain, FE)
    with pytest.raises(AudiobenchError, match="needs the clips' phase"):
        model(rep.x)  # outside reading()
    with model.reading(rep), pytest.raises(AudiobenchError, match="rows must tile the clips"):
        model(rep.x[:3])
    with pytest.raises(AudiobenchError, match="no STFT bins"):
        Mel().waveform(FE, Mel().represent(FE, wave).x, rep.phase())


def test_the_harness_scores_what_the_model_scores_on_the_waveform() -> None:
    torch.manual_seed(0)
    clf = WaveCnn(3, width=4, depth=2, first_kernel=16).eval()
    wave = _clips(4, 0.5)
    rep = Stft2Mel().represent(FE, wave)
    with torch.no_grad(), DomainModel(clf, Stft2Mel(), FE).reading(rep) as model:
        assert torch.allclose(model(rep.x), clf(wave), atol=1e-4)


def test_wavecnn_passes_check_model_and_is_refused_in_mel() -> None:
    assert check_model("wavecnn", {"width": 4, "depth": 2}) == ["front end", "built", "scores[stft2mel]",
                                                                  "scores[stft2mel_log1p]"]
    assert "reads the waveform" in Mel().model_problem(WaveCnnSpec())


class ClipMajor(Explainer):
    """Averages the input gradient over two copies of each row laid out clip-major (repeat_interleave)."""

    name_rows = False

    def explain(self, x: torch.Tensor, target: torch.Tensor, ctx) -> Explanation:  # noqa: ANN001
        copies = x.repeat_interleave(2, dim=0).detach().requires_grad_(True)
        idx = torch.arange(len(x)).repeat_interleave(2)
        if self.name_rows:
            with row_clips(idx):
                scores = ctx.model(copies)
        else:  # rows not named: a waveform model reads tiled clips' phases, the wrong ones
            scores = ctx.model(copies)
        (g,) = torch.autograd.grad(scores.gather(1, target[idx].view(-1, 1)).sum(), copies)
        g = g.abs().view(len(x), 2, *x.shape[1:]).mean(1)
        return Explanation(g / g.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1))


class ClipMajorNamed(ClipMajor):
    """The same, each copy's clip named with row_clips."""

    name_rows = True


def test_check_method_catches_a_batch_layout_that_gives_rows_the_wrong_phase() -> None:
    METHODS.add("clip_major_smoothing", ClipMajor)
    METHODS.add("clip_major_named", ClipMajorNamed)
    with pytest.raises(AssertionError, match="waveform model.*row_clips"):
        check_method("clip_major_smoothing")
    assert check_method("clip_major_named", waveform=True)[-1] == "explain[stft2mel, waveform model]"
    assert check_method("clip_major_smoothing", waveform=False)[-1] == "explain[mel]"  # CNN14 alone reads no phase


def test_validate_refuses_mel_and_roar_for_a_waveform_model(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: w\ndataset: {name: synth, classes: 3, clips_per_class: 6, seconds: 0.5}\n"
        "model: {name: wavecnn, width: 4, depth: 2}\n"
        "domains: [stft2mel, mel]\ncontaminations: [none]\nmethods: [saliency]\n"
        "sanity: {randomisation: {}, meta_consistency: {}, roar: {}}\n")
    with pytest.raises(SuiteErrors) as err:
        load_suite(suite)
    text = str(err.value)
    assert "domain mel cannot serve model 'wavecnn': it reads the waveform" in text
    assert "sanity.roar does not yet give a waveform model ('wavecnn') its clips' phase" in text
    # the other stages read every batch with its clips (tests/models/test_waveform_run.py runs them)
    assert "sanity.randomisation" not in text and "sanity.meta_consistency" not in text
