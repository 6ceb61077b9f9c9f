"""Where things are, for tests in any folder under tests/: ``from tests.paths import ROOT, TESTS``.

Tests sit one level down, by layer (tests/kernel/, tests/harness/, ...); these constants replace
``Path(__file__).parent`` arithmetic, which changes when a test moves between folders."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent  # tests/: conftest.py, fakedata.py, browser.py, plugins/, bad_suites/
ROOT = TESTS.parent  # the repository: suites/, examples/, results/, tools/, README.md
PLUGINS = TESTS / "plugins"
BAD_SUITES = TESTS / "bad_suites"
SUITES = ROOT / "suites"
