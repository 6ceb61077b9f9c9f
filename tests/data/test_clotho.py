"""The Clotho v2 captioned loader (LMAC-ZS training data) on a generated tree in the official layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiobench.data.clotho import CaptionedClips, Clotho
from audiobench.kernel.errors import AudiobenchError

SR = 16000


def _tree(root: Path) -> dict[str, list[str]]:
    """Development: 3 files (one listed but absent), validation: 2; captions with commas and quotes."""
    rng = np.random.default_rng(0)
    captions = {}
    for folder, names in (("development", ["rain on roof.wav", "dog, barking.wav", "gone.wav"]),
                          ("validation", ["birds.wav", "car passing by.wav"])):
        (root / folder).mkdir(parents=True)
        with open(root / f"clotho_captions_{folder}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", *[f"caption_{i}" for i in range(1, 6)]])
            for k, name in enumerate(names):
                caps = [f'{Path(name).stem} number {i}, said "{folder}"' for i in range(5)]
                captions[f"{folder}/{Path(name).stem}"] = caps
                w.writerow([name, *caps])
                if name != "gone.wav":
                    freq = 200 + 100 * k
                    sf.write(root / folder / name, 0.5 * np.sin(2 * np.pi * freq * np.arange(int(1.5 * 22050)) / 22050)
                             + 0.01 * rng.standard_normal(int(1.5 * 22050)), 22050, subtype="PCM_16")
    return captions


def test_clips_and_their_captions_stay_aligned_and_skips_drop_both(tmp_path: Path) -> None:
    captions = _tree(tmp_path)
    data = Clotho({"root": tmp_path, "seconds": 1.0, "splits": ["train", "valid"]})
    assert data.check() == []
    train = data.load_captioned("train", SR)
    assert isinstance(train, CaptionedClips) and len(train) == 2
    assert train.clips.sample_ids == ["development/rain on roof", "development/dog, barking"]
    assert train.clips.waveforms.shape == (2, SR) and train.clips.sample_rate == SR
    assert [list(c) for c in train.captions] == [captions[s] for s in train.clips.sample_ids]
    assert [s.sample_id for s in train.clips.skips] == ["development/gone"]  # listed, file absent: a skip
    # one tone per clip: the clip at 300 Hz is the second file ("dog, barking"), resampled from 22.05 kHz
    spectrum = torch.fft.rfft(train.clips.waveforms[1]).abs()
    assert int(spectrum.argmax()) == 300
    valid = data.load_captioned("valid", SR)
    assert valid.clips.sample_ids == ["validation/birds", "validation/car passing by"]
    gen = torch.Generator().manual_seed(0)
    picked = train.pick(torch.tensor([1, 0, 1, 1]), gen)
    assert all(p in train.captions[i] for p, i in zip(picked, [1, 0, 1, 1], strict=True))
    again = train.pick(torch.tensor([1, 0, 1, 1]), torch.Generator().manual_seed(0))
    assert picked == again  # drawn with the generator: reproducible
    many = train.pick(torch.zeros(200, dtype=torch.long), gen)
    assert set(many) == set(train.captions[0])  # every caption of the clip is used
    with pytest.raises(AudiobenchError, match="split 'test' is not among clotho.splits"):
        data.load_captioned("test", SR)


def test_missing_files_name_the_path_and_where_to_get_clotho(tmp_path: Path) -> None:
    assert Clotho({"root": tmp_path / "none"}).check() == [
        f"dataset.root: {tmp_path / 'none'} not found (it should hold clotho_captions_development.csv and development/); "
        "Clotho v2 is at https://zenodo.org/record/4783391"
    ]
    _tree(tmp_path)
    problems = Clotho({"root": tmp_path}).check()  # evaluation split absent
    assert problems == [f"dataset.root: {tmp_path / 'clotho_captions_evaluation.csv'} not found; Clotho v2 is at https://zenodo.org/record/4783391",
                        f"dataset.root: {tmp_path / 'evaluation'} not found; Clotho v2 is at https://zenodo.org/record/4783391"]
    bad = tmp_path / "bad"
    (bad / "development").mkdir(parents=True)
    (bad / "clotho_captions_development.csv").write_text("file_name,caption_1\nx.wav,a dog\n")
    (problem,) = Clotho({"root": bad, "splits": ["train"]}).check()
    assert "lacks column(s) caption_2, caption_3, caption_4, caption_5" in problem


def test_lmac_zs_trains_on_clotho_captions_never_on_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``lmac_zs`` with ``clotho: ROOT`` (the paper's "(CT)" rows) reads its training and validation
    pairs from Clotho: every caption it embeds is one of Clotho's, none is generated from the classes."""
    from audiobench.contracts.frontend import Frontend, FrontendParams
    from audiobench.contracts.registry import DOMAINS
    from audiobench.data.synth import SynthDataset
    from audiobench.methods.base import DomainModel, FitContext
    from audiobench.methods.lmac_zs import LMACZS
    from audiobench.models.clap_synth import ClapSynthSpec

    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    captions = _tree(tmp_path / "clotho")
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    synth = SynthDataset({"classes": 3, "clips_per_class": 6, "seconds": 0.5})
    splits = {s: synth.load(s, SR) for s in ("train", "valid")}
    torch.manual_seed(0)
    clf = ClapSynthSpec({"width": 4, "depth": 2, "dim": 16, "text_width": 16}).build(splits["train"].class_names, 32, SR)
    model = DomainModel(clf.eval(), DOMAINS.get("stft2mel")(), frontend).eval()
    method = LMACZS({"clotho": str(tmp_path / "clotho"), "clotho_seconds": 1.0, "epochs": 1, "hidden": 8, "lr": 1e-3})
    embedded: list[str] = []
    original = method._pair_terms
    monkeypatch.setattr(method, "_pair_terms", lambda ctx, dec, x, texts: embedded.extend(texts) or original(ctx, dec, x, texts))
    ctx = FitContext(model=model, train=splits["train"], valid=splits["valid"], augment=[], seed=0,
                     device=torch.device("cpu"), identity={"classifier": "toy"}, log_dir=tmp_path / "logs", progress=False)
    info = method.fit(ctx)
    assert info["best_epoch"] == 1 and info["cached"] is False and method.decoder is not None
    every_caption = {c for caps in captions.values() for c in caps}
    assert embedded and set(embedded) <= every_caption  # Clotho's captions only
    assert {t.split(" number")[0] for t in embedded} == {"rain on roof", "dog, barking", "birds", "car passing by"}
    assert len(info["skipped"]) == 1 and info["skipped"][0].startswith("development/gone: ")  # recorded, with why
    assert method.check_params() == []
    missing = LMACZS({"clotho": str(tmp_path / "nowhere")}).check_params()
    assert missing and missing[0][0] == "clotho" and "nowhere" in missing[0][1]


