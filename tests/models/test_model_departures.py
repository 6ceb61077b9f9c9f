"""The embedded models' settings that select the reference networks' form (docs/departures.md #13, #14):
CNN14's ``block_dropout``, ``head``, ``init`` and ``input_scale`` (PANNs, Kong et al. 2020, and the
SpeechBrain L-MAC recipe) and clap_synth's ``batching`` (CLAP's plain shuffled batches). Each default
keeps the earlier network, its draws and its cache keys; each other value is checked against an
independent computation (torch's dropout sequence, a hand-written linear layer, xavier's bound,
torchaudio's MelSpectrogram and AmplitudeToDB)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchaudio
import yaml
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.data.synth import SynthDataset
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.checkpoint import read_checkpoint, save_checkpoint
from audiobench.models.clap_synth import ClapSynthSpec, epoch_batches
from audiobench.models.cnn14 import Cnn14, Cnn14Spec, log1p_mel_to_db
from audiobench.models.training import classifier_key, get_classifier, train_classifier
from audiobench.suite import SuiteErrors, load_suite
from audiobench.suite.schema import TrainParams
from audiobench.testing import TINY_SUITE, check_model

N_MELS = 32
FRONT = {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": N_MELS}
NEW_CNN14 = {"block_dropout", "head", "init", "input_scale"}


def _logmel(b: int = 4, t: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, t, N_MELS, generator=torch.Generator().manual_seed(seed)) * 3


# -- cnn14: defaults keep the earlier network and keys --------------------------------------------

def test_cnn14_defaults_leave_the_dump_and_the_training_key_unchanged() -> None:
    assert set(Cnn14Spec().params.model_dump()) == {"width", "depth", "dropout", "checkpoint"}  # as before
    explicit = Cnn14Spec({"block_dropout": 0.0, "head": "fc1", "init": "default", "input_scale": "log1p"})
    fe = Frontend(FrontendParams(**FRONT))
    tp = TrainParams(epochs=1)

    def key(spec: Cnn14Spec) -> str:
        return classifier_key(spec, tp, 3, fe, {"d": 1}, 0)

    assert key(explicit) == key(Cnn14Spec())
    for name, value in (("block_dropout", 0.2), ("head", "linear"), ("init", "xavier"), ("input_scale", "db")):
        spec = Cnn14Spec({name: value})
        assert spec.params.model_dump()[name] == value and key(spec) != key(Cnn14Spec()), name
    # the default network registers no module between the blocks (its dropout draws are the earlier ones)
    assert sum(isinstance(m, nn.Dropout) for m in Cnn14(3, n_mels=N_MELS, width=4, depth=3).modules()) == 1


def test_cnn14_settings_refuse_bad_values() -> None:
    for bad in ({"head": "fc2"}, {"init": "kaiming"}, {"input_scale": "log"}, {"block_dropout": 1.0},
                {"block_dropout": -0.1}):
        with pytest.raises(ValidationError):
            Cnn14Spec(bad)
    with pytest.raises(ValueError, match="head must be one of fc1, linear, got 'fc2'"):
        Cnn14(3, head="fc2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"block_dropout must lie in \[0, 1\)"):
        Cnn14(3, block_dropout=1.0)


# -- block_dropout --------------------------------------------------------------------------------

def test_block_dropout_follows_every_block_in_training_only() -> None:
    """PANNs Cnn14.forward: x = F.dropout(conv_block_i(x), p, training) after every block."""
    torch.manual_seed(0)
    model = Cnn14(3, n_mels=N_MELS, width=4, depth=3, block_dropout=0.3)
    plain = Cnn14(3, n_mels=N_MELS, width=4, depth=3)
    plain.load_state_dict(model.state_dict())
    x = _logmel()
    model.eval(), plain.eval()
    with torch.no_grad():  # evaluation: no dropout at all
        for a, b in zip(model.features(x), plain.features(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)
    model.train(), plain.train()
    torch.manual_seed(5)
    with torch.no_grad():
        got = model.features(x)
    torch.manual_seed(5)  # the same draws, by PANNs' sequence of functional calls
    with torch.no_grad():
        h = plain.bn0(x.transpose(1, 3)).transpose(1, 3)
        expected = []
        for blk in plain.blocks():
            h = F.dropout(blk(h), p=0.3, training=True)
            expected.append(h)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    zeros = float((got[0] == 0).float().mean() - (plain.features(x)[0] == 0).float().mean())
    assert zeros > 0.15  # about 0.3 of the non-zero outputs dropped


# -- head -----------------------------------------------------------------------------------------

def test_linear_head_is_one_linear_layer_on_the_pooled_embedding() -> None:
    torch.manual_seed(0)
    model = Cnn14(5, n_mels=N_MELS, width=4, depth=3, head="linear").eval()
    assert not hasattr(model, "fc1") and not any(k.startswith("fc1.") for k in model.state_dict())
    assert [k for k in model.state_dict() if k.startswith("fc")] == ["fc_audioset.weight", "fc_audioset.bias"]
    assert model.fc_audioset.in_features == 16  # the last block's channels: width * 2 ** (depth - 1)
    x = _logmel()
    with torch.no_grad():
        last = model.features(x)[-1]  # [B, C, T', F']
        per_frame = last.mean(dim=3)
        pooled = per_frame.max(dim=2).values + per_frame.mean(dim=2)
        by_hand = pooled @ model.fc_audioset.weight.T + model.fc_audioset.bias
        torch.testing.assert_close(model(x), by_hand, rtol=1e-6, atol=1e-6)
    assert "fc1.weight" in Cnn14(5, n_mels=N_MELS, width=4, depth=3).state_dict()


def _clips(n: int = 6, classes: int = 5):
    from audiobench.data.base import ClipSet

    waves = torch.randn(n, 4000, generator=torch.Generator().manual_seed(0)) * 0.3
    return ClipSet(waves, torch.arange(n) % classes, [f"c{i}" for i in range(n)], [f"k{i}" for i in range(classes)], 16000)


def test_a_linear_head_checkpoint_loads_and_a_head_mismatch_is_one_line(tmp_path: Path) -> None:
    fe = Frontend(FrontendParams(**FRONT))
    clips = _clips()
    torch.manual_seed(1)
    model = Cnn14Spec({"width": 4, "depth": 3, "head": "linear"}).build(clips.class_names, N_MELS).eval()
    path = save_checkpoint(model, tmp_path / "linear.pt", {"model": {"name": "cnn14", "head": "linear"}})
    assert not any(k.startswith("fc1.") for k in read_checkpoint(path))
    spec = Cnn14Spec({"checkpoint": str(path)})  # the head is read off the file, as width and depth
    assert spec.head_kind() == "linear" and spec.check(n_mels=N_MELS, n_classes=5) == []
    loaded = get_classifier(spec, None, {"test": clips}, fe, {}, 0, torch.device("cpu"))
    x = fe.logmel(clips.waveforms)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    (problem,) = Cnn14Spec({"checkpoint": str(path), "head": "fc1"}).check(n_mels=N_MELS)
    assert problem == (f"model.head is fc1 but the checkpoint {path} has no fc1 layer (head linear); leave head out "
                       "to take the checkpoint's (loading or fine-tuning keeps every layer of the file)")
    panns = save_checkpoint(Cnn14(5, n_mels=N_MELS, width=4, depth=3), tmp_path / "panns.pt", {})
    (problem,) = Cnn14Spec({"checkpoint": str(panns), "head": "linear"}).check(n_mels=N_MELS)
    assert "has an fc1 layer (head fc1)" in problem and "\n" not in problem
    assert Cnn14Spec({"checkpoint": str(panns)}).head_kind() == "fc1"


# -- init -----------------------------------------------------------------------------------------

def test_xavier_init_is_panns_init_layer_and_init_bn() -> None:
    torch.manual_seed(0)
    model = Cnn14(10, n_mels=N_MELS, width=16, depth=3, init="xavier")
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            field = w[0, 0].numel() if w.dim() == 4 else 1  # kernel area
            fan_in, fan_out = w.shape[1] * field, w.shape[0] * field
            bound = math.sqrt(6 / (fan_in + fan_out))  # xavier_uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
            assert float(w.abs().max()) <= bound, name
            if w.numel() >= 2000:  # the std of U(-a, a) is a / sqrt(3): 10 % is over 5 standard errors here
                assert abs(float(w.std()) / (bound / math.sqrt(3)) - 1) < 0.1, name
                assert float(w.abs().max()) > 1 / math.sqrt(fan_in), name  # beyond PyTorch's default bound
            if m.bias is not None:
                assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
    default = Cnn14(10, n_mels=N_MELS, width=16, depth=3)
    assert float(default.fc1.bias.detach().abs().max()) > 0  # PyTorch's default draws the biases
    w = default.conv_block2.conv2.weight.detach()
    assert float(w.abs().max()) <= 1 / math.sqrt(w[0].numel())  # Kaiming-uniform(a = sqrt 5): 1 / sqrt(fan_in)


# -- input_scale ----------------------------------------------------------------------------------

def test_db_input_is_10_log10_of_the_power_mel() -> None:
    """Oracle: torchaudio's MelSpectrogram (power 2) and AmplitudeToDB('power', top_db=None), i.e.
    10 log10(max(mel, 1e-10)) as torchlibrosa's power_to_db in PANNs."""
    params = FrontendParams(**FRONT, mel_power=2)
    fe = Frontend(params)
    waves = torch.randn(3, 8000, generator=torch.Generator().manual_seed(2)) * 0.2
    waves[2] = 0.0  # silence: -100 dB
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=params.sample_rate, n_fft=params.n_fft, win_length=params.win_length,
        hop_length=params.hop_length, n_mels=N_MELS, window_fn=torch.hamming_window, power=2.0,
        mel_scale="htk", norm=None, center=True, pad_mode="reflect")(waves)  # [B, n_mels, T]
    oracle = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)(mel).transpose(1, 2).unsqueeze(1)
    model = Cnn14(3, n_mels=N_MELS, width=4, depth=2, input_scale="db")
    got = model.scaled_input(fe.logmel(waves))
    torch.testing.assert_close(got, oracle, rtol=1e-4, atol=1e-3)
    assert float(got[2].max()) == pytest.approx(-100.0)
    assert float(oracle[:2].min()) < 0 < float(oracle[:2].max())  # dB: negative below 1, where log1p is not
    torch.testing.assert_close(log1p_mel_to_db(torch.zeros(2)), torch.full((2,), -100.0))
    # bn0 reads the dB: the same weights on the log1p scale, fed the dB values, give the same blocks
    plain = Cnn14(3, n_mels=N_MELS, width=4, depth=2).eval()
    plain.load_state_dict(model.state_dict())
    x = fe.logmel(waves)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain(log1p_mel_to_db(x)), rtol=0, atol=0)


