"""The command line as a user meets it: help, list, validate, run, table, one-line errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

from audiobench.cli import main


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiobench", *args], capture_output=True, text=True, env=env)


def test_help_explains_every_command() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for command in ("run", "validate", "list", "table"):
        assert command in out.stdout
    run_help = cli("run", "--help").stdout
    for flag in ("--output", "--limit", "--device", "--overwrite"):
        assert flag in run_help


def test_list_prints_name_and_description(capsys) -> None:
    for kind, name in [("methods", "integrated_gradients"), ("metrics", "fid_in"), ("datasets", "synth"),
                       ("contaminations", "mixture"), ("domains", "stft2mel"), ("models", "cnn14")]:
        assert main(["list", kind]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        row = next(line for line in lines if line.split()[0] == name)
        assert len(row.split(None, 1)[1]) > 10  # a one-line description
        assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_list_verbose_shows_each_parameter_with_its_default(capsys) -> None:
    assert main(["list", "domains", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "operator = 'linear': what the mask multiplies" in out
    assert main(["list", "methods", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "n_samples = 50" in out and "lambda_g = required" not in out  # nested models stay one line
    assert "finetune = None" in out


def test_list_models_verbose_says_what_each_model_reads_and_how_it_trains(capsys) -> None:
    assert main(["list", "models", "--verbose"]) == 0
    out = capsys.readouterr().out.splitlines()

    def block(name: str) -> str:
        start = next(i for i, line in enumerate(out) if line.startswith(name + " "))
        return "\n".join(out[start : start + 3])

    assert "output kind: softmax; trained: yes (model.train)" in block("cnn14") and "front end: any" in block("cnn14")
    assert "output kind: similarity; trained: yes, its own way" in block("clap_synth")
    assert "trained: no (used as built)" in block("msclap") and "sample_rate 44100" in block("msclap")
    assert "knows its exact attribution" in block("band_energy")
    assert "input: waveform" in block("wavecnn") and "input: logmel" in block("cnn14")
    hf = "\n".join(out[next(i for i, line in enumerate(out) if line.startswith("hf_audio ")):][:4])
    assert "input: logmel" in hf and "wav2vec2 / HuBERT / WavLM the waveform" in hf  # per instance, said


def test_user_errors_are_one_line_without_traceback(tmp_path: Path, write_suite) -> None:
    missing = cli("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"audiobench: error: suite file not found: {tmp_path / 'nope.yaml'}"

    bad = write_suite({"methods": ["saliency", "integrated_gradient"]})
    out = cli("run", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    line = bad.read_text().splitlines().index("- integrated_gradient") + 1  # the entry's own line
    assert out.stderr.strip() == f"{bad}:{line}: unknown method 'integrated_gradient' (did you mean 'integrated_gradients'?)"

    no_run = cli("table", str(tmp_path))
    assert no_run.returncode == 1 and "not a finished audiobench run" in no_run.stderr
    assert len(no_run.stderr.strip().splitlines()) == 1


def test_validate_ok(write_suite) -> None:
    out = cli("validate", str(write_suite()))
    assert out.returncode == 0
    assert "ok (16 cells: 4 methods x 2 domains x 2 contaminations)" in out.stdout


def test_run_then_table_in_every_format(write_suite, tmp_path: Path) -> None:
    suite = write_suite({"methods": ["random"], "domains": ["mel"], "contaminations": ["none"]})
    run_dir = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(run_dir), "--limit", "4", "-q"]) == 0
    for fmt, marker in [("markdown", "| Mel"), ("latex", "\\begin{tabular}")]:
        out = cli("table", str(run_dir), "--format", fmt)
        assert out.returncode == 0, out.stderr
        assert marker in out.stdout
    out = cli("table", str(run_dir), "--format", "csv")
    frame = pd.read_csv(io.StringIO(out.stdout))  # one table: machine-readable as it is printed
    assert list(frame.columns) == ["dataset", "contamination", "domain", "row", "ai", "ad", "ag", "ff", "fid_in",
                                   "sps", "comp", "mm", "n"]
    assert frame[["dataset", "contamination", "domain", "row", "n"]].values.tolist() == [["synth", "none", "mel", "Random", 4]]


def test_list_shows_a_suites_plugin_models_with_plugins(tmp_path: Path) -> None:
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from audiobench.contracts.registry import MODELS\n"
        "from audiobench.models.cnn14 import Cnn14Spec\n\n\n"
        "@MODELS.register('my_lab_cnn')\n"
        "class MyLab(Cnn14Spec):\n"
        "    \"\"\"Our lab's CNN.\"\"\"\n"
    )
    (tmp_path / "suites").mkdir()
    suite = tmp_path / "suites" / "mine.yaml"
    suite.write_text("name: mine\nplugins: [../mine.py]\n")  # relative to the suite's folder, as in a run
    assert "my_lab_cnn" not in cli("list", "models").stdout
    for source in (suite, plugin):
        out = cli("list", "models", "--plugins", str(source))
        assert out.returncode == 0 and "my_lab_cnn             Our lab's CNN." in out.stdout
    missing = cli("list", "models", "--plugins", str(tmp_path / "none.py"))
    assert missing.returncode == 1 and missing.stderr.strip() == f"--plugins: {tmp_path / 'none.py'} not found"


def test_a_plugin_on_an_old_import_path_is_pointed_at_audiobench_api(tmp_path: Path) -> None:
    plugin = tmp_path / "old.py"
    plugin.write_text("from audiobench.registry import METHODS\n")  # a path of an earlier layout
    out = cli("list", "methods", "--plugins", str(plugin))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "No module named 'audiobench.registry'" in out.stderr and "from audiobench.api" in out.stderr


def test_a_rerun_says_nothing_was_recomputed(write_suite, tmp_path: Path) -> None:
    suite = write_suite({"methods": ["random", "saliency"], "domains": ["mel"], "contaminations": ["none"],
                         "metrics": ["ad"], "audio": {"n": 0}})
    first = cli("run", str(suite), "-o", str(tmp_path / "run"), "--limit", "3", "-q")
    assert first.returncode == 0 and "; 2 cells computed" in first.stderr
    again = cli("run", str(suite), "-o", str(tmp_path / "run"), "--limit", "3", "-q")
    assert again.returncode == 0 and "; nothing recomputed: every cell was stored" in again.stderr
