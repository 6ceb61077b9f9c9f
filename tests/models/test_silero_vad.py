"""A real pretrained model whose weights ship in a PyPI wheel (Silero VAD v6, MIT), plugged in through the
contract (examples/silero_vad/silero_vad_plugin.py). Known answer: fed Silero's own frames, the plugin's
network gives the wheel's TorchScript model's probabilities to 1e-5. On the harness's STFT grid (frames half
a hop earlier, no reflected chunk tails) it is an approximation, measured here."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import torch
from torch.nn import functional as F

from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import MODELS, load_plugin_file
from audiobench.data.speech_synth import talker
from audiobench.methods.base import DomainModel
from audiobench.testing import check_model
from tests.paths import ROOT

PLUGIN = ROOT / "examples" / "silero_vad" / "silero_vad_plugin.py"


def _clips() -> torch.Tensor:
    """8 clips of 2.016 s at 16 kHz (a multiple of Silero's 512-sample chunk): four with a synthetic talker."""
    rng = np.random.default_rng(0)
    noise = torch.tensor(rng.standard_normal((8, 32256)), dtype=torch.float32) * 0.02
    voice = torch.tensor(np.stack([talker(rng, 32256, 16000) for _ in range(4)]), dtype=torch.float32) * 0.1
    wave = noise.clone()
    wave[4:] += voice
    return wave / wave.abs().amax(dim=1, keepdim=True)


def _reference(wave: torch.Tensor) -> torch.Tensor:
    """The wheel's TorchScript model, chunk by chunk as its README runs it: [B, chunks] probabilities."""
    jit = torch.jit.load(str(files("silero_vad.data") / "silero_vad.jit")).eval()
    with torch.no_grad():
        return torch.cat([jit(wave[:, i : i + 512], 16000) for i in range(0, wave.shape[1], 512)], dim=1)


def _model() -> tuple[DomainModel, Frontend]:
    load_plugin_file(PLUGIN)
    spec = MODELS.get("silero_vad")()
    fe = Frontend(FrontendParams(n_mels=32, **spec.required_frontend()))
    return DomainModel(spec.build(["no speech", "speech"], 32, 16000), Stft2Mel(), fe).eval(), fe


def _chunk_probabilities(model: DomainModel, magnitudes: torch.Tensor) -> torch.Tensor:
    clf = model.classifier
    with torch.no_grad():
        return torch.sigmoid(clf.head(clf.features(magnitudes)[-1])[..., 0])


def test_the_plugin_is_the_wheels_model_on_its_own_frames() -> None:
    model, _ = _model()
    wave = _clips()
    # Silero's framing: 64 samples of context before each 512-sample chunk, 64 reflected after it,
    # four Hann-windowed 256-sample frames at hop 128 (its STFT basis is that DFT, to 2e-7)
    chunks = F.pad(wave, (64, 0)).unfold(1, 576, 512)  # [B, K, 576]
    chunks = F.pad(chunks.reshape(-1, 1, 576), (0, 64), mode="reflect").reshape(len(wave), -1, 640)
    frames = chunks.unfold(2, 256, 128) * torch.hann_window(256)  # [B, K, 4, 256]
    magnitudes = torch.fft.rfft(frames).abs().reshape(len(wave), 1, -1, 129)
    ours, ref = _chunk_probabilities(model, magnitudes), _reference(wave)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_on_the_harness_grid_it_agrees_with_the_wheel_and_passes_check_model() -> None:
    model, fe = _model()
    wave = _clips()
    x = Stft2Mel().represent(fe, wave).x  # |X|: Hann 256 / 128, centred frames
    ours, ref = _chunk_probabilities(model, model.network_input(x)), _reference(wave)
    n = min(ours.shape[1], ref.shape[1])
    diff = (ours[:, :n] - ref[:, :n]).abs()
    assert float(diff.mean()) < 0.05  # measured 0.016 (max 0.37; chunk decisions agree on 98.2 %)
    assert bool(((ours[:, :n] > 0.5) == (ref[:, :n] > 0.5)).float().mean() >= 0.9)
    # the clip decision (any chunk with speech): the four talker clips and only they, as the wheel decides
    with torch.no_grad():
        p = model.probabilities(model(x))[:, 1]
    assert ((p > 0.5) == (ref.amax(dim=1) > 0.5)).all() and ((p > 0.5) == (torch.arange(8) >= 4)).all()
    assert "front end" in check_model("silero_vad", n_classes=2)
