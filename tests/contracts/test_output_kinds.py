"""Every output kind end to end: a multi-label (sigmoid) and a zero-shot (similarity) model run through
``audiobench run`` with saliency, IG and GradCAM, with per-target rows and probabilities checked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from audiobench.cli import main
from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import DATASETS, MODELS, load_plugin_file
from audiobench.store.run_dir import load_manifest, load_run
from tests.paths import ROOT, TESTS

PLUGIN = TESTS / "plugins" / "toy_models.py"


def _suite(tmp_path: Path, model: dict, dataset: dict, **extra) -> Path:
    suite = {
        "name": "kinds", "seed": 0, "plugins": [str(PLUGIN)], "dataset": dataset, "model": model,
        "domains": ["mel"], "contaminations": ["none"], "batch_size": 4, "audio": {"n": 0},
        "methods": ["saliency", {"name": "integrated_gradients", "n_steps": 8}, "gradcam"],
        "metrics": ["ai", "ad", "ag", "ff", "fid_in", "sps"], **extra,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _by_hand(split: str, events: int) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The test clips' band energies e [N, 4] computed here, from the log-mel and the band weights."""
    load_plugin_file(PLUGIN)
    toy = __import__(MODELS.get("band_sigmoid").__module__, fromlist=["x"])
    clips = DATASETS.get("tones")({"events": events}).load(split, 16000)
    frontend = Frontend()
    wave = clips.waveforms / clips.waveforms.abs().amax(dim=1, keepdim=True)  # evaluated clips are peak-normalised
    logmel = frontend.logmel(wave)  # [N, 1, T, M]
    w = toy.band_weights(frontend.params.n_mels, 16000)  # [4, M]
    energies = (logmel[:, 0] @ w.T).mean(dim=1)
    return energies, clips.labels, toy


def test_sigmoid_model_explains_every_detected_label_with_its_own_probability(tmp_path: Path) -> None:
    suite = _suite(tmp_path, {"name": "band_sigmoid"}, {"name": "tones", "events": 2})
    assert main(["run", str(suite), "-o", str(tmp_path / "run"), "-q"]) == 0
    frame = load_run(tmp_path / "run")
    e, labels, toy = _by_hand("test", 2)
    p = torch.sigmoid(toy.GAIN * (e - toy.BIAS))  # by hand: one independent sigmoid per label
    for row in ("Saliency", "IG", "GradCAM"):
        rows = frame[(frame.row == row) & (frame.metric == "p_orig")]
        # targets: every label with p > 0.5; two events per clip -> two rows per clip, the true labels
        expected = {(f"test{i:02d}", c) for i in range(len(p)) for c in range(4) if p[i, c] > 0.5}
        assert set(zip(rows.sample_id, rows.target, strict=True)) == expected
        assert rows.groupby("sample_id").size().eq(2).all()
        for sid, t, value in zip(rows.sample_id, rows.target, rows.value, strict=True):
            i = int(sid.removeprefix("test"))
            assert labels[i, t] == 1
            assert value == pytest.approx(float(p[i, t]), abs=1e-5)
    # Fid-In for a sigmoid model: the label is still detected (p_t(MX) > 0.5) on the masked-in input
    wide = frame.pivot_table(index=["row", "sample_id", "target"], columns="metric", values="value")
    assert ((wide["fid_in"] == 1) == (wide["p_in"] > 0.5)).all()
    assert (wide["target_true"] == 1).all()
    manifest = load_manifest(tmp_path / "run")
    assert manifest["classifier"]["output_kind"] == "sigmoid"
    assert manifest["accuracy"]["evaluated"]["none"] == 1.0  # every decided label is a true one


def test_similarity_model_scores_prompts_by_softmax_of_scaled_cosines(tmp_path: Path) -> None:
    suite = _suite(tmp_path, {"name": "band_prompts", "template": "a recording of a {}"},
                   {"name": "tones", "events": 1})
    assert main(["run", str(suite), "-o", str(tmp_path / "run"), "-q"]) == 0
    frame = load_run(tmp_path / "run")
    e, labels, toy = _by_hand("test", 1)
    # text embeddings: one-hot of the class word in each prompt -> cos(e, t_c) = e_c / |e|
    p = torch.softmax(toy.TAU * e / e.norm(dim=1, keepdim=True), dim=1)
    rows = frame[(frame.row == "IG") & (frame.metric == "p_orig")]
    assert len(rows) == len(p)  # one target per clip: the best-matching prompt
    for sid, t, value in zip(rows.sample_id, rows.target, rows.value, strict=True):
        i = int(sid.removeprefix("test"))
        assert t == int(p[i].argmax()) == int(labels[i])
        assert value == pytest.approx(float(p[i, t]), abs=1e-5)
    assert set(frame.row) == {"Saliency", "IG", "GradCAM"}


