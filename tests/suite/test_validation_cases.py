"""The validation cases of shared/cases (short-clips, empty-mel-filters, gradcam-layer, audio-scalar,
table-per-unknown): each suite is refused by `validate` and by `run` at its line, with the numbers,
and the nearest valid setting passes validation (and, for the clip-length boundary, runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiobench.cli import main
from audiobench.kernel.errors import AudiobenchError
from audiobench.suite import SuiteErrors, load_suite


def write_short_clips(root: Path) -> None:
    """The short-clips case's make.py: 3 classes of tones 1 to 16000 samples long (16 kHz)."""
    for k, f0 in enumerate([400.0, 700.0, 1000.0]):
        folder = root / "tiny" / f"c{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate([1, 50, 400, 1500, 16000]):
            t = np.arange(n) / 16000
            sf.write(folder / f"x{i}.wav", 0.5 * np.sin(2 * np.pi * f0 * t + 0.3), 16000, subtype="PCM_16")


FOLDER = """\
name: short_clips
seed: 0
dataset: {{name: audio_folder, root: tiny, seconds: {seconds}}}
model: {{name: cnn14, width: {width}, depth: {depth}, train: {{epochs: 1}}}}
domains: [stft2mel]
methods: [saliency]
metrics: [ai]
audio: {{n: 0}}
"""


def validate(path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, list[str]]:
    args = ["validate", str(path)] + [a for o in overrides for a in ("--set", o)]
    rc = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def test_short_clips_refused_at_dataset_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_short_clips(tmp_path)
    folder = tmp_path / "folder.yaml"
    folder.write_text(FOLDER.format(seconds=0.03, width=8, depth=2))
    rc, err = validate(folder, capsys)
    assert rc == 1 and err == [
        f"{folder}:3: dataset.seconds: 0.03 s is 480 samples at 16000 Hz, not more than n_fft/2 = 512 "
        "(the STFT's padding); raise seconds or lower n_fft"
    ]
    deep = tmp_path / "folder_deep.yaml"
    deep.write_text(FOLDER.format(seconds=0.1, width=8, depth=6))
    rc, err = validate(deep, capsys)
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"{deep}:3: dataset.seconds: 0.1 s gives 9 frames at hop 186; a cnn14 of depth 6")
    assert "needs at least 32" in err[0]
    rc, err = validate(deep, capsys, "dataset.seconds=0.36")  # 31 frames: one short
    assert rc == 1 and "31 frames" in err[0] and err[0].endswith("(set with --set)")
    # run refuses the same way, before anything is trained or written
    assert main(["run", str(folder), "-o", str(tmp_path / "run"), "-q"]) == 1
    assert "not more than n_fft/2 = 512" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_short_clips_boundary_length_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0.3604 s is 5766 samples: exactly 32 frames at hop 186, what a depth-6 cnn14 pools to 1x1 (its mel
    axis: 32 bands). It validates, and the run (training included) goes through."""
    write_short_clips(tmp_path)
    path = tmp_path / "edge.yaml"
    path.write_text(FOLDER.format(seconds=0.3604, width=2, depth=6).replace("audio: {n: 0}", (
        "audio: {n: 0}\nfrontend: {n_mels: 32}\nlimit: 3\n")))
    rc, err = validate(path, capsys)
    assert rc == 0 and err == []
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q"]) == 0
    assert (tmp_path / "run" / "per_sample.parquet").exists()
    capsys.readouterr()
    rc, err = validate(path, capsys, "dataset.seconds=0.36")
    assert rc == 1 and "31 frames" in err[0]


EMPTY_MEL = """\
name: mel_bands
seed: 0
frontend: {n_fft: 128, win_length: 128, hop_length: 64, n_mels: 80}
dataset: {name: synth, classes: 3, clips_per_class: 10, seconds: 1.0}
model: {name: cnn14, width: 8, depth: 2, train: {epochs: 2}}
domains: [stft2mel, mel]
methods: [saliency]
metrics: [ai, ad, ff, mm]
audio: {n: 0}
"""


def test_empty_mel_filters_refused_at_frontend_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audiobench.kernel.torchaudio_shim import AF

    path = tmp_path / "suite.yaml"
    path.write_text(EMPTY_MEL)
    rc, err = validate(path, capsys)
    with pytest.warns(UserWarning, match="all zero values"):  # torchaudio's only sign, before this check
        fb = AF.melscale_fbanks(65, 0.0, 8000.0, 80, 16000, None, "htk")  # the case's one-liner
    empty = int((fb.sum(0) == 0).sum())
    assert empty == 13
    assert rc == 1 and err == [
        f"{path}:3: frontend: n_mels 80 with n_fft 128 (65 linear bins over 0-8000 Hz) leaves {empty} of 80 "
        "mel filters empty; lower n_mels or raise n_fft"
    ]
    assert validate(path, capsys, "frontend.n_mels=28") == (0, [])  # 28 bands over 65 bins: none empty
    rc, err = validate(path, capsys, "frontend.n_mels=32")  # one band falls between two bins
    assert rc == 1 and "leaves 1 of 32 mel filters empty" in err[0]
    rc, err = validate(path, capsys, "frontend.f_min=8000")
    assert rc == 1 and "f_min 8000 Hz is not below f_max 8000 Hz" in err[0]
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q"]) == 1
    assert "13 of 80 mel filters empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


GRADCAM = """\
name: gradcam_layer
seed: 0
dataset: {name: synth, classes: 3, clips_per_class: 10, seconds: 1.0}
model: {name: cnn14, width: 8, depth: 2, train: {epochs: 2}}
domains: [mel]
methods:
  - {name: gradcam, layer: fc1}
