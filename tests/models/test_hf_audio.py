"""``hf_audio`` on tiny random AST folders: the model contract, AST's own forward pass reproduced through the
harness's blocks, the patch grid's layout, the class order, and the refusals (nothing downloads)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.hf_audio import KALDI_FLOOR, ast_frontend
from audiobench.testing import check_model
from tests.models.hf_folders import TINY_AST, ast_folder, wav2vec2_folder
from tests.paths import SUITES

pytest.importorskip("transformers")
NAMES = ["c0", "c1", "c2"]


def _built(folder: Path, classes: list[str] = NAMES):
    return MODELS.get("hf_audio")({"path": str(folder)}).build(classes, TINY_AST["num_mel_bins"], 16000)


def test_a_folder_and_the_embedded_ast_pass_check_model(tmp_path: Path) -> None:
    folder = ast_folder(tmp_path / "ast", NAMES)
    assert "scores[mel]" in check_model("hf_audio", params={"path": str(folder)})
    embedded = {"hidden": 32, "layers": 2, "heads": 2, "max_length": 48, "patch_size": 8, "frequency_stride": 8,
                "time_stride": 8}
    assert "scores[stft2mel]" in check_model("hf_audio", params=embedded)


def test_the_front_end_is_asts_fbank_from_the_extractor(tmp_path: Path) -> None:
    spec = MODELS.get("hf_audio")({"path": str(ast_folder(tmp_path / "ast"))})
    want = {"sample_rate": 16000, "n_mels": 32, "win_length": 400, "hop_length": 160, "n_fft": 512, "window": "hann",
            "mel_power": 2, "mel_scale": "htk", "f_min": 20.0}
    assert spec.required_frontend() == want
    assert ast_frontend(8000, 64)["win_length"] == 200 and ast_frontend(8000, 64)["n_fft"] == 256


def test_scores_are_asts_own_forward_pass_on_its_normalised_log_mel(tmp_path: Path) -> None:
    """The harness's blocks (patch grids, tokens set aside and put back) give HF's logits on the input_values
    the feature extractor's normalisation makes of the log mel, padded with 0 to max_length."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    folder = ast_folder(tmp_path / "ast", NAMES)
    clf = _built(folder)
    hf = AutoModelForAudioClassification.from_pretrained(folder, local_files_only=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(1)
    logmel = torch.randn(3, 1, 29, 32) - 2.0  # 29 frames: padded to 40
    padded = torch.cat([logmel[:, 0], torch.zeros(3, 11, 32)], dim=1)
    values = torch.from_numpy(extractor.normalize(padded.numpy()))
    assert torch.allclose(clf.input_values(logmel), values, atol=1e-6)  # (x - mean) / (2 std): mean -3, std 2.5
    with torch.no_grad():
        assert torch.allclose(clf(logmel), hf(values).logits, atol=1e-5)
        long = torch.randn(2, 1, 55, 32)  # longer than max_length: cut
        assert torch.allclose(clf(long), hf(torch.from_numpy(extractor.normalize(long[:, 0, :40].numpy()))).logits, atol=1e-5)


def test_block_outputs_are_the_layers_patch_tokens_on_a_time_first_grid(tmp_path: Path) -> None:
    """A layer's grid holds its hidden state of patch (t, f) at [:, :, t, f]; AST numbers patches frequency-major
    (token 2 + f T' + t). Time patches starting past the input's frames (padding) are left out."""
    folder = ast_folder(tmp_path / "ast", NAMES)
    clf = _built(folder)
    torch.manual_seed(2)
    logmel = torch.randn(2, 1, 29, 32)
    t_all, f_all = (40 - 8) // 6 + 1, (32 - 8) // 8 + 1  # 6 time patches, 4 frequency patches
    valid = math.ceil(29 / 6)  # patches starting at frames 0, 6, 12, 18, 24: 5
    with torch.no_grad():
        feats = clf.features(logmel)
        tokens = clf.hf.audio_spectrogram_transformer.embeddings(clf.input_values(logmel))
        for layer, grid in zip(clf.hf.audio_spectrogram_transformer.layers, feats, strict=True):
            tokens = layer(tokens)
            assert grid.shape == (2, 32, valid, f_all)
            for t, f in [(0, 0), (3, 1), (4, 3), (1, 2)]:
                assert torch.equal(grid[:, :, t, f], tokens[:, 2 + f * t_all + t])
    assert clf.block_names() == ["layer1", "layer2"] and clf.block_channels() == [32, 32]
    assert clf.token_grid(29) == (2, valid, f_all)
    values = torch.arange(t_all * f_all, dtype=torch.float32)[None]
    assert clf.patch_map(values, 29)[0, 0, 3, 2].item() == 2 * t_all + 3


def test_labels_are_matched_by_name_and_other_labels_are_refused(tmp_path: Path) -> None:
    folder = ast_folder(tmp_path / "ast", ["b", "c", "a"])
    x = torch.randn(2, 1, 40, 32)
    with torch.no_grad():
        own = _built(folder, ["b", "c", "a"])(x)
        reordered = _built(folder, ["a", "b", "c"])(x)
    assert torch.allclose(reordered, own[:, [2, 0, 1]], atol=1e-6)
    with pytest.raises(AudiobenchError, match=r"has labels \['b', 'c', 'a'\].*not the dataset's classes"):
        _built(folder, ["a", "b", "d"])
    assert MODELS.get("hf_audio")({"path": str(folder)}).check(n_classes=4) == [
        f"model.path: {folder} classifies 3 labels, the dataset has 4 classes"]


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_a_waveform_folder_reads_the_waveform_and_gives_the_folders_logits(tmp_path: Path, kind: str) -> None:
    """wav2vec2 / HuBERT: input kind waveform (per spec instance), the folder's own forward pass through the
    harness's blocks ([B, D, T', 1] frame grids), the feature extractor's normalisation, the class order."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from audiobench.models.hf_waveform import unit_variance

    folder = wav2vec2_folder(tmp_path / kind, NAMES, kind)
    spec = MODELS.get("hf_audio")({"path": str(folder)})
    assert (spec.input_kind, spec.has_attention, spec.trainable) == ("waveform", False, False)
    assert spec.required_frontend() == {"sample_rate": 16000}
    assert "reads the waveform" in Mel().model_problem(spec)
    clf = _built(folder, ["c2", "c0", "c1"])  # the dataset's order: rows put in it
    hf = AutoModelForAudioClassification.from_pretrained(folder, local_files_only=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    wave = torch.randn(3, 4000, generator=torch.Generator().manual_seed(3)) * 0.3 + 0.05
    values = torch.from_numpy(__import__("numpy").stack(extractor(list(wave.numpy()), sampling_rate=16000,
                                                                  return_tensors="np").input_values))
    assert torch.allclose(unit_variance(wave), values.float(), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(clf(wave), hf(values.float()).logits[:, [2, 0, 1]], atol=1e-5)
        feats = clf.features(wave)
    assert len(feats) == 2 and all(f.shape[:2] == (3, 16) and f.shape[3] == 1 for f in feats)
    assert check_model("hf_audio", params={"path": str(folder)}) == ["front end", "built", "scores[stft2mel]",
                                                                       "scores[stft2mel_log1p]"]


def test_other_model_types_and_missing_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    from transformers import WhisperConfig

    WhisperConfig().save_pretrained(tmp_path / "whisper")
    problems = MODELS.get("hf_audio")({"path": str(tmp_path / "whisper")}).check()
    assert len(problems) == 1 and "holds a 'whisper' model; hf_audio loads" in problems[0]
    with pytest.raises(AudiobenchError, match="holds a 'whisper' model"):
        _built(tmp_path / "whisper")
    assert "has no config.json" in MODELS.get("hf_audio")({"path": str(tmp_path / "none")}).check()[0]


def test_the_network_reads_the_natural_log_mel_not_log1p(tmp_path: Path) -> None:
    """In the mel domain (log1p grid L) the network input is log(expm1(L)), floored at Kaldi's 1.19e-7."""
    clf = _built(ast_folder(tmp_path / "ast", NAMES))
    fe = Frontend(FrontendParams(**ast_frontend(16000, 32)))
    grid = torch.tensor([0.0, 1e-9, 0.5, 3.0]).reshape(1, 1, 4, 1).expand(1, 1, 4, 32)
    inp = clf.network_input(Mel(), fe, grid)
    want = torch.tensor([math.log(KALDI_FLOOR), math.log(KALDI_FLOOR), math.log(math.expm1(0.5)), math.log(math.expm1(3.0))])
    assert torch.allclose(inp[0, 0, :, 0], want, atol=1e-4)


def test_attention_maps_are_the_layers_softmax_rows_with_gradients(tmp_path: Path) -> None:
    clf = _built(ast_folder(tmp_path / "ast", NAMES))
    x = torch.randn(2, 1, 40, 32, requires_grad=True)
    scores, maps = clf.attention_maps(x)
    n = 2 + 6 * 4
    assert len(maps) == 2 and all(a.shape == (2, 2, n, n) for a in maps)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 2, n), atol=1e-5)
    grads = torch.autograd.grad(scores[:, 1].sum(), maps)
    assert all(bool((g != 0).any()) for g in grads)
    from audiobench.models.cnn14 import Cnn14

    with pytest.raises(AudiobenchError, match="has no attention layers"):
        Cnn14(3, n_mels=32, width=4, depth=2).attention_maps(x)


