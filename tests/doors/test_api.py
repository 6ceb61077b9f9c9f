"""The notebook API does what the command line does."""

from __future__ import annotations

from pathlib import Path

import audiobench as ab


def test_run_load_render_validate(write_suite, tmp_path: Path) -> None:
    suite = write_suite({"methods": ["saliency", "random"], "domains": ["mel"], "contaminations": ["none"]})
    assert ab.validate(suite) == []
    result = ab.run(suite, tmp_path / "run", limit=4, progress=False)
    frame = ab.load_run(result.run_dir)
    assert set(frame.row) == {"Saliency", "Random"}
    assert frame[frame.metric == "ai"].shape[0] == 8
    tables = ab.render_table(result.run_dir)
    assert tables == result.tables
    assert "| Saliency" in tables["main__synth__none"]
    assert ab.load_manifest(result.run_dir)["limit"] == 4

    bad = write_suite({"methods": ["saliency", "smoothgrad{n_samples: 0}"]}, name="bad.yaml")
    problems = ab.validate(bad)
    assert len(problems) == 1 and problems[0].startswith(f"{bad}:") and "n_samples" in problems[0]