metrics: [ai]
audio: {n: 0}
"""


@pytest.mark.parametrize("layer", [None, "conv_block9", "3", "0", "-3"])
def test_gradcam_layer_refused_at_method_line(layer: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(GRADCAM)
    rc, err = validate(path, capsys, *([f"methods.0.layer={layer}"] if layer else []))
    shown = repr(layer) if layer and not layer.lstrip("-").isdigit() else layer or "'fc1'"
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(
        f"{path}:7: methods.0.layer: {shown} is not a block of this cnn14 (depth 2); "
        "use last, conv_block1..conv_block2, 1..2"
    )


@pytest.mark.parametrize("layer", ["last", "conv_block1", "2", "-1"])
def test_gradcam_valid_layers_pass(layer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(GRADCAM)
    assert validate(path, capsys, f"methods.0.layer={layer}") == (0, [])


def test_gradcam_layer_checked_at_run_time_too() -> None:
    """A Suite built in Python skips `validate`; the explainer still refuses layer 0 in one line."""
    from audiobench.contracts.domains import Mel
    from audiobench.contracts.frontend import Frontend
    from audiobench.methods.base import DomainModel, ExplainContext
    from audiobench.methods.cam import GradCAM
    from audiobench.models.cnn14 import Cnn14

    ctx = ExplainContext(DomainModel(Cnn14(3, n_mels=16, width=2, depth=2), Mel(), Frontend()))
    assert GradCAM({"layer": 2}).block(ctx) is ctx.classifier.conv_block2
    assert GradCAM({"layer": -2}).block(ctx) is ctx.classifier.conv_block1
    with pytest.raises(AudiobenchError, match=r"^layer 0 names no block of this 2-block model; .* conv_block2$"):
        GradCAM({"layer": 0}).attribute(torch.zeros(1, 1, 8, 16), torch.tensor([0]), ctx)


AUDIO = """\
name: audio_scalar
seed: 0
dataset: {name: synth, classes: 3, clips_per_class: 10, seconds: 1.0}
model: {name: cnn14, width: 8, depth: 2, train: {epochs: 2}}
methods: [saliency]
audio: 4
"""


@pytest.mark.parametrize("value", [None, "0", "[4]", '"4"', "false"])
def test_audio_scalar_is_one_located_error(value: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(AUDIO)
    rc, err = validate(path, capsys, *([f"audio={value}"] if value else []))
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"{path}:6: audio must be a mapping, not ") and "e.g. audio: {n: 4}" in err[0]


def test_audio_mapping_is_taken_as_written(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(AUDIO.replace("audio: 4", "audio: {n: 0}"))
    assert load_suite(path).audio.n == 0
    path.write_text(AUDIO.replace("audio: 4", "audio:"))  # null: the default
    assert load_suite(path).audio.n == 4


TABLES = """\
name: table_per_unknown
seed: 0
dataset: {name: synth, classes: 3, clips_per_class: 10, seconds: 1.0}
model: {name: cnn14, width: 8, depth: 2, train: {epochs: 2}}
domains: [mel]
methods: [saliency]
metrics: [ai, ad]
audio: {n: 0}
tables:
  - {name: main, metrics: [ai]}
  - {name: by_nothing, per: [dataset, no_such_column]}
