"""Tiny random AST and wav2vec2 folders run end to end through ``audiobench run``: gradient, CAM (on a transformer layer),
L-MAC (on the layers' patch grids) and occlusion rows in stft2mel and mel, its front end filled in from the
folder's feature extractor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audiobench.cli import main
from audiobench.store.run_dir import load_manifest
from tests.models.hf_folders import ast_folder, wav2vec2_folder

pytest.importorskip("transformers")


def _suite(tmp_path: Path, methods: list, model: dict | None = None) -> Path:
    folder = ast_folder(tmp_path / "ast", max_length=56)  # 0.5 s clips are 51 frames: padded, as AST pads
    suite = {
        "name": "tiny_ast", "seed": 0,
        "dataset": {"name": "synth", "classes": 3, "clips_per_class": 6, "seconds": 0.5},
        "model": model or {"name": "hf_audio", "path": str(folder)},
        "domains": ["stft2mel", "mel"], "contaminations": ["none"], "batch_size": 4, "audio": {"n": 1},
        "methods": methods, "metrics": ["ai", "ad", "ff", "fid_in"],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_a_tiny_ast_runs_end_to_end_with_gradient_cam_lmac_and_occlusion(tmp_path: Path) -> None:
    methods = ["saliency", {"name": "integrated_gradients", "n_steps": 4}, {"name": "gradcam", "layer": -2},
               {"name": "lmac", "epochs": 1, "batch_size": 4, "hidden": 8, "blocks": 2},
               {"name": "occlusion", "shape": "time", "window": 0.1}]
    assert main(["run", str(_suite(tmp_path, methods)), "-o", str(tmp_path / "run"), "-q", "--limit", "6"]) == 0
    manifest = load_manifest(tmp_path / "run")
    frontend = manifest["suite"]["frontend"]
    assert (frontend["n_mels"], frontend["win_length"], frontend["hop_length"], frontend["n_fft"]) == (32, 400, 160, 512)
    cells = {(c["domain"], c["row"]) for c in manifest["cells"]}
    rows = {"Saliency", "IG", "GradCAM", "L-MAC", "Occlusion (time, 10 %)"}
    assert cells == {(d, r) for d in ("stft2mel", "mel") for r in rows}
    assert "| GradCAM" in (tmp_path / "run" / "tables" / "main__synth__none.md").read_text()


def test_validate_names_a_layer_the_ast_does_not_have(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(_suite(tmp_path, [{"name": "gradcam", "layer": 5}]))]) == 1
    assert "layer" in capsys.readouterr().err


def test_a_tiny_wav2vec2_runs_end_to_end_in_stft2mel_and_mel_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A waveform transformer: each row read as ISTFT(M|X|e^{j angle X}) with its clip's phase; its encoder
    layers are 1-D blocks (the run says CAM and L-MAC maps vary over time only)."""
    folder = wav2vec2_folder(tmp_path / "w2v")
    methods = ["saliency", {"name": "gradcam", "layer": "last"},
               {"name": "lmac", "epochs": 1, "batch_size": 4, "hidden": 8, "blocks": 2},
               {"name": "occlusion", "shape": "time", "window": 0.1}]
    path = _suite(tmp_path, methods, {"name": "hf_audio", "path": str(folder)})
    assert main(["validate", str(path)]) == 1
    assert "domain mel cannot serve model 'hf_audio': it reads the waveform" in capsys.readouterr().err
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q", "--limit", "6", "--set", "domains=[stft2mel]"]) == 0
    manifest = load_manifest(tmp_path / "run")
    notes = {c["row"]: " ".join(c.get("notes", [])) for c in manifest["cells"]}
    assert set(notes) == {"Saliency", "GradCAM", "L-MAC", "Occlusion (time, 10 %)"}
    assert "1-D blocks" in notes["GradCAM"] and "1-D blocks" in notes["L-MAC"] and "1-D blocks" not in notes["Saliency"]
