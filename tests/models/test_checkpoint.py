"""PANNs-layout checkpoints: identical logits after loading, clear one-line errors on mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.data.base import ClipSet
from audiobench.kernel.errors import AudiobenchError
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
    with pytest.raises(AudiobenchError, match="is incomplete or corrupt"):
        read_checkpoint(tmp_path / "broken.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    [problem] = Cnn14Spec({"checkpoint": str(tmp_path / "other.pt")}).check()
    assert "not a CNN14 checkpoint in the PANNs layout (no key bn0.weight)" in problem
    [problem] = Cnn14Spec({"checkpoint": str(tmp_path / "missing.pt")}).check()
    assert problem.startswith(f"model.checkpoint: {tmp_path / 'missing.pt'} not found")


class NotATensor:
    """A Python object in a checkpoint: weights_only loading refuses it."""


def _panns_case_state(gen: torch.Generator, n_mels: int = 80, n_classes: int = 3, width: int = 8, depth: int = 2) -> dict:
    """The state dict of /work/shared/cases/panns-checkpoints/make.py (PANNs key layout, seeded weights)."""

    def bn(prefix: str, n: int) -> dict:
        return {f"{prefix}.weight": torch.ones(n), f"{prefix}.bias": torch.zeros(n), f"{prefix}.running_mean": torch.zeros(n),
                f"{prefix}.running_var": torch.ones(n), f"{prefix}.num_batches_tracked": torch.tensor(0)}

    sd = bn("bn0", n_mels)
    channels = [1] + [width * 2**i for i in range(depth)]
    for i in range(depth):
        cin, cout = channels[i], channels[i + 1]
        sd[f"conv_block{i + 1}.conv1.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        sd.update(bn(f"conv_block{i + 1}.bn1", cout))
        sd[f"conv_block{i + 1}.conv2.weight"] = torch.randn(cout, cout, 3, 3, generator=gen) * (2 / (9 * cout)) ** 0.5
        sd.update(bn(f"conv_block{i + 1}.bn2", cout))
    c = channels[-1]
    sd.update({"fc1.weight": torch.randn(c, c, generator=gen) * c**-0.5, "fc1.bias": torch.zeros(c),
               "fc_audioset.weight": torch.randn(n_classes, c, generator=gen) * c**-0.5, "fc_audioset.bias": torch.zeros(n_classes)})
    return sd


def test_panns_checkpoints_case_errors_at_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from audiobench.cli import main
    from audiobench.suite import load_suite

    gen = torch.Generator().manual_seed(0)
    torch.save({"model": _panns_case_state(gen)}, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    torch.save({"model": _panns_case_state(gen, n_mels=64)}, tmp_path / "mels64.pth")
    torch.save({"model": _panns_case_state(gen, n_classes=527)}, tmp_path / "head527.pth")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: panns_checkpoints\nseed: 0\ndataset: {name: synth, classes: 3, clips_per_class: 10, seconds: 1.0}\n"
                     "model: {name: cnn14, checkpoint: good.pth}\ndomains: [mel]\nmethods: [saliency]\nmetrics: [ai, ad]\n"
                     "audio: {n: 0}\n")

    def validate(name: str) -> tuple[int, list[str]]:
        rc = main(["validate", str(suite), "--set", f"model.checkpoint={tmp_path / name}"])
        return rc, capsys.readouterr().err.splitlines()

    assert validate("good.pth") == (0, [])
    rc, [line] = validate("truncated.pth")
    assert rc == 1 and line.startswith(f"{suite}:4: model.checkpoint: {tmp_path / 'truncated.pth'} is incomplete or corrupt")
    assert line.endswith("download or write it again") and "Errno" not in line
    rc, [line] = validate("mels64.pth")
    assert rc == 1 and line == (f"{suite}:4: model.checkpoint: {tmp_path / 'mels64.pth'}: bn0.weight has shape [64] in the "
                                "checkpoint but [80] in the model (the checkpoint's mel bands: set frontend.n_mels to match)")
    rc, [line] = validate("head527.pth")
    assert rc == 1 and f"{tmp_path / 'head527.pth'} has 527 outputs (fc_audioset) but the dataset has 3 classes" in line
    assert "audiobench train SUITE" in line
    # `audiobench train` replaces the head: the 527-output checkpoint is fine there, the 64-band one is not
    load_suite(suite, [f"model.checkpoint={tmp_path / 'head527.pth'}"], training=True)
    with pytest.raises(AudiobenchError, match=r"bn0.weight has shape \[64\]"):
        load_suite(suite, [f"model.checkpoint={tmp_path / 'mels64.pth'}"], training=True)
    # a frontend with 64 bands fits mels64.pth
    assert main(["validate", str(suite), "--set", f"model.checkpoint={tmp_path / 'mels64.pth'}", "--set", "frontend.n_mels=64"]) == 0


def test_unreadable_checkpoints_are_named_with_their_cause(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"model": _panns_case_state(torch.Generator().manual_seed(1))}, good)
    data = good.read_bytes()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut_end.pth").write_bytes(data[:-40])
    (tmp_path / "text.pth").write_bytes(b"<html>404 Not Found</html>")  # a download that went wrong
    torch.save({"model": {"a": torch.zeros(2)}, "extra": NotATensor()}, tmp_path / "objects.pth")
    expected = {
        "empty.pth": "is empty (0 bytes); download or write it again",
        "cut_end.pth": "is incomplete or corrupt (not a readable PyTorch archive",
        "text.pth": "is not a PyTorch checkpoint",
        "objects.pth": "holds Python objects besides tensors (Unsupported global: GLOBAL",
    }
    for name, fragment in expected.items():
        with pytest.raises(AudiobenchError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert fragment in message and str(tmp_path / name) in message, message
        assert "\n" not in message and "\x1b" not in message and "Errno" not in message
