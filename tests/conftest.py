"""Shared fixtures: an isolated cache per test session and the tiny suite (audiobench.testing.TINY_SUITE) written to a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from audiobench.testing import tiny_suite  # the one tiny suite (TINY_SUITE there)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["AUDIOBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a suite (the tiny one, updated with overrides) to a YAML file and return its path."""

    def write(overrides: dict | None = None, name: str = "suite.yaml", text: str | None = None) -> Path:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        else:
            path.write_text(yaml.safe_dump(tiny_suite(**(overrides or {})), sort_keys=False, allow_unicode=True))
        return path

    return write


# Markers (pyproject.toml lists them; `make test-fast` leaves slow, browser, cluster, latex and pip out).
# Whole modules that train a classifier or run suites are slow; a test anywhere else that does is
# marked where it is written (@pytest.mark.slow). Tests that take the `browser` fixture are browser tests.
SLOW_MODULES = {
    "test_shipped", "test_executors", "test_sanity_stage", "test_run", "test_resume", "test_suite_properties",
    "test_zeroshot", "test_report_listen", "test_roar", "test_snr", "test_plugin", "test_l2i", "test_lmac",
    "test_cell_and_score", "test_clotho", "test_msclap", "test_randomisation", "test_list_cells", "test_sampling",
    "test_fitting", "test_output_kinds", "test_localisation", "test_bring_your_model", "test_multilabel_run",
    "test_l2i_multilabel", "test_lmac_multilabel", "test_waveform_run", "test_hf_audio_run", "test_piq", "test_lmac_finetune",
    "test_module_paths", "test_input_level", "test_l2i_bd", "test_lmac_td", "test_lmac_ranked",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