def test_db_input_requires_the_power_mel_and_passes_the_model_contract(tmp_path: Path) -> None:
    assert Cnn14Spec({"input_scale": "db"}).required_frontend() == {"mel_power": 2}
    assert Cnn14Spec().required_frontend() == {}
    every = {"width": 4, "depth": 2, "block_dropout": 0.2, "head": "linear", "init": "xavier", "input_scale": "db"}
    assert check_model("cnn14", params=every) == ["front end", "built", "scores[stft2mel]", "scores[stft2mel_log1p]",
                                                  "scores[mel]"]
    model = {"name": "cnn14", "width": 4, "depth": 2, "input_scale": "db"}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "model": model}, sort_keys=False))
    assert load_suite(path).frontend.mel_power == 2  # filled in
    path.write_text(yaml.safe_dump({**TINY_SUITE, "model": model, "frontend": {**FRONT, "mel_power": 1}}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=r"suite\.yaml:\d+: frontend.mel_power is 1, but model 'cnn14' reads 2"):
        load_suite(path)


def test_a_checkpoint_trained_on_another_input_scale_is_reported(tmp_path: Path) -> None:
    model = Cnn14(5, n_mels=N_MELS, width=4, depth=2)
    path = save_checkpoint(model, tmp_path / "db.pt", {"model": {"name": "cnn14", "width": 4, "input_scale": "db"}})
    assert Cnn14Spec({"checkpoint": str(path), "input_scale": "db"}).check(n_mels=N_MELS) == []
    (problem,) = Cnn14Spec({"checkpoint": str(path)}).check(n_mels=N_MELS)
    assert problem == (f"model.input_scale is log1p but the checkpoint {path} was trained on input_scale db "
                       "(db.json); set input_scale: db")


@pytest.mark.slow
def test_a_cnn14_with_every_reference_setting_trains_and_round_trips(tmp_path: Path) -> None:
    """PANNs' block dropout and init, the recipe's linear head, the dB input: it learns the synthetic
    classes (chance 1/3) and the checkpoint it writes reads back to the same logits."""
    fe = Frontend(FrontendParams(**FRONT, mel_power=2))
    data = SynthDataset({"classes": 3, "clips_per_class": 20, "seconds": 0.5})
    splits = {s: data.load(s, 16000) for s in ("train", "valid", "test")}
    spec = Cnn14Spec({"width": 4, "depth": 2, "block_dropout": 0.2, "head": "linear", "init": "xavier",
                      "input_scale": "db", "dropout": 0.0})
    trained = train_classifier(spec, TrainParams(epochs=15, batch_size=8, lr=3e-3), splits, fe, data.fingerprint(), 0,
                               torch.device("cpu"), progress=False)
    assert trained.info["model"]["head"] == "linear"
    # measured: 1.0 at seeds 0-4, with 1 and 2 threads
    assert trained.info["accuracy"]["valid"] >= 0.8, trained.info["accuracy"]
    path = save_checkpoint(trained.model, tmp_path / "ref.pt", {"model": trained.info["model"]})
    again = Cnn14Spec({"checkpoint": str(path), "input_scale": "db"})
    assert again.check(n_mels=N_MELS, n_classes=3) == []
    loaded = get_classifier(again, None, splits, fe, {}, 0, torch.device("cpu"))
    x = fe.logmel(splits["test"].waveforms)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trained.model.eval()(x), rtol=0, atol=0)