def test_the_ast_quickstart_validates_with_its_front_end_filled_in(capsys: pytest.CaptureFixture) -> None:
    from audiobench.cli import main

    suite = SUITES / "quickstart_ast.yaml"
    assert main(["validate", str(suite)]) == 0
    assert "44 cells: 11 methods x 2 domains x 2 contaminations" in capsys.readouterr().out


def test_validate_refuses_a_cam_on_the_last_ast_layer_whose_tokens_never_reach_the_head(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    from audiobench.cli import main

    suite = {"name": "astlast", "seed": 0, "dataset": {"name": "synth", "classes": 3, "clips_per_class": 10, "seconds": 1.0},
             "model": {"name": "hf_audio", "hidden": 32, "layers": 2, "heads": 2}, "split": "test",
             "domains": ["stft2mel"], "contaminations": ["none"],
             "methods": [{"name": "gradcam", "layer": "last"}, {"name": "gradcam_pp", "layer": 2},
                         {"name": "gradcam", "layer": -2}, {"name": "guided_gradcam", "layer": 1}]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("its patch tokens never reach the head" in line and "use -2" in line for line in err)
    assert err[0].split(": ")[1] == "methods.0.layer" and err[1].split(": ")[1] == "methods.1.layer"
    assert MODELS.get("hf_audio")({"layers": 4}).silent_blocks().keys() == {4}  # the embedded AST's last layer
    assert MODELS.get("cnn14")().silent_blocks() == {}