def test_validate_names_a_missing_clotho_root_at_the_method_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audiobench.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndataset: {name: synth, classes: 3, clips_per_class: 6, seconds: 0.5}\n"
                     "model: {name: clap_synth, width: 4, depth: 2, dim: 16, text_width: 16}\ndomains: [mel]\n"
                     f"methods:\n  - {{name: lmac_zs, clotho: {tmp_path / 'nowhere'}}}\nmetrics: [ai]\n")
    assert main(["validate", str(suite)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ":6: methods.0.clotho: " in err[0] and "nowhere not found" in err[0] and "zenodo" in err[0]


def test_silent_clips_are_skips_and_the_captions_enter_the_fingerprint(tmp_path: Path) -> None:
    from audiobench.methods.lmac_zs import LMACZS

    _tree(tmp_path)
    sf.write(tmp_path / "validation" / "birds.wav", np.zeros(22050), 22050, subtype="PCM_16")  # silent
    data = Clotho({"root": tmp_path, "seconds": 1.0, "splits": ["train", "valid"]})
    valid = data.load_captioned("valid", SR)
    assert valid.clips.sample_ids == ["validation/car passing by"] and len(valid.captions) == 1
    assert [k.sample_id for k in valid.clips.skips] == ["validation/birds"] and "silent" in valid.clips.skips[0].reason
    before = data.fingerprint()
    csv_path = tmp_path / "clotho_captions_validation.csv"
    csv_path.write_text(csv_path.read_text().replace("number 1", "number one"))  # same files, a caption edited
    after = Clotho({"root": tmp_path, "seconds": 1.0, "splits": ["train", "valid"]}).fingerprint()
    assert before != after  # a fit trained on the old captions is not reused
    with open(csv_path, "a", encoding="utf-8") as fh:
        fh.write("new.wav,,,,,\n")
    problems = LMACZS({"clotho": str(tmp_path)}).check_params()  # validate reads the caption files
    assert len(problems) == 1 and problems[0][0] == "clotho" and "new.wav has no caption" in problems[0][1]
    assert not problems[0][1].startswith("dataset.root")
