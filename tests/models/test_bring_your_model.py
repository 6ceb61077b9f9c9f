"""A model of the kind people bring, through the documented contract only (tests/plugins/frame_detector.py):
a detector on the linear STFT magnitude with 1-D blocks and per-frame logits. It passes check_model,
trains through the harness, runs end to end with gradient, CAM, L-MAC and occlusion rows in stft2mel,
the mel domain is refused for it, and its 1-D blocks are stated in the captions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from audiobench.cli import main
from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import MODELS, load_plugin_file
from audiobench.methods.base import DomainModel
from audiobench.store.run_dir import load_manifest
from audiobench.testing import check_model
from tests.paths import ROOT, TESTS

PLUGIN = TESTS / "plugins" / "frame_detector.py"


def _suite(tmp_path: Path, domains: list[str]) -> Path:
    suite = {
        "name": "detector", "seed": 0, "plugins": [str(PLUGIN)],
        "dataset": {"name": "beeps", "clips": 32},
        "frontend": {"sample_rate": 8000, "hop_length": 64, "n_mels": 32},  # n_fft: the model declares it
        "model": {"name": "frame_detector", "train": {"epochs": 30, "lr": 0.01, "batch_size": 8}},
        "domains": domains, "contaminations": ["none"], "batch_size": 8, "audio": {"n": 0},
        "methods": ["saliency", {"name": "gradcam", "layer": "last"}, {"name": "lmac", "epochs": 2, "batch_size": 8},
                    {"name": "occlusion", "shape": "time", "window": 0.1}],
        "metrics": ["ai", "ad", "ff"],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_the_detector_passes_check_model_and_explains_absence_without_the_zero_score_trap() -> None:
    load_plugin_file(PLUGIN)
    rules = check_model("frame_detector")  # a detector: checked with its two classes without being told
    assert "front end" in rules
    spec = MODELS.get("frame_detector")()
    fe = Frontend(FrontendParams(sample_rate=8000, hop_length=64, n_mels=32, **spec.required_frontend()))
    torch.manual_seed(0)
    clf = spec.build(["absent", "present"], 32, 8000).eval()
    model = DomainModel(clf, Stft2Mel(), fe)
    x = Stft2Mel().represent(fe, torch.randn(3, 4000) * 0.1).x.requires_grad_(True)
    scores = model(x)
    p = model.probabilities(scores)
    s = scores[:, 1] * 2  # the detector's logit
    assert torch.allclose(p[:, 1], torch.sigmoid(s), atol=1e-6)  # p(present) = sigmoid(s)
    g_absent, g_present = (torch.autograd.grad(scores[:, c].sum(), x, retain_graph=True)[0] for c in (0, 1))
    assert g_present.abs().sum() > 0 and torch.allclose(g_absent, -g_present)  # absence explains -s


def test_mel_is_refused_for_a_model_that_reads_the_linear_magnitude(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(_suite(tmp_path, ["stft2mel", "mel"]))]) == 1
    err = capsys.readouterr().err
    assert ("domain mel cannot serve model 'frame_detector': it reads the linear STFT magnitude, and the mel "
            "filterbank cannot be inverted (use stft2mel)") in err


def test_the_detector_runs_end_to_end_and_its_1d_blocks_are_stated(tmp_path: Path) -> None:
    assert main(["run", str(_suite(tmp_path, ["stft2mel"])), "-o", str(tmp_path / "run"), "-q"]) == 0
    manifest = load_manifest(tmp_path / "run")
    assert manifest["suite"]["frontend"]["n_fft"] == 256  # filled in from the model's declaration
    assert len(manifest["cells"]) == 4
    # trained through the contract (linear grid, its own loss): above chance (0.5) with a margin
    assert manifest["classifier"]["accuracy"]["test"] >= 0.75
    notes = {c["row"]: " ".join(c.get("notes", [])) for c in manifest["cells"]}
    assert "1-D blocks" in notes["GradCAM"] and "1-D blocks" in notes["L-MAC"]
    assert "1-D blocks" not in notes["Saliency"]
    table = (tmp_path / "run" / "tables").glob("main__*.md")
    assert any("GradCAM (STFT→Mel): its maps come from 1-D blocks" in t.read_text() for t in table)


EXAMPLE = ROOT / "examples" / "bring_your_model.py"


def test_the_readme_example_is_the_example_file_and_at_most_30_lines() -> None:
    code = EXAMPLE.read_text()
    assert len([line for line in code.splitlines() if line.strip()]) <= 30
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{code}```" in readme  # the README shows the file as it is, so they cannot drift apart


def test_the_readme_example_loads_its_weights_passes_check_model_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    load_plugin_file(EXAMPLE)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    plugin = sys.modules[MODELS.get("tiny_cnn").__module__]
    torch.save(plugin.TinyCnn(3).state_dict(), weights)  # "pretrained" weights of the plugin's network, 3 classes
    assert "scores[mel]" in check_model("tiny_cnn", params={"checkpoint": str(weights)})  # every rule, every domain
    suite = {
        "name": "mine", "seed": 0, "plugins": [str(EXAMPLE)],
        "dataset": {"name": "synth", "classes": 3, "clips_per_class": 6, "seconds": 0.5},
        "frontend": {"sample_rate": 8000, "n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
        "model": {"name": "tiny_cnn", "checkpoint": str(weights)},
        "methods": ["saliency", {"name": "gradcam", "layer": "last"}], "metrics": ["ai", "ad"], "audio": {"n": 0},
    }
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q"]) == 0
    assert len(load_manifest(tmp_path / "run")["cells"]) == 4  # two methods x the two default domains
    suite["model"]["checkpoint"] = str(tmp_path / "missing.pt")
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    capsys.readouterr()
    assert main(["validate", str(path)]) == 1
    assert f"model.checkpoint: {tmp_path / 'missing.pt'} not found" in capsys.readouterr().err


def test_block_channels_default_reads_each_blocks_last_convolution() -> None:
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.models.base import AudioClassifier

    class Two(AudioClassifier):
        def __init__(self, last: torch.nn.Module):
            super().__init__()
            self.a = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 6, 1), torch.nn.ReLU())
            self.b = last

        def blocks(self) -> list[torch.nn.Module]:
            return [self.a, self.b]

    assert Two(torch.nn.Conv1d(6, 9, 1)).block_channels() == [6, 9]
    with pytest.raises(AudiobenchError, match="block 2 holds no convolution to read its channels from; override"):
        Two(torch.nn.LSTM(6, 8)).block_channels()


def test_a_detector_is_declared_on_its_spec_validated_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """validate refuses a detector on data with other than two classes; list models says what it is;
    check_model refuses a spec that does not declare what its network is."""
    raw = yaml.safe_load(_suite(tmp_path, ["stft2mel"]).read_text())
    raw["dataset"] = {"name": "synth", "classes": 3, "clips_per_class": 6, "seconds": 0.5}
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "three.yaml")]) == 1
    assert "model frame_detector is a detector (classes absent, present), but the dataset has 3 classes" in \
        capsys.readouterr().err
    assert main(["list", "models", "--verbose", "--plugins", str(PLUGIN)]) == 0
    out = capsys.readouterr().out
    assert "input: linear; output kind: softmax; trained: yes (model.train); a detector (classes absent, present); " \
           "per-frame scores pooled by logmeanexp" in out
    load_plugin_file(PLUGIN)
    undeclared = type("Undeclared", (MODELS.get("frame_detector"),), {"detector": False, "frame_pooling": None})
    with pytest.raises(AssertionError, match="the spec declares detector False and frame_pooling None, the network"):
        check_model(undeclared())
