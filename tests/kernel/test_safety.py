"""Safety: weights and YAML load without executing code, plugins come only from entry points or named
files, a run makes no network access, and sample ids cannot write outside the run directory."""

from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from audiobench.harness.runner import run_suite
from audiobench.store.audio import write_wavs
from audiobench.store.ids import file_stem, safe_child
from tests.paths import ROOT

REPO = ROOT
SOURCES = sorted(p for d in ("audiobench", "methods", "metrics") for p in (REPO / d).rglob("*.py"))


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            out.append((f"{owner}.{name}" if owner or isinstance(f, ast.Attribute) else name, node))  # bare: builtins
    return out


def test_weights_and_yaml_load_without_running_code() -> None:
    assert len(SOURCES) > 30
    loads = 0
    for path in SOURCES:
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name == "torch.load":
                loads += 1
                flags = {k.arg: k.value for k in call.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, where
            assert name not in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads",
                                "eval", "exec"), where
    assert loads >= 3  # the cached-artefact helper (every trained artefact: both layouts), checkpoints


def test_plugins_come_only_from_entry_points_or_named_files() -> None:
    importers = set()
    for path in SOURCES:
        for name, _ in _calls(ast.parse(path.read_text(), str(path))):
            if name.endswith(("spec_from_file_location", "import_module", "__import__", "exec_module")):
                importers.add(path.relative_to(REPO).as_posix())
    assert importers <= {"audiobench/contracts/registry.py"}, importers


EVIL_IDS = ["../../escaped", "/tmp/absolute_escape", "a/b", "..", ".hidden", "ok-id", "x\x00y"]


def test_sample_ids_never_write_outside_their_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "audio" / "none" / "input"
    write_wavs(folder, EVIL_IDS, np.zeros((len(EVIL_IDS), 160)) + 0.1, 16000)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == len(EVIL_IDS) and all(p.parent == folder for p in written)
    assert not Path("/tmp/absolute_escape.wav").exists()
    assert (folder / "ok-id.wav").exists()  # a plain id keeps its name
    stems = [file_stem(s) for s in EVIL_IDS]
    assert len(set(stems)) == len(stems) and all("/" not in s and not s.startswith(".") for s in stems)
    assert safe_child(folder, "../x", ".wav").parent == folder


PLUGIN = '''
import torch
from audiobench.data.base import ClipSet, Dataset
from audiobench.contracts.registry import DATASETS


@DATASETS.register("evil_ids")
class EvilIds(Dataset):
    """Sines whose ids are paths: relative, absolute, with separators."""

    name = "evil_ids"

    def load(self, split, sample_rate):
        n = 6
        t = torch.arange(sample_rate // 2) / sample_rate
        labels = torch.arange(n) % 2
        wave = torch.stack([torch.sin(2 * torch.pi * (300 + 900 * int(c) + 10 * i) * t) for i, c in enumerate(labels)]) * 0.5
        evil = ["../../{s}_escape{i}", "/tmp/{s}_abs{i}", "{s}/sub/{i}"]
        ids = [evil[i % 3].format(s=split, i=i) for i in range(n)]
        return ClipSet(wave, labels, ids, ["low", "high"], sample_rate, targets=wave.clone())
'''


def test_a_run_needs_no_network_and_keeps_files_inside_its_directory(
    write_suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):  # recorded, so an access that some library catches still fails the test
        attempts.append(args[:2])
        raise OSError("network access disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    (tmp_path / "evil.py").write_text(PLUGIN)
    suite = write_suite({"plugins": ["evil.py"], "dataset": "evil_ids", "methods": ["saliency", "random"],
                         "domains": ["stft2mel"], "contaminations": ["none", {"name": "white_noise", "snr_db": 10}],
                         "metrics": ["ai", "ad"], "audio": {"n": 6}})
    before = {p for p in tmp_path.parent.rglob("*")}
    result = run_suite(suite, tmp_path / "run", progress=False)
    cache = Path(os.environ["AUDIOBENCH_CACHE"])  # the session's classifier cache lives beside the tests' folders
    created = {p for p in tmp_path.parent.rglob("*") if not p.is_relative_to(cache)} - before
    assert created and all(p.is_relative_to(tmp_path / "run") for p in created)
    assert not list(Path("/tmp").glob("test_abs*.wav"))
    wavs = list((tmp_path / "run" / "audio").rglob("*.wav"))
    assert len(wavs) == 3 * 2 * 6  # (2 methods + input) x 2 conditions x 6 clips, none lost to a shared name
    assert {len(p.relative_to(tmp_path / "run" / "audio").parts) for p in wavs} == {3}  # audio/<condition>/<method>/<file>
    assert len(result.manifest["cells"]) == 4
    assert attempts == []