"""


def test_table_per_unknown_refused_before_any_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(TABLES)
    rc, err = validate(path, capsys)
    assert rc == 1 and err == [
        f"{path}:11: tables.1.per.1: 'no_such_column' is not a column "
        "(one of dataset, model, domain, contamination, method, row, target)"
    ]
    with pytest.raises(SuiteErrors):
        load_suite(path, ["tables.1.per=[dataset, contamnation]"])
    rc, err = validate(path, capsys, "tables.1.per=[dataset, contamnation]")
    assert "(did you mean 'contamination'?)" in err[0]
    assert validate(path, capsys, "tables.1.per=[dataset, contamination]") == (0, [])
    assert main(["run", str(path), "-o", str(tmp_path / "run"), "-q"]) == 1
    assert not (tmp_path / "run").exists()


def test_layers_checked_against_a_checkpoints_depth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without model.depth, validate reads the depth off the checkpoint's shapes (here 3 blocks)."""
    from audiobench.models.cnn14 import Cnn14

    torch.save({"model": Cnn14(3, n_mels=80, width=2, depth=3).state_dict()}, tmp_path / "w.pt")
    path = tmp_path / "suite.yaml"
    path.write_text(GRADCAM.replace("width: 8, depth: 2, train: {epochs: 2}", "checkpoint: w.pt"))
    rc, err = validate(path, capsys)
    assert rc == 1 and err[0].startswith(f"{path}:7: methods.0.layer: 'fc1' is not a block of this cnn14 (depth 3)")
    assert validate(path, capsys, "methods.0.layer=conv_block3") == (0, [])
    rc, err = validate(path, capsys, "methods.0={name: l2i, blocks: [-4]}")
    assert rc == 1 and "methods.0.blocks: [-4]: -4 out of range; this cnn14 has blocks 1..3" in err[0]
    assert validate(path, capsys, "methods.0={name: lmac, blocks: 4}") == (0, [])  # L-MAC reads every block there is
    rc, err = validate(path, capsys, "methods.0={name: l2i, blocks: 4}")  # L2I does not
    assert rc == 1 and "methods.0.blocks: 4 blocks, but this cnn14 has 3" in err[0]


@pytest.mark.parametrize("classes, expected", [
    ([], "select: classes needs at least one class"),
    ([True], "a class entry was read as the boolean true"),
    ([1.0], "a class entry was read as the number 1.0: give a 0-based index as a whole number (1) or quote a class name ('1.0')"),
    (["dog", 7], "targets.classes: 'dog' is not a class (tone, chirp_up, chirp_down)"),
])
def test_target_classes_are_checked_at_validate(write_suite, classes, expected) -> None:
    """../shared/cases/targets-classes: an empty list, a YAML boolean (`yes`) and unknown names or
    indices are refused at the targets line before anything trains (they crashed in a cell, were
    taken as index 1, or stopped the run after training)."""
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.suite import load_suite

    path = write_suite({"targets": {"select": "classes", "classes": classes}})
    with pytest.raises(AudiobenchError) as exc:
        load_suite(path)
    assert expected in str(exc.value)
    if classes == ["dog", 7]:
        assert "7 is out of range 0..2" in str(exc.value)
    assert load_suite(write_suite({"targets": {"select": "classes", "classes": ["tone", 2]}})).targets.classes == ["tone", 2]


