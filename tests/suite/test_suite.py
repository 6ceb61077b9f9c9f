"""Suite validation: every problem is one `file:line: message`, with 'did you mean' for names."""

from __future__ import annotations

import pytest

from audiobench.kernel.errors import AudiobenchError
from audiobench.suite import SuiteErrors, load_suite
from tests.paths import ROOT

BAD = """\
name: bad suite
dataset: {name: synth, classes: 1}
model: {name: cnn14, width: 8, train: {epochs: many}}
domains: [stft2mel, mell]
contaminations:
  - none
  - {name: mixture}
methods:
  - salency
  - {name: integrated_gradients, n_steps: 1}
  - {name: gradcam, layr: 3}
  - integrated_gradients{n_steps: 20}
metrics: [ai, fidin]
colour: blue
"""


def messages(text: str, write_suite) -> list[str]:
    path = write_suite(text=text)
    with pytest.raises(SuiteErrors) as info:
        load_suite(path)
    return [f"{e.line}: {e.message}" for e in info.value.errors]


def test_every_error_is_located_with_a_line(write_suite) -> None:
    got = messages(BAD, write_suite)
    expected = [
        "14: unknown key 'colour'",
        "1: name may contain only letters, digits, '_', '.' and '-'",
        "2: dataset.classes: Input should be greater than or equal to 2",
        "3: model.train.epochs: Input should be a valid integer, unable to parse string as an integer",
        "4: unknown domain 'mell' (did you mean 'mel'?)",
        "7: contaminations.1.snr_db: required key is missing",
        "9: unknown method 'salency' (did you mean 'saliency'?)",
        "10: methods.1.n_steps: Input should be greater than or equal to 2",
        "11: methods.2.layr: unknown key",
        "12: quote the shorthand entry",
        "13: unknown metric 'fidin' (did you mean 'fid_in'?)",
    ]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.startswith(e), (g, e)


def test_cli_prints_file_line_message(write_suite, capsys) -> None:
    from audiobench.cli import main

    path = write_suite(text=BAD)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    from audiobench.suite import TOP_LEVEL_KEYS

    assert err[0] == f"{path}:14: unknown key 'colour' (known: {', '.join(sorted(TOP_LEVEL_KEYS))})"  # no close name
    assert all(line.startswith(f"{path}:") for line in err)
    assert "Traceback" not in "\n".join(err)


def test_valid_suite_resolves_defaults_and_labels(write_suite) -> None:
    path = write_suite({"methods": [
        "saliency", "integrated_gradients", "integrated_gradients{n_steps: 8}",
        {"name": "smoothgrad", "label": "SG (mine)", "n_samples": 3},
    ]})
    suite = load_suite(path)
    labels = [m.label for m in suite.methods]
    assert labels == ["Saliency", "IG", "IG (n_steps=8)", "SG (mine)"]
    resolved = suite.resolved()
    assert resolved["methods"][1]["params"]["n_steps"] == 50  # default recorded
    assert resolved["methods"][2]["params"]["n_steps"] == 8
    assert resolved["methods"][3]["params"] == {"nonneg": "abs", "normalize": "max", "n_samples": 3, "stdev": 0.15, "noise": "range"}
    assert resolved["frontend"]["n_fft"] == 256 and resolved["frontend"]["sample_rate"] == 16000


def test_duplicates_and_missing_keys(write_suite) -> None:
    got = messages("name: x\nmethods: [saliency, saliency]\ndomains: [mel, mel]\n", write_suite)
    assert any("required key 'dataset' is missing" in g for g in got)
    assert any(g.startswith("2: duplicate row label 'Saliency'") for g in got)
    assert any(g.startswith("3: 'mel' is listed twice") for g in got)


def test_a_row_repeating_another_with_its_defaults_written_out_is_refused(write_suite) -> None:
    got = messages("name: x\nmethods:\n  - {name: integrated_gradients, n_steps: 8}\n"
                   "  - {name: integrated_gradients, n_steps: 8, method: gausslegendre}\n  - integrated_gradients\n",
                   write_suite)
    assert [g for g in got if "repeats" in g] == ["4: entry 2 repeats entry 1: the same method with the same parameters "
                                                   "(defaults filled in) gives the same cells; remove one"]


def test_yaml_syntax_error_is_located(write_suite) -> None:
    path = write_suite(text="name: x\nmethods: [saliency\n")
    with pytest.raises(AudiobenchError, match=r"suite.yaml:3: invalid YAML"):
        load_suite(path)


def test_missing_suite_file(tmp_path) -> None:
    with pytest.raises(AudiobenchError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")


def test_missing_plugin_file_is_located(write_suite) -> None:
    got = messages("name: x\ndataset: synth\nmethods: [saliency]\nplugins: [nowhere.py]\n", write_suite)
    assert got[0].startswith("4: plugin file not found")


def test_plugin_redefining_a_builtin_is_an_error(write_suite, tmp_path) -> None:
    (tmp_path / "dup.py").write_text(
        "from audiobench.methods import Explainer\nfrom audiobench.contracts.registry import METHODS\n\n"
        "@METHODS.register('saliency')\nclass Mine(Explainer):\n    '''mine'''\n"
    )
    got = messages("name: x\ndataset: synth\nmethods: [saliency]\nplugins: [dup.py]\n", write_suite)
    assert "duplicate method name 'saliency'" in got[0]


def test_quickstart_suite_is_valid() -> None:

    suite = load_suite(ROOT / "suites" / "quickstart.yaml")
    assert [d.build().key() for d in suite.domains] == ["stft2mel", "stft2mel_log1p", "mel"]
    # the paper's protocol: trained with noise, evaluated in-domain on it and out-of-domain on mixtures
    assert [c.in_domain for c in suite.contaminations] == [True, False]
    assert [c.name for c in suite.augment] == ["white_noise"] and suite.train.augment_prob > 0
    assert suite.train.mixture_prob == 0
    assert {m.name for m in suite.methods} >= {
        "saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam_pp",
        "guided_backprop", "guided_gradcam", "shap", "random",
    }