# -- clap_synth batching --------------------------------------------------------------------------

def _old_one_per_class(labels: torch.Tensor, n_classes: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The batches clap_synth drew before ``batching`` existed (its training loop, verbatim)."""
    by_class = [torch.nonzero(labels == c).flatten() for c in range(n_classes)]
    by_class = [ix for ix in by_class if len(ix)]
    steps = min(len(ix) for ix in by_class)
    cols = torch.stack([ix[torch.randperm(len(ix), generator=gen)[:steps]] for ix in by_class], dim=1)
    return [cols[step][torch.randperm(cols.shape[1], generator=gen)] for step in torch.randperm(steps, generator=gen).tolist()]


def test_one_per_class_batches_never_repeat_a_class_and_are_the_earlier_draws() -> None:
    labels = torch.tensor([0] * 5 + [1] * 7 + [2] * 6)[torch.randperm(18, generator=torch.Generator().manual_seed(3))]
    batches = list(epoch_batches(labels, 3, "one_per_class", 32, torch.Generator().manual_seed(0)))
    assert len(batches) == 5  # the smallest class's clips
    for idx in batches:
        assert sorted(labels[idx].tolist()) == [0, 1, 2]
    earlier = _old_one_per_class(labels, 3, torch.Generator().manual_seed(0))
    assert [b.tolist() for b in batches] == [b.tolist() for b in earlier]


def test_random_batches_are_a_shuffle_of_every_clip_and_can_hold_a_class_twice() -> None:
    labels = torch.arange(3).repeat(10)  # 3 classes x 10 clips
    batches = list(epoch_batches(labels, 3, "random", 8, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [8, 8, 8, 6]
    assert sorted(torch.cat(batches).tolist()) == list(range(30))  # each clip once
    # 8 clips of 3 classes: every batch repeats a class (pigeonhole); one_per_class never does
    assert all(len(set(labels[b].tolist())) < len(b) for b in batches)
    assert [len(b) for b in epoch_batches(torch.arange(3).repeat(3), 3, "random", 4, torch.Generator())] == [4, 4]
    with pytest.raises(AudiobenchError, match="needs model.train.batch_size >= 2"):
        next(epoch_batches(labels, 3, "random", 1, torch.Generator()))


@pytest.mark.slow
def test_clap_synth_batching_keeps_its_model_key_at_the_default_and_trains_random() -> None:
    assert "batching" not in ClapSynthSpec().params.model_dump()
    with pytest.raises(ValidationError):
        ClapSynthSpec({"batching": "balanced"})
    fe = Frontend(FrontendParams(**FRONT))
    data = SynthDataset({"classes": 3, "clips_per_class": 8, "seconds": 0.5})
    splits = {s: data.load(s, 16000) for s in ("train", "valid", "test")}
    tp = TrainParams(epochs=2, batch_size=5, lr=3e-3, mixture_prob=0.5)
    small = {"width": 4, "depth": 2, "dim": 16, "text_width": 16}

    def key(extra: dict) -> str:
        return ClapSynthSpec({**small, **extra}).model_key(tp, splits, fe, data.fingerprint(), 0)

    assert key({"batching": "one_per_class"}) == key({}) != key({"batching": "random"})
    spec = ClapSynthSpec({**small, "batching": "random"})
    torch.manual_seed(0)
    model = spec.build(splits["train"].class_names, N_MELS, 16000)
    info = spec._train(model, tp, splits, fe, 0, torch.device("cpu"), progress=False)
    assert info["model"]["batching"] == "random"
    assert all(math.isfinite(h["train_loss"]) for h in info["history"])