def test_sigmoid_only_target_settings_are_refused_for_a_softmax_model(write_suite) -> None:
    """../shared/cases/targets-ignored-params: top_k 3 and threshold 0.9 on cnn14 (softmax) explained
    one class per clip and changed no number; a setting either acts or is refused."""
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.suite import load_suite

    with pytest.raises(AudiobenchError) as exc:
        load_suite(write_suite({"targets": {"top_k": 3, "threshold": 0.9}}))
    message = str(exc.value)
    assert "targets.top_k and threshold apply to sigmoid (multi-label) models only; 'cnn14' is a softmax model" in message
    assert len(message.strip().splitlines()) == 1
    methods = ["saliency", {"name": "gradcam", "targets": {"select": "decision", "threshold": 0.3}}]
    with pytest.raises(AudiobenchError, match="targets.threshold applies to sigmoid"):
        load_suite(write_suite({"methods": methods}))
    assert load_suite(write_suite({"targets": {"select": "all"}})).targets.select == "all"


@pytest.mark.parametrize("template, expected", [
    ("{} and {}", "has 2 field(s) ['', '']"),
    ("{} in the {room}", "has 2 field(s) ['', 'room']"),
    ("a {} sound }", "Single '}' encountered in format string"),
    ("sound of {0}", "has 1 field(s) ['0']"),
])
def test_zero_shot_prompt_templates_are_checked_at_validate(template, expected) -> None:
    """../shared/cases/zs-template-placeholders: a template that is not exactly one '{}' is refused
    by validate (it passed, and the run ended in a traceback); literal braces are written '{{'."""
    from audiobench.models.clap_synth import ClapSynthSpec
    from audiobench.models.zeroshot import class_prompts, template_problem

    problems = ClapSynthSpec({"template": template}).check()
    assert len(problems) == 1 and expected in problems[0] and "exactly one '{}'" in problems[0]
    with pytest.raises(ValueError, match="exactly one"):
        class_prompts(["tone"], template)
    assert template_problem("a {{literal}} {} sound") is None
    assert class_prompts(["chirp_up"], "a {{literal}} {} sound") == ["a {literal} chirp up sound"]


@pytest.mark.slow
def test_output_only_settings_do_not_move_a_number(write_suite, tmp_path: Path) -> None:
    """../shared/cases/output-settings-change-numbers: audio.n, masks.precision and the metric list do
    not change what the stochastic methods draw (Random, SmoothGrad), so their values stay."""
    import pandas as pd

    from audiobench.harness.runner import run_suite

    base = {"domains": ["stft2mel"], "contaminations": ["none"],
            "methods": ["saliency", {"name": "smoothgrad", "n_samples": 4}, "random"], "metrics": ["ai", "ad", "ff", "mm"],
            "audio": {"n": 2}, "masks": {"precision": "log8"}}
    variants = {"a": {}, "b": {"audio": {"n": 1}}, "c": {"masks": {"precision": "float32"}},
                "d": {"metrics": ["ai", "ad", "ff", "mm", "ins_auc"]}}
    values = {}
    for name, change in variants.items():
        path = write_suite({**base, **change}, name=f"{name}.yaml")
        run_suite(path, tmp_path / name, limit=6, progress=False)
        frame = pd.read_parquet(tmp_path / name / "per_sample.parquet")
        frame = frame[frame.metric.isin(["ai", "ad", "ff", "mm"])]
        values[name] = frame.set_index(["method", "sample_id", "target", "metric"]).value.sort_index()
    assert set(values["a"].index.get_level_values("method")) == {"saliency", "smoothgrad", "random"}
    for name in "bcd":
        pd.testing.assert_series_equal(values[name], values["a"], check_exact=False, rtol=0, atol=1e-6)
    ids = {name: [c["id"] for c in json.loads((tmp_path / name / "manifest.json").read_text())["cells"]] for name in variants}
    assert ids["b"] == ids["c"] == ids["d"] == ids["a"]  # nor a cell id


