"""PANNs-layout checkpoints: identical logits after loading, clear one-line errors on mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiobench.data.base import ClipSet
from audiobench.errors import AudiobenchError
from audiobench.frontend import Frontend, FrontendParams
from audiobench.models.checkpoint import checkpoint_shape, read_checkpoint, save_checkpoint
from audiobench.models.cnn14 import Cnn14, Cnn14Spec
from audiobench.models.training import get_classifier

N_MELS = 32


def _panns_file(path: Path, n_classes: int = 5, width: int = 4, depth: int = 3, n_mels: int = N_MELS) -> Cnn14:
    """Save a randomly initialised Cnn14 the way PANNs does: {"model": ...} with its front-end keys."""
    torch.manual_seed(7)
    model = Cnn14(n_classes, n_mels=n_mels, width=width, depth=depth).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so a missed key would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    state = dict(model.state_dict())
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    state["logmel_extractor.melW"] = torch.randn(513, 64)
    torch.save({"model": state, "iteration": 660000}, path)
    return model


def test_panns_layout_checkpoint_gives_identical_logits(tmp_path: Path) -> None:
    path = tmp_path / "Cnn14_like.pth"
    original = _panns_file(path)
    state = read_checkpoint(path)
    assert not any(k.startswith(("spectrogram_extractor", "logmel_extractor")) for k in state)
    assert checkpoint_shape(state, path) == checkpoint_shape(original.state_dict())
    spec = Cnn14Spec({"checkpoint": str(path)})  # width and depth are read off the checkpoint
    assert spec.architecture() == (4, 3) and spec.check() == []
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=N_MELS))
    gen = torch.Generator().manual_seed(0)
    waves = torch.randn(6, 4000, generator=gen) * 0.3
    clips = ClipSet(waves, torch.tensor([0, 1, 2, 3, 4, 0]), [f"c{i}" for i in range(6)], [f"k{i}" for i in range(5)], 8000)
    loaded = get_classifier(spec, None, {"test": clips}, frontend, {}, 0, torch.device("cpu"))
    assert loaded.info["checkpoint"] == str(path) and loaded.info["hash"].startswith("ckpt-")
    x = frontend.logmel(waves)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x), rtol=0, atol=0)
    # what audiobench train writes reads back the same
    save_checkpoint(loaded.model, tmp_path / "again.pt", {"accuracy": {}})
    again = Cnn14Spec({"checkpoint": str(tmp_path / "again.pt")})
    model = again.build([f"c{i}" for i in range(5)], N_MELS)
    model.load_state_dict(read_checkpoint(tmp_path / "again.pt"))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), original(x), rtol=0, atol=0)


def test_mismatches_are_one_line_errors_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    _panns_file(path)
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=40))
    clips = ClipSet(torch.randn(5, 4000), torch.arange(5), list("abcde"), list("vwxyz"), 8000)
    with pytest.raises(AudiobenchError) as info:
        get_classifier(Cnn14Spec({"checkpoint": str(path)}), None, {"test": clips}, frontend, {}, 0, torch.device("cpu"))
    message = str(info.value)
    assert "bn0.weight has shape [32] in the checkpoint but [40] in the model" in message
    assert "frontend.n_mels" in message and "\n" not in message

    [problem] = Cnn14Spec({"checkpoint": str(path), "width": 8}).check()
    assert problem.startswith("model.width is 8 but the checkpoint") and "has width 4" in problem

    # an AudioSet head (527 outputs) must be fine-tuned first
    _panns_file(tmp_path / "audioset.pth", n_classes=527)
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=N_MELS))
    with pytest.raises(AudiobenchError, match=r"has 527 outputs \(fc_audioset\) but the dataset has 5 classes.*audiobench train"):
        get_classifier(Cnn14Spec({"checkpoint": str(tmp_path / "audioset.pth")}), None, {"test": clips}, frontend, {}, 0,
                       torch.device("cpu"))

    (tmp_path / "broken.pt").write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(AudiobenchError, match="cannot read"):
        read_checkpoint(tmp_path / "broken.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    [problem] = Cnn14Spec({"checkpoint": str(tmp_path / "other.pt")}).check()
    assert "not a CNN14 checkpoint in the PANNs layout (no key bn0.weight)" in problem
    [problem] = Cnn14Spec({"checkpoint": str(tmp_path / "missing.pt")}).check()
    assert problem.startswith(f"model.checkpoint: {tmp_path / 'missing.pt'} not found")