def test_targets_all_explains_each_clip_for_every_prompt(tmp_path: Path) -> None:
    suite = _suite(tmp_path, {"name": "band_prompts"}, {"name": "tones", "events": 1, "clips": 4},
                   targets="all", methods=["saliency"])
    assert main(["run", str(suite), "-o", str(tmp_path / "run"), "-q"]) == 0
    frame = load_run(tmp_path / "run")
    p_orig = frame[frame.metric == "p_orig"].pivot(index="sample_id", columns="target", values="value")
    assert p_orig.shape == (4, 4)
    assert p_orig.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)  # softmax over the prompts
    # Fid-In of an unrelated prompt: it is never the decision on the masked-in input unless it was on X
    fid = frame[frame.metric == "fid_in"].pivot(index="sample_id", columns="target", values="value")
    pred = frame[frame.metric == "pred_in"].pivot(index="sample_id", columns="target", values="value")
    for t in range(4):
        assert ((fid[t] == 1) == (pred[t] == t)).all()


def test_unknown_target_class_is_a_located_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = _suite(tmp_path, {"name": "band_prompts"}, {"name": "tones", "events": 1},
                   targets={"select": "decision", "classes": ["beep"]})
    assert main(["validate", str(suite)]) == 1
    err = capsys.readouterr().err
    assert "suite.yaml:" in err and "classes" in err


@pytest.mark.parametrize(("model", "kind"), [({"name": "band_sigmoid"}, "sigmoid"), ({"name": "band_prompts"}, "similarity")])
def test_interpreters_trained_with_cross_entropy_are_refused_for_kinds_they_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture, model: dict, kind: str,
) -> None:
    """L-MAC and L2I fit softmax (cross-entropy) and sigmoid (binary cross-entropy: L2I's journal eq. 2,
    L-MAC's over the decided labels) models: only a zero-shot one is refused, at its line."""
    suite = _suite(tmp_path, model, {"name": "tones", "events": 1})
    raw = yaml.safe_load(suite.read_text())
    raw["methods"] = ["saliency", {"name": "lmac", "epochs": 1}, {"name": "l2i", "epochs": 1}]
    suite.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(suite)]) == (1 if kind == "similarity" else 0)
    err = capsys.readouterr().err
    for name in ("lmac", "l2i"):
        refused = (f"method '{name}' explains softmax or sigmoid models, but model '{model['name']}' is {kind} "
                   "(its fit trains with softmax cross-entropy or binary cross-entropy)")
        assert (refused in err) == (kind == "similarity")
    assert "'saliency'" not in err


def test_mel_domain_probability_matches_the_models_own_path() -> None:
    """The harness's route (domain -> network_input -> scores -> probabilities) equals the toy's formula."""
    e, _, toy = _by_hand("test", 2)
    model = MODELS.get("band_sigmoid")().build(toy.NAMES, 80, 16000)
    clips = DATASETS.get("tones")({"events": 2}).load("test", 16000)
    frontend = Frontend()
    x = Mel().represent(frontend, clips.waveforms / clips.waveforms.abs().amax(dim=1, keepdim=True)).x
    scores = model(model.network_input(Mel(), frontend, x))
    torch.testing.assert_close(model.probabilities(scores), torch.sigmoid(toy.GAIN * (e - toy.BIAS)), atol=1e-5, rtol=0)


def test_accuracy_is_recorded_per_domain_and_the_caption_shows_it_where_domains_disagree() -> None:
    """A model may read the unmasked clip differently in each domain (a linear-magnitude or waveform
    model): the manifest keeps each domain's accuracy and the caption shows both where they differ."""
    import pandas as pd

    from audiobench.contracts.table_spec import TableSpec
    from audiobench.store.manifest import accuracy_by_domain, evaluated_accuracy
    from audiobench.store.records import read_manifest
    from audiobench.tables.run import _run_caption

    rows = []
    for domain, preds in (("stft2mel", [0, 1, 1, 0]), ("mel", [0, 1, 0, 0])):
        for i, (pred, true) in enumerate(zip(preds, [0, 1, 1, 1], strict=True)):
            for metric, value in (("pred_orig", pred), ("y_true", true)):
                rows.append({"domain": domain, "contamination": "none", "row": "Saliency", "sample_id": f"c{i}",
                             "metric": metric, "value": float(value)})
    frame = pd.DataFrame(rows)
    assert accuracy_by_domain(frame) == {"stft2mel": {"none": 0.75}, "mel": {"none": 0.5}}
    assert evaluated_accuracy(frame) == {"none": 0.75}  # the first domain's, as before
    manifest = read_manifest(ROOT / "results" / "planted_handbuilt")
    manifest.accuracy.evaluated = {"none": 0.75}
    spec = TableSpec(name="t", metrics=["gt_mass"])
    manifest.accuracy.by_domain = accuracy_by_domain(frame)
    assert "on these clips STFT→Mel 75.0%, Mel 50.0%" in _run_caption(manifest, frame, spec)({"contamination": "none"})
    manifest.accuracy.by_domain = {"stft2mel": {"none": 0.75}, "mel": {"none": 0.75}}
    assert "75.0% on these clips" in _run_caption(manifest, frame, spec)({"contamination": "none"})