@pytest.mark.slow
def test_changed_output_settings_rewrite_outputs_under_the_same_ids(write_suite, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """../shared/cases/output-settings-change-numbers, on one run directory: audio.n changed on an
    existing run keeps every cell id and number and rewrites its outputs (the WAVs); cells stored
    under the ids of an earlier version (same hash, another id) are renamed, not recomputed."""
    import pandas as pd

    from audiobench.harness.runner import run_suite

    base = {"domains": ["stft2mel"], "contaminations": ["none"], "methods": [{"name": "smoothgrad", "n_samples": 4}, "random"],
            "metrics": ["ai", "ff"], "audio": {"n": 2}}
    run = tmp_path / "run"
    first = run_suite(write_suite(base, name="a.yaml"), run, limit=4, progress=False)
    before = pd.read_parquet(run / "per_sample.parquet")
    wavs = sorted(p.name for p in (run / "audio").rglob("*.wav"))
    second = run_suite(write_suite({**base, "audio": {"n": 1}}, name="a.yaml"), run, limit=4, progress=False)
    assert "computed again to rewrite their outputs; their numbers do not change" in capsys.readouterr().err
    assert [c["id"] for c in second.manifest["cells"]] == [c["id"] for c in first.manifest["cells"]]
    assert not any(c["resumed"] for c in second.manifest["cells"])
    pd.testing.assert_frame_equal(pd.read_parquet(run / "per_sample.parquet"), before)
    assert 0 < len(sorted((run / "audio").rglob("*.wav"))) < len(wavs)  # fewer clips written

    cell = second.manifest["cells"][0]["id"]  # an earlier version's name for it
    old = cell.rsplit("__", 1)[0] + "__0123456789"
    for folder, ext in (("cells", "json"), ("cells", "parquet"), ("masks", "npz")):
        (run / folder / f"{cell}.{ext}").rename(run / folder / f"{old}.{ext}")
    third = run_suite(write_suite({**base, "audio": {"n": 1}}, name="a.yaml"), run, limit=4, progress=False)
    assert "1 stored cell(s) renamed" in capsys.readouterr().err
    assert all(c["resumed"] for c in third.manifest["cells"]) and not (run / "cells" / f"{old}.json").exists()
    assert json.loads((run / "cells" / f"{cell}.json").read_text())["id"] == cell
    pd.testing.assert_frame_equal(pd.read_parquet(run / "per_sample.parquet"), before)


@pytest.mark.slow
def test_a_run_directory_holds_one_run(write_suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """../shared/cases/foreign-suite-same-dir and limit-run-replaces-full-results: another suite, or the
    same suite on another selection of clips, is refused in one line before anything runs; --overwrite
    starts over; the same run again resumes."""
    small = {"methods": ["random"], "domains": ["mel"], "contaminations": ["none"], "metrics": ["ad"], "audio": {"n": 0}}
    a = write_suite({**small, "name": "suite_a"}, name="a.yaml")
    b = write_suite({**small, "name": "suite_b"}, name="b.yaml")
    out = tmp_path / "run"
    assert main(["run", str(a), "-o", str(out), "--limit", "3", "-q"]) == 0
    table = (out / "tables" / "main__synth__none.md").read_text()
    capsys.readouterr()
    assert main(["run", str(b), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds suite 'suite_a' (1 cells)" in err[0] and "--overwrite" in err[0]
    assert main(["run", str(a), "-o", str(out), "--limit", "2", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run of 3 clips (--limit 3); this run evaluates 2 clips" in err[0]
    assert main(["run", str(a), "-o", str(out), "--limit", "3", "--set", "seed=1", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run with seed 0; this run has seed 1" in err[0]
    assert (out / "tables" / "main__synth__none.md").read_text() == table  # nothing was replaced
    assert main(["run", str(a), "-o", str(out), "--limit", "3", "-q"]) == 0  # the same run: resumed
    assert main(["run", str(b), "-o", str(out), "--overwrite", "-q"]) == 0
    assert json.loads((out / "manifest.json").read_text())["suite"]["name"] == "suite_b"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "empty", "precision", "ids", "shape", "range"])
def test_damaged_kept_masks_are_one_line_and_never_scored(kind, write_suite, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """../shared/cases/corrupt-kept-masks: a damaged masks file gives one line naming the file and the
    remedy, for score and report; the run's results are left as they were."""
    path = write_suite({"methods": ["saliency", "random", "energy"], "domains": ["mel"], "contaminations": ["none"],
                        "metrics": ["ai", "mm"], "audio": {"n": 0}})
    run = tmp_path / "run"
    assert main(["run", str(path), "-o", str(run), "--limit", "4", "-q"]) == 0
    cell, other, _ = (c["id"] for c in json.loads((run / "manifest.json").read_text())["cells"])
    masks = run / "masks" / f"{cell}.npz"
    if kind == "truncated":
        masks.write_bytes(masks.read_bytes()[: masks.stat().st_size // 2])
    elif kind == "empty":
        masks.write_bytes(b"")
    else:
        z = dict(np.load(masks))
        if kind == "precision":  # says float16, holds log8 codes
            z["precision"] = np.array("float16")
        elif kind == "ids":
            z["sample_id"] = np.array([s.replace("synth-000", "synth-009") for s in z["sample_id"]])
        elif kind == "shape":
            z["mask"] = z["mask"][:, :, :10]
        elif kind == "range":
            z["precision"], z["mask"] = np.array("float32"), (z["mask"].astype(np.float32) + 2.0)
        np.savez_compressed(masks, **z)
    before = (run / "per_sample.parquet").read_bytes()
    capsys.readouterr()
    assert main(["score", str(run), "--replace", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    # the remedy names the run's own --limit: without it the run directory would refuse the command
    assert len(err) == 1 and str(masks.name) in err[0] and f"--limit 4 --cell {cell} --overwrite" in err[0], err
    assert (run / "per_sample.parquet").read_bytes() == before
    assert main(["report", str(run)]) == 1  # report reads the masks file too: checked alike, never drawn
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(masks.name) in err[0] and f"--cell {cell} --overwrite" in err[0], err
    # the remedy it names works: that cell alone is computed again, the other cell and the results stay
    kept = (run / "cells" / f"{other}.json").read_bytes()
    assert main(["run", str(path), "-o", str(run), "--limit", "4", "--cell", cell, "--overwrite", "-q"]) == 0
    assert (run / "cells" / f"{other}.json").read_bytes() == kept and (run / "manifest.json").exists()
    assert (run / "per_sample.parquet").read_bytes() == before  # deterministic: the same rows again
    assert main(["score", str(run), "--replace", "-q"]) == 0


@pytest.mark.slow
def test_a_read_only_run_directory_still_prints_and_fails_in_one_line(write_suite, tmp_path: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """../shared/cases/readonly-run-dir (simulated: tests run as root, where chmod does not stop writes):
    table prints its tables and says they were not saved; report is one line; a WAL listening database
    that cannot be opened read-only is read as an immutable file."""
    import errno
    import sqlite3

    import audiobench.listen.mos as mos
    import audiobench.tables.run as table_run

    path = write_suite({"methods": ["random"], "domains": ["mel"], "contaminations": ["none"], "metrics": ["ai", "ad"],
                        "audio": {"n": 0}})
    run = tmp_path / "run"
    assert main(["run", str(path), "-o", str(run), "--limit", "4", "-q"]) == 0
    capsys.readouterr()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(run / "tables" / "main__synth__none.md"))

    monkeypatch.setattr(table_run, "write_tables", read_only)
    assert main(["table", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "| Random" in out and err.strip().splitlines() == [
        f"audiobench: note: tables printed but not saved (Read-only file system: {run / 'tables' / 'main__synth__none.md'})"]
    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report" in err[0] and "Read-only file system" in err[0]
    monkeypatch.undo()

    db = run / "listening.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE ratings (listener TEXT, score REAL)")
    conn.execute("INSERT INTO ratings VALUES ('a', 80)")
    conn.commit()
    conn.close()  # the finished test: checkpointed, still in WAL mode
    real_connect = sqlite3.connect

    def no_shm(database, *args, **kwargs):  # what mode=ro does on a read-only directory holding a WAL database
        if "mode=ro" in str(database):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(mos.sqlite3, "connect", no_shm)
    assert mos.load_ratings(run).to_dict("records") == [{"listener": "a", "score": 80.0}]
