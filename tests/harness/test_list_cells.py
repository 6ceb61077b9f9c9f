"""``audiobench run SUITE --list-cells`` lists the cell ids without training the classifier: the ids
are those of the run that trains it (the classifier enters them by its cache key only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audiobench.cli import main
from audiobench.harness.session import list_cells, prepare, run_cell
from audiobench.kernel.cache import cache_dir

FRONT = {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32}
MODELS = {
    "cnn14": {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 1, "batch_size": 8}},
    "clap_synth": {"name": "clap_synth", "width": 4, "depth": 2, "dim": 16, "text_width": 16, "train": {"epochs": 1}},
}


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", "off")
    return cache_dir()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_listing_trains_nothing_and_gives_the_ids_of_the_run(model: str, fresh_cache: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "ls", "seed": 0, "frontend": FRONT, "model": MODELS[model], "batch_size": 4,
        "dataset": {"name": "synth", "classes": 3, "clips_per_class": 6, "seconds": 0.5},
        # in-domain: clap_synth buries some training clips in white noise (its faint captions)
        "domains": ["mel"], "contaminations": ["none", {"name": "white_noise", "snr_db": 5, "in_domain": True}],
        "methods": ["saliency", "random"], "metrics": ["ai", "ad"], "audio": {"n": 0},
    }))
    out = tmp_path / "run"
    listed = list_cells(suite, out)
    assert not list(fresh_cache.glob("classifiers/*.pt"))  # nothing trained, nothing loaded
    assert len(listed) == 4 and not any(done for _, done in listed)
    session = prepare(suite, out, progress=False)  # trains the classifier
    assert list(fresh_cache.glob("classifiers/*.pt"))
    assert [c.id for c, _ in listed] == [c.id for c in session.cells]
    run_cell(session, session.cells[1])
    assert main(["run", str(suite), "-o", str(out), "--list-cells", "-q"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [cid for cid, _ in lines] == [c.id for c in session.cells]
    assert [state for _, state in lines] == ["to do", "done", "to do", "to do"]
