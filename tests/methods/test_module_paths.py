"""Layers by module path (issue 23): CAM's ``layer`` and L-MAC's ``blocks`` name any submodule by its dotted
path; a wrong path or a module without a feature map is a one-line error; a CAM layer the score's gradient
does not reach is noted in the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import DomainModel, ExplainContext, FitContext
from audiobench.methods.blocks import blocks_entries_problem, layer_index, layer_outputs
from audiobench.methods.cam import GradCAM, GradCAMPlusPlus
from audiobench.methods.lmac import LMAC
from audiobench.models.base import AudioClassifier
from audiobench.models.cnn14 import Cnn14
from audiobench.models.modules import as_grid
from audiobench.testing import _tones

FRONT = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))


def _model() -> DomainModel:
    torch.manual_seed(0)
    return DomainModel(Cnn14(3, n_mels=32, width=4, depth=3).eval(), Mel(), FRONT)


def _x(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return Mel().represent(FRONT, torch.randn(n, 8000) * 0.1).x


def test_a_dotted_path_names_a_submodule_and_a_wrong_one_is_a_one_line_error() -> None:
    clf = _model().classifier
    assert clf.block("conv_block2.conv2") is clf.conv_block2.conv2
    assert clf.block("conv_block2") is clf.blocks()[1]  # block names unchanged
    with pytest.raises(AudiobenchError, match=r"^'conv_block2.conv9' is no module of Cnn14 \(did you mean 'conv_block2.conv2'") as err:
        clf.block("conv_block2.conv9")
    assert "\n" not in str(err.value)
    with pytest.raises(AudiobenchError, match="is not a block"):
        layer_index("fc1", 3, "cnn14", ["conv_block1", "conv_block2", "conv_block3"])  # no dot: still refused
    assert layer_index("conv_block2.conv2", 3, "cnn14", ["conv_block1"]) is None  # checked at the run
    with pytest.raises(AudiobenchError, match=r"returns \(3, 5\), not a feature map"):
        as_grid(torch.zeros(3, 5), "fc1.x")


def test_gradcam_on_a_module_path_is_the_hand_computed_map_of_that_module() -> None:
    model, x = _model(), _x()
    target = torch.tensor([0, 1, 2])
    module = model.classifier.conv_block2.conv2
    store = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    with torch.enable_grad():
        scores = model(x)
        grads = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), store["a"])[0]
    handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # Selvaraju et al. eq. 1: alpha_k = mean of dy/dA_k
    expected = (weights * store["a"]).sum(1, keepdim=True).detach()
    got = GradCAM({"layer": "conv_block2.conv2"}).cam(x, target, ExplainContext(model))
    assert torch.allclose(got, expected, atol=1e-6)
    assert expected.abs().max() > 0
    mask = GradCAMPlusPlus({"layer": "conv_block3.bn2"}).explain(x, target, ExplainContext(model)).mask
    assert mask.shape == x.shape and float(mask.max()) == pytest.approx(1.0)


class _DeadEnd(AudioClassifier):
    """Two blocks; the head reads the first only (the second is in the graph with a zero weight), as AST's
    last layer's patch tokens never reach its head."""

    def __init__(self) -> None:
        super().__init__()
        self.b1, self.b2, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 2)
        self.class_names = ["a", "b"]

    def blocks(self) -> list[nn.Module]:
        return [self.b1, self.b2]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        a = self.b1(inp)
        return [a, self.b2(a)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc(self._first.mean(dim=(2, 3))) + 0 * last.sum()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        feats = self.features(inp)
        self._first = feats[0]
        return self.head(feats[-1])


def test_a_cam_layer_the_gradient_does_not_reach_is_noted_not_silent() -> None:
    model, x = DomainModel(_DeadEnd().eval(), Mel(), FRONT), _x(2)
    dead = GradCAM({"layer": "last"})
    assert float(dead.explain(x, torch.tensor([0, 1]), ExplainContext(model)).mask.abs().max()) == 0.0
    assert any("does not reach layer 'last'" in n for n in dead.run_notes)
    alive = GradCAM({"layer": 1})
    alive.explain(x, torch.tensor([0, 1]), ExplainContext(model))
    assert not alive.run_notes


def test_lmac_reads_blocks_by_name_and_module_path_deepest_first() -> None:
    model, x = _model(), _x()
    feats = model.features(x)
    outs = layer_outputs(model, x, [1, "conv_block3"])
    assert torch.equal(outs[0], feats[2]) and torch.equal(outs[1], feats[0])  # deepest first
    inner = layer_outputs(model, x, ["conv_block2.conv2", "conv_block1"])
    assert inner[0].shape[1] == model.classifier.conv_block2.conv2.out_channels
    assert blocks_entries_problem(["conv_block9"], 3, "cnn14", ["conv_block1", "conv_block2", "conv_block3"])
    assert blocks_entries_problem(["conv_block3.conv2", 2], 3, "cnn14") is None
    assert "out of range" in blocks_entries_problem(["conv_block3.conv2", 5], 3, "cnn14")


def test_lmac_trains_on_module_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    model = _model()
    clips = _tones(12, 3, seconds=0.5)
    ctx = FitContext(model=model, train=clips, valid=clips, augment=[], seed=0, device=torch.device("cpu"),
                     identity={"test": "module paths"}, log_dir=tmp_path / "logs", progress=False)
    lmac = LMAC({"blocks": ["conv_block3", "conv_block2.conv2"], "epochs": 1, "batch_size": 6, "hidden": 4})
    info = lmac.fit(ctx)
    assert info["blocks"] == ["conv_block3", "conv_block2.conv2"]
    x = Mel().represent(FRONT, clips.waveforms[:3]).x
    mask = lmac.explain(x, torch.tensor([0, 1, 2]), ExplainContext(model)).mask
    assert mask.shape == x.shape and bool(((mask > 0) & (mask < 1)).all())
    again = LMAC(lmac.params)  # from the cache: the lazy projections take the stored weights
    assert again.fit(ctx)["cached"] is True
    assert torch.equal(again.explain(x, torch.tensor([0, 1, 2]), ExplainContext(model)).mask, mask)


class _Pair(nn.Module):
    """Returns a tuple, as an attention module does."""

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t, t


class _Tokens(AudioClassifier):
    """A 1-D conv over frames, then a token projection [B, T', D] (a transformer's layout) and a tuple module."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Module()
        self.body.conv, self.body.proj, self.body.pair = nn.Conv1d(32, 8, 3, padding=1), nn.Linear(8, 8), _Pair()
        self.fc, self.class_names = nn.Linear(8, 2), ["a", "b"]

    def blocks(self) -> list[nn.Module]:
        return [self.body]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        h = self.body.conv(inp[:, 0].transpose(1, 2))  # [B, 8, T]
        tokens, _ = self.body.pair(self.body.proj(h.transpose(1, 2)))  # [B, T, 8]
        return [tokens.transpose(1, 2)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc(last.mean(-1))


@pytest.mark.parametrize("cam", [GradCAM, GradCAMPlusPlus])
def test_a_token_sequence_or_a_tuple_is_refused_and_a_1d_convolution_is_a_map(cam: type) -> None:
    torch.manual_seed(0)
    model, x, target = DomainModel(_Tokens().eval(), Mel(), FRONT), _x(2), torch.tensor([0, 1])
    mask = cam({"layer": "body.conv"}).explain(x, target, ExplainContext(model)).mask  # Conv1d: [B, 8, T'] channels first
    assert mask.shape == x.shape and float(mask.max()) > 0
    with pytest.raises(AudiobenchError, match=r"^module 'body.proj' returns \(2, \d+, 8\), not a channels-first feature map") as err:
        cam({"layer": "body.proj"}).explain(x, target, ExplainContext(model))
    assert "\n" not in str(err.value)
    with pytest.raises(AudiobenchError, match=r"^module 'body.pair' returns tuple, not a feature map"):
        cam({"layer": "body.pair"}).explain(x, target, ExplainContext(model))
    with pytest.raises(AudiobenchError, match="not a channels-first feature map"):
        layer_outputs(model, x, ["body.proj"])  # L-MAC's reading refuses it too


def test_written_audio_beyond_full_scale_is_float_never_clipped(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from audiobench.store.audio import write_wavs

    loud, quiet = np.linspace(-1.7, 1.7, 800, dtype=np.float32), np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    write_wavs(tmp_path, ["loud", "quiet"], np.stack([loud, quiet]), 16000)
    assert sf.info(tmp_path / "loud.wav").subtype == "FLOAT" and sf.info(tmp_path / "quiet.wav").subtype == "PCM_16"
    assert np.array_equal(sf.read(tmp_path / "loud.wav", dtype="float32")[0], loud)  # what was scored, bit for bit
    assert np.abs(sf.read(tmp_path / "quiet.wav")[0] - quiet).max() < 1e-4


def test_a_plugin_build_that_fails_is_one_line_naming_the_model() -> None:
    from audiobench.models.base import ModelSpec
    from audiobench.models.training import built_network

    class Mismatched(ModelSpec):
        def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
            net = nn.Linear(4, len(class_names))
            net.load_state_dict({"weight": torch.zeros(10, 4), "bias": torch.zeros(10)})  # a 10-class checkpoint
            return net  # type: ignore[return-value]

    Mismatched.name = "tiny_cnn"
    with pytest.raises(AudiobenchError, match=r"^model 'tiny_cnn' could not be built for 5 classes: Error\(s\) in loading "
                                              r"state_dict for Linear: size mismatch for weight") as err:
        built_network(Mismatched(), list("abcde"), 32, 16000)
    assert "\n" not in str(err.value) and "\t" not in str(err.value)
