"""The papers' suites end to end on generated data: --set overrides, validate, train, run, --compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from audiobench.cli import main
from audiobench.kernel.errors import AudiobenchError
from audiobench.store.run_dir import load_run
from audiobench.suite import apply_overrides, load_suite
from tests.data.test_audio_files import _write_bad_files
from tests.fakedata import make_esc50, make_speech_folder
from tests.models.test_checkpoint import _panns_file
from tests.paths import ROOT

SUITES = ROOT / "suites"
OOD = SUITES / "esc50_ood.yaml"
DATASET_LINE = OOD.read_text().splitlines().index("dataset:") + 1
WHAM_LINE = next(i for i, line in enumerate(OOD.read_text().splitlines(), 1) if "wham_noise/tr, snr_db" in line)
TINY = [  # a tiny model and front end, short clips: the suite's methods, domains and contamination as they are
    "dataset.seconds=0.5",
    "frontend={sample_rate: 8000, n_fft: 256, win_length: 256, hop_length: 128, n_mels: 32}",
    "model.width=4", "model.depth=3", "model.train={epochs: 2, batch_size: 8}", "batch_size=4", "audio.n=1",
]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_overrides_walk_mappings_lists_and_names() -> None:
    data = {"name": "x", "dataset": "esc50", "methods": ["saliency", "smoothgrad{n_samples: 5}"], "model": {"name": "cnn14"}}
    out, touched = apply_overrides(data, [
        "dataset.root=/data/ESC-50", "methods.1.stdev=0.2", "model.train.epochs=3", "limit=4", "model.checkpoint=",
        "dataset.test_folds=[4, 5]",
    ])
    assert out["dataset"] == {"name": "esc50", "root": "/data/ESC-50", "test_folds": [4, 5]}
    assert out["methods"][1] == {"name": "smoothgrad", "n_samples": 5, "stdev": 0.2}
    assert out["model"] == {"name": "cnn14", "train": {"epochs": 3}, "checkpoint": None} and out["limit"] == 4
    assert data["dataset"] == "esc50"  # the input is not modified
    assert ("dataset", "root") in touched and ("methods", 1, "stdev") in touched
    for bad, message in [
        ("modl.width=4", "--set modl.width: unknown key 'modl' (did you mean 'model'?)"),
        ("methods.5.stdev=1", "--set methods.5.stdev: 'methods' is a list of 2; '5' is not an index in it"),
        ("name.sub=1", "--set name.sub: 'name' is a value ('x'), not a mapping"),
        ("dataset.root", "--set 'dataset.root': expected KEY=VALUE"),
    ]:
        with pytest.raises(AudiobenchError) as info:
            apply_overrides(data, [bad])
        assert str(info.value).startswith(message), str(info.value)


def test_validate_without_data_names_the_path_and_where_to_get_it(capsys, tmp_path: Path, monkeypatch) -> None:
    assert main(["validate", str(OOD)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{OOD}:{DATASET_LINE}: dataset.root: /data/ESC-50 not found (it should hold meta/esc50.csv and audio/); "
        "ESC-50 is at https://github.com/karolpiczak/ESC-50",
        f"{OOD}:{WHAM_LINE}: train.augment: noise_folder.root: /data/wham_noise/tr not found; WHAM! noise is at "
        "http://wham.whisper.ai/, LJ-Speech at https://keithito.com/LJ-Speech-Dataset/",
    ]
    (tmp_path / "ESC-50" / "audio").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # a relative path given with --set is relative to the working directory
    assert main(["validate", str(OOD), "--set", "dataset.root=ESC-50", "--set", "dataset.rooot=x"]) == 1
    err = capsys.readouterr().err
    assert f"{OOD}:{DATASET_LINE}: dataset.rooot: unknown key (set with --set)" in err
    assert main(["validate", str(OOD), "--set", "dataset.root=ESC-50"]) == 1
    err = capsys.readouterr().err
    assert "train.augment: noise_folder.root: /data/wham_noise/tr not found" in err
    assert f"dataset.root: {tmp_path / 'ESC-50' / 'meta' / 'esc50.csv'} not found; ESC-50 is at" in err


def test_esc50_ood_suite_trains_runs_and_compares(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_fold=2, seconds=0.5)
    wham_tr = make_speech_folder(tmp_path / "wham_tr", speakers=2, takes=1)  # any audio: the training noise
    sets = _sets([f"dataset.root={root}", f"train.augment.0.root={wham_tr}", *TINY])
    assert main(["validate", str(OOD), *sets]) == 0
    # fine-tune a PANNs-layout AudioSet checkpoint (527 outputs, front-end keys) on folds 1-3
    _panns_file(tmp_path / "panns.pth", n_classes=527, width=4, depth=3, n_mels=32)
    weights = tmp_path / "weights" / "cnn14_esc50.pt"
    assert main(["train", str(OOD), *sets, "--set", f"model.checkpoint={tmp_path / 'panns.pth'}", "-o", str(weights), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {weights}" in out and "test" in out
    info = json.loads(weights.with_suffix(".json").read_text())
    assert info["class_names"] == ["dog", "cat", "chainsaw"] and set(info["accuracy"]) == {"train", "valid", "test"}
    assert info["initialised_from"]["checkpoint"] == str(tmp_path / "panns.pth")
    # evaluate it (no training), fold 5 mixed with fold 4 at 0.8/0.2
    run_dir = tmp_path / "run"
    assert main(["run", str(OOD), *sets, "--set", f"model.checkpoint={weights}", "-o", str(run_dir), "--limit", "2", "-q"]) == 0
    capsys.readouterr()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["classifier"]["checkpoint"] == str(weights)
    assert manifest["suite"]["dataset"]["params"]["root"] == str(root)
    assert manifest["suite"]["contaminations"][0]["params"]["source"] == {"split": None, "folds": [4]}
    # the interpreters trained with the WHAM!-style training noise; the fold mixtures are out-of-domain
    assert manifest["contaminations"]["mixture_gain0p8-0p2_folds4"]["domain"] == "out-of-domain"
    lmac = [c["fit"] for c in manifest["cells"] if c["method"] == "lmac"]
    assert lmac and all(f["trained_on"]["augment"] == ["noise_wham_tr_0to15db"] for f in lmac)
    l2i = [c["fit"] for c in manifest["cells"] if c["method"] == "l2i"]  # clean clips, as the L2I paper
    assert l2i and all(f["trained_on"]["augment"] == [] for f in l2i)
    frame = load_run(run_dir)
    assert set(frame.contamination) == {"mixture_gain0p8-0p2_folds4"}
    assert set(frame.row) == {"Saliency", "SmoothGrad", "IG", "L2I", "GradCAM", "Guided GradCAM", "Guided Backprop", "SHAP",
                                "L-MAC", "L-MAC, FT, λg=4", "L-MAC, FT, λg=16", "L-MAC, FT, λg=32",
                                "L-MAC, FT, λg=4, CCT 0.7", "L-MAC, FT, λg=16, CCT 0.7", "L-MAC, FT, λg=32, CCT 0.7"}
    # --limit 2: a class-stratified sample of fold 5 (two classes), not its first two files (both dogs)
    ids = set(frame.sample_id)
    assert ids == set(manifest["selection"]["sample_ids"]) and len(ids) == 2
    assert all(i.startswith("5-") for i in ids) and len({i.rsplit("-", 1)[1] for i in ids}) == 2
    # our numbers beside the published ones (L-MAC Table 2)
    assert main(["table", str(run_dir), "--compare", "lmac_icml2024:2"]) == 0
    text = capsys.readouterr().out
    assert "Beside: Paissan et al., Listenable Maps for Audio Classifiers, ICML 2024, Table 2 (out-of-domain)." in text
    lines = text.splitlines()
    smooth = next(i for i, line in enumerate(lines) if "| SmoothGrad" in line and "| ours" in line)
    assert "| paper (Smoothgrad) " in lines[smooth + 1] and "| 31.84 |" in lines[smooth + 1]
    lmac = next(i for i, line in enumerate(lines) if "| L-MAC " in line and "| ours" in line)
    assert "| paper " in lines[lmac + 1] and "| 60.63 |" in lines[lmac + 1]
    ft = next(i for i, line in enumerate(lines) if "| L-MAC, FT, λg=16, CCT 0.7" in line and "| ours" in line)
    assert "| 45.87 |" in lines[ft + 1]
    assert main(["table", str(run_dir), "--compare", "lmac_icml2024:3"]) == 1
    assert "lmac_icml2024 has tables 1, 2" in capsys.readouterr().err


def test_audio_folder_suite_with_name_labels_and_speaker_split_at_8k(tmp_path: Path) -> None:
    make_speech_folder(tmp_path / "words", speakers=5, takes=2)
    expected = _write_bad_files(tmp_path / "words")  # names without a speaker: not matched by the pattern
    for name in ("truncated", "empty", "silent"):  # the same problems in files the pattern matches
        src = next((tmp_path / "words").glob(name + ".*"))
        src.rename(tmp_path / "words" / f"yes_spk00_{name}{src.suffix}")
    suite = {
        "name": "words",
        "dataset": {"name": "audio_folder", "root": "words", "labels": "pattern",
                    "pattern": r"^(?P<label>[a-z]+)_(?P<speaker>spk\d+)_", "split_by": "group", "group": "speaker",
                    "seconds": 0.7},
        "frontend": {"sample_rate": 8000, "n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
        "model": {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 2, "batch_size": 8}},
        "domains": ["mel"], "contaminations": ["none", {"name": "mixture", "snr_db": 0}],
        "methods": ["saliency"], "metrics": ["ai", "ad", "ff"], "audio": {"n": 0},
    }
    path = tmp_path / "words.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))  # the root is relative to the suite file
    assert load_suite(path).dataset.params["root"] == str(tmp_path / "words")
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    reasons = {s["sample_id"]: s["reason"] for s in manifest["skips"]}
    assert "truncated file" in reasons["yes_spk00_truncated"]
    assert "empty file (0 bytes)" in reasons["yes_spk00_empty"]
    assert "silent file" in reasons["yes_spk00_silent"]
    for name in set(expected) - {"truncated", "empty", "silent"}:
        assert reasons[name] == "file name does not match pattern '^(?P<label>[a-z]+)_(?P<speaker>spk\\\\d+)_'"
    frame = load_run(tmp_path / "run")
    test_speakers = {sid.split("_")[1] for sid in frame.sample_id}
    assert len(test_speakers) == 1  # one speaker's files, all of them, in the test split
    assert len(set(frame.sample_id)) == 6


def test_reference_rows_match_our_labels_and_datasets_cite_their_source(capsys) -> None:
    from audiobench.tables.compare import norm_label, select

    assert norm_label("Smoothgrad") == norm_label("SmoothGrad") and norm_label("Gradcam") == norm_label("GradCAM")
    assert norm_label("Guided Gradcam") == norm_label("Guided GradCAM") and norm_label("IG") == norm_label("IG")
    assert norm_label("L2I RT=0.60") == norm_label("L2I RT=0.6") and norm_label("GradCam++") != norm_label("GradCam")
    assert norm_label("L-MAC, FT, λg=16, CCT 0.7") == norm_label("L-MAC FT lambda_g=16 CCT0.7")
    assert norm_label("L-MAC, FT, λg=4") == norm_label("L-MAC FT lambda_g=4") != norm_label("L-MAC")
    ref = select("lmac_icml2024:1")
    assert ref.setting == "in-domain" and set(ref.rows["_domain"]) == {"stft2mel", "mel"} and len(ref.rows) == 24
    with pytest.raises(AudiobenchError, match="several blocks; choose one with lmaczs_neurips2024:2:contamination="):
        select("lmaczs_neurips2024:2")
    assert len(select("lmaczs_neurips2024:2:dataset=ESC50,contamination=esc50").rows) == 12
    with pytest.raises(AudiobenchError, match="unknown reference 'lmac_icml'"):
        select("lmac_icml:1")
    assert main(["list", "datasets", "--verbose"]) == 0
    out = capsys.readouterr().out
    for text in ("url: https://github.com/karolpiczak/ESC-50", "citation: K. J. Piczak", "licence: clips from freesound.org",
                 "url: https://urbansounddataset.weebly.com/urbansound8k.html", "citation: J. Salamon"):
        assert text in out
