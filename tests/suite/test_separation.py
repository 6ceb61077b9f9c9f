"""Train/evaluate separation (issue 21): what trained components may see, what validate refuses,
what the manifest records and what every table block says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture, WhiteNoise, effective_snr_db
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.training import augmented_versions, classifier_key
from audiobench.suite import load_suite
from audiobench.suite.schema import TrainParams

LMAC = {"name": "lmac", "epochs": 1, "blocks": 2, "hidden": 4, "batch_size": 8}
NOISE_TRAIN = {"augment": [{"name": "white_noise", "snr_db": [0, 20]}]}


def _refused(write_suite, overrides: dict) -> str:
    with pytest.raises(AudiobenchError) as exc:
        load_suite(write_suite(overrides))
    return str(exc.value)


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_method_trained_on_an_evaluated_condition_is_refused_at_its_line(write_suite) -> None:
    over = {"train": NOISE_TRAIN, "contaminations": ["none", {"name": "white_noise", "snr_db": 5}],
            "methods": ["saliency", LMAC]}
    path = write_suite(over)
    with pytest.raises(AudiobenchError) as exc:
        load_suite(path)
    message = str(exc.value)
    assert "method 'L-MAC' trains on white noise 0 to 20 dB (train.augment.0)" in message
    assert "contaminations[1]" in message and "in_domain: true" in message
    assert f"{path}:{_line_of(path, 'name: lmac')}:" in message  # at the method's line
    assert len(message.strip().splitlines()) == 1
    # the level is not what separates conditions: marked in-domain, it is accepted
    over["contaminations"] = ["none", {"name": "white_noise", "snr_db": 5, "in_domain": True}]
    suite = load_suite(write_suite(over))
    assert suite.contaminations[1].in_domain and suite.augment[0].name == "white_noise"


def test_a_method_that_does_not_augment_may_be_evaluated_on_anything(write_suite) -> None:
    suite = load_suite(write_suite({"train": NOISE_TRAIN, "contaminations": [{"name": "white_noise", "snr_db": 5}],
                                    "methods": [{**LMAC, "augment_prob": 0.0}]}))
    assert not suite.methods[0].build().augments()


def test_the_classifier_trained_with_mixtures_is_refused_where_mixtures_are_out_of_domain(write_suite) -> None:
    model = {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 3, "batch_size": 8, "mixture_prob": 0.5}}
    message = _refused(write_suite, {"model": model})
    assert "the classifier (cnn14) trains on mixtures with training clips of other classes (model.train.mixture_prob)" in message
    # its training source is the training split, the evaluated partners the test split: still one condition
    model["train"] = {"epochs": 3, "batch_size": 8, "augment_prob": 0.5}
    message = _refused(write_suite, {"model": model, "train": {"augment": [{"name": "mixture", "snr_db": [0, 10]}]}})
    assert "the classifier (cnn14) trains on mixture 0 to 10 dB" in message
    # a checkpoint trained elsewhere: the harness cannot know; nothing is refused for it
    assert "augment_prob draws from train.augment" in _refused(write_suite, {"model": model})


def test_noise_folders_are_the_same_condition_only_when_they_are_the_same_folder(write_suite, tmp_path: Path) -> None:
    import soundfile as sf

    for name in ("tr", "tt"):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "n.wav", np.random.default_rng(0).standard_normal(8000) * 0.1, 16000)
    model = {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 3, "batch_size": 8, "augment_prob": 0.5}}
    train = {"augment": [{"name": "noise_folder", "root": str(tmp_path / "tr"), "snr_db": [0, 10]}]}
    evaluated = {"name": "noise_folder", "root": str(tmp_path / "tt"), "snr_db": 0}
    suite = load_suite(write_suite({"model": model, "train": train, "contaminations": [evaluated]}))
    assert suite.augment[0].build().identity() != suite.contaminations[0].build().identity()
    message = _refused(write_suite, {"model": model, "train": train, "contaminations": [{**evaluated, "root": str(tmp_path / "tr")}]})
    assert "the classifier (cnn14) trains on tr 0 to 10 dB" in message


@pytest.mark.parametrize("bad, expected", [
    ({"augment": ["none"]}, "'none' is not an augmentation"),
    ({"augment": [{"name": "white_noise", "snr_db": [20, 0]}]}, "low <= high"),
    ({"augment": [{"name": "white_noise", "snr_db": 5, "in_domain": True}]}, "in_domain marks an evaluated condition"),
    ({"augmnet": []}, "unknown key 'train.augmnet'"),
    ([1], "train must be a mapping"),
])
def test_malformed_train_sections_are_one_line_each(write_suite, bad, expected) -> None:
    assert expected in _refused(write_suite, {"train": bad})


def test_an_snr_range_draws_one_seeded_snr_per_clip_within_it() -> None:
    n, length = 40, 4000
    rng = np.random.default_rng(1)
    clips = ClipSet(torch.from_numpy(rng.standard_normal((n, length))).float(), torch.zeros(n, dtype=torch.long),
                    [f"c{i}" for i in range(n)], ["a"], 16000)
    noise = WhiteNoise({"snr_db": [0, 20]})
    out = noise.apply(clips, clips, seed=3)
    snr = effective_snr_db(out.waveforms, out.clean)
    assert torch.allclose(snr, noise.snr_per_clip(clips.sample_ids, 3).flatten(), atol=1e-3)
    assert snr.min() >= 0 and snr.max() <= 20 and snr.std() > 3  # spread over the range, not one value
    again = WhiteNoise({"snr_db": [0, 20]}).apply(clips.subset(torch.arange(n - 1, -1, -1)), clips, seed=3)
    assert torch.allclose(again.snr_db.flip(0), out.snr_db)  # per clip, whatever the order
    assert noise.key() == "white_noise_0to20db" and noise.title() == "white noise 0 to 20 dB"
    assert Mixture({"snr_db": 3}).identity() == Mixture({"snr_db": 3, "source": {"split": "valid"}}).identity()


def test_augmented_versions_keep_rows_aligned_and_the_classifier_key_names_them(tmp_path: Path) -> None:
    n, length = 6, 2000
    waves = torch.from_numpy(np.random.default_rng(0).standard_normal((n, length))).float()
    clips = ClipSet(waves, torch.tensor([0, 1, 0, 1, 0, 1]), [f"c{i}" for i in range(n)], ["a", "b"], 16000)

    class DropsOdd(WhiteNoise):  # a condition that leaves clips out (a recorded skip, e.g. no usable noise)
        def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
            return super().apply(clips.subset(torch.arange(0, len(clips), 2)), pool, seed)

    versions, keys = augmented_versions(clips, [WhiteNoise({"snr_db": [0, 10]}), DropsOdd({"snr_db": 0})], seed=0)
    assert versions.shape == (3, n, length) and keys == ["white_noise_0to10db", "white_noise_0db"]
    assert torch.equal(versions[2, 1::2], versions[0, 1::2])  # a clip left out keeps its clean version
    assert not torch.allclose(versions[2, 0::2], versions[0, 0::2]) and not torch.allclose(versions[1], versions[0])
    spec_train = TrainParams(augment_prob=0.5)
    from audiobench.contracts.frontend import Frontend, FrontendParams
    from audiobench.models.cnn14 import Cnn14Spec

    spec, fe = Cnn14Spec({"width": 4, "depth": 2}), Frontend(FrontendParams())
    a = classifier_key(spec, spec_train, 2, fe, {}, 0, augment=[WhiteNoise({"snr_db": [0, 10]})])
    b = classifier_key(spec, spec_train, 2, fe, {}, 0, augment=[WhiteNoise({"snr_db": [0, 20]})])
    assert a != b  # what the classifier trained on is part of its identity
    assert classifier_key(spec, TrainParams(), 2, fe, {}, 0) == classifier_key(spec, TrainParams(), 2, fe, {}, 0,
                                                                                 augment=[WhiteNoise({"snr_db": 5})])
    assert "augment_prob" not in TrainParams().model_dump()  # 0: earlier cache keys kept


@pytest.mark.slow
def test_no_trained_component_saw_an_out_of_domain_block(write_suite, tmp_path: Path) -> None:
    """The manifest of a run says what each trained component trained on; none saw an
    out-of-domain block's condition, none trained on an evaluated clip; tables label each block."""
    from audiobench.harness.runner import run_suite

    model = {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 2, "batch_size": 8, "augment_prob": 0.5}}
    path = write_suite({
        "model": model, "train": NOISE_TRAIN, "domains": ["mel"],
        "contaminations": [{"name": "white_noise", "snr_db": 5, "in_domain": True}, {"name": "mixture", "snr_db": 3}],
        "methods": ["saliency", LMAC], "audio": {"n": 0},
    })
    result = run_suite(path, tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    ood = {k: tuple(rec["identity"]) for k, rec in manifest["contaminations"].items() if rec["domain"] == "out-of-domain"}
    assert list(ood) == ["mixture_3db"] and manifest["contaminations"]["white_noise_5db"]["domain"] == "in-domain"
    training = manifest["training"]
    augment_ids = {a["key"]: tuple(a["identity"]) for a in training["augment"]}
    fits = [c["fit"] for c in manifest["cells"] if c["method"] == "lmac"]
    assert fits and all(f["trained_on"]["augment"] == ["white_noise_0to20db"] for f in fits)
    seen = {augment_ids[k] for f in fits for k in f["trained_on"]["augment"]}
    seen |= {tuple(c["identity"]) for c in training["classifier"]["conditions"]}
    assert seen == {("white_noise",)} and not seen & set(ood.values())
    evaluated = set(manifest["selection"]["sample_ids"])
    assert evaluated and not evaluated & set(training["clips"]["train"]["sample_ids"] + training["clips"]["valid"]["sample_ids"])
    captions = [text.splitlines()[0] for slug, text in result.tables.items() if slug.startswith("main")]
    assert any("mixture 3 dB (out-of-domain)" in c for c in captions), captions
    assert any("white noise 5 dB (in-domain)" in c for c in captions), captions
    # the run's recorded suite is re-read as it was declared (train.augment, in_domain): score works on it
    from audiobench.harness.scoring import score_run

    before = list((tmp_path / "run" / "tables").glob("main__*.md"))
    rescored = score_run(tmp_path / "run", ["ad"], progress=False)
    assert rescored.manifest["contaminations"]["white_noise_5db"]["domain"] == "in-domain"
    assert sorted(p.name for p in before) == sorted(f"{slug}.md" for slug in rescored.tables if slug.startswith("main"))


def test_a_fit_key_does_not_depend_on_where_the_data_lies() -> None:
    """Shipped fits of a real dataset (ESC-10) must serve a machine where it lies elsewhere."""
    from audiobench.harness.session import data_identity

    here = {"name": "esc10", "params": {"root": "/a/ESC-10", "seconds": 5.0, "test_folds": [5]}}
    there = {"name": "esc10", "params": {"root": "/b/ESC-10", "seconds": 5.0, "test_folds": [5]}}
    assert data_identity(here) == data_identity(there) == {"name": "esc10", "params": {"seconds": 5.0, "test_folds": [5]}}
    assert data_identity({**here, "params": {**here["params"], "seconds": 2.0}}) != data_identity(here)
    synth = {"name": "synth", "params": {"classes": 10}}
    assert data_identity(synth) == synth  # no root: the keys of the shipped quickstart fits are kept


def test_a_table_of_training_clips_says_so(write_suite, tmp_path: Path) -> None:
    from audiobench.harness.runner import run_suite

    path = write_suite({"split": "train", "domains": ["mel"], "contaminations": ["none"], "methods": ["saliency"],
                        "audio": {"n": 0}})
    result = run_suite(path, tmp_path / "run", progress=False)
    caption = next(iter(result.tables.values())).splitlines()[0]
    assert "clips of the train split, which trained components trained on" in caption
