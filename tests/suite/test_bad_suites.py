"""A corpus of malformed suites (tests/bad_suites/*.yaml): each one is refused by `audiobench validate`.

Every problem a file holds is marked on its line by a comment ``# error: <fragment>``. The test
runs ``audiobench validate`` on a copy of the file (in-process through ``audiobench.cli.main``,
and as a subprocess for a few), and asserts: exit status 1, no traceback, one output line per
problem, each ``file:line: message`` at the marked line and containing the marked fragment.
Suites naming ``root: tiny`` get a small audio folder beside them (3 classes, 3 clips each).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiobench.cli import main
from tests.paths import TESTS

CORPUS = TESTS / "bad_suites"
FILES = sorted(CORPUS.glob("*.yaml"))
MARK = re.compile(r"#\s*error:\s*(.+?)\s*$")


def expected(path: Path) -> list[tuple[int, str]]:
    """(line, message fragment) of every ``# error:`` mark of a corpus file."""
    out = []
    for n, text in enumerate(path.read_text().splitlines(), start=1):
        m = MARK.search(text)
        if m:
            out.append((n, m.group(1)))
    return out


def write_tiny_folder(root: Path) -> None:
    """An audio_folder dataset: 3 classes (sub-folders) of 3 half-second tones at 16 kHz."""
    t = np.arange(8000) / 16000
    for k, f0 in enumerate((400.0, 700.0, 1000.0)):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(3):
            sf.write(root / f"c{k}" / f"x{i}.wav", 0.5 * np.sin(2 * np.pi * f0 * (1 + 0.1 * i) * t), 16000)


def copy_case(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    if "root: tiny" in src.read_text():
        write_tiny_folder(tmp_path / "tiny")
    return dst


def check_output(path: Path, err: str, marks: list[tuple[int, str]]) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == len(marks), lines
    located = []
    for line in lines:
        m = re.match(rf"^{re.escape(str(path))}:(\d+): (.+)$", line)
        assert m, f"not 'file:line: message': {line!r}"
        located.append((int(m.group(1)), m.group(2)))
    for n, fragment in marks:
        hits = [msg for ln, msg in located if ln == n and fragment in msg]
        assert len(hits) == 1, f"expected line {n} with {fragment!r}; got {located}"


def test_corpus_is_large_and_marked() -> None:
    assert len(FILES) >= 40
    for f in FILES:
        assert expected(f), f"{f.name} marks no '# error:' line"


@pytest.mark.parametrize("src", FILES, ids=[f.stem for f in FILES])
def test_validate_refuses_bad_suite(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_case(src, tmp_path)
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    check_output(path, captured.err, expected(src))


@pytest.mark.parametrize("name", ["folder_shorter_than_padding"])
def test_validate_subprocess(name: str, tmp_path: Path) -> None:
    src = CORPUS / f"{name}.yaml"
    path = copy_case(src, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "audiobench", "validate", str(path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1
    check_output(path, proc.stderr, expected(src))
