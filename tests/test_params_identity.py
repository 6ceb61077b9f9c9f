"""A parameter added to a component keeps every earlier identity: at its default it is left out of the
dumps that cell hashes and fit keys are computed from (``Params.added_fields``), so committed runs
and shipped fits stay valid; set to another value it enters them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from audiobench.contracts.component import Params
from audiobench.harness.session import list_cells
from audiobench.kernel.cache import stable_hash

ROOT = Path(__file__).resolve().parents[1]


class Inner(Params):
    a: int = 1
    b: str = "x"
    added_fields: ClassVar[frozenset[str]] = frozenset({"b"})


class Outer(Params):
    c: int = 2
    inner: Inner | None = None
    d: float = 0.5
    added_fields: ClassVar[frozenset[str]] = frozenset({"d"})


def test_an_added_field_at_its_default_leaves_the_dump_and_the_hash_unchanged() -> None:
    before = {"c": 2, "inner": {"a": 1}}  # what the classes dumped before b and d existed
    assert Outer(inner=Inner()).model_dump(mode="json") == before
    assert stable_hash(Outer(inner=Inner()).model_dump(mode="json")) == stable_hash(before)
    assert json.loads(Outer(inner=Inner()).model_dump_json()) == before


def test_an_added_field_set_elsewhere_enters_the_dump_nested_or_not() -> None:
    assert Outer(inner=Inner(b="y"), d=1).model_dump() == {"c": 2, "inner": {"a": 1, "b": "y"}, "d": 1.0}
    assert Outer(c=3).model_dump() == {"c": 3, "inner": None}  # an ordinary field is always dumped
    again = Outer(**Outer(inner=Inner(b="y")).model_dump())
    assert again == Outer(inner=Inner(b="y")) and again.d == 0.5  # the dump still rebuilds the same parameters


COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/manifest.json"))


@pytest.mark.parametrize("run", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_runs_keep_their_cell_ids(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suites behind the committed results still give the committed cell ids: no parameter added
    since has moved a hash, so rerunning a suite into its results folder resumes instead of redoing it."""
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    manifest = json.loads((run / "manifest.json").read_text())
    if manifest["suite"]["dataset"]["name"] == "esc10" and not (ROOT.parent / "shared" / "data" / "ESC-10").is_dir():
        pytest.skip("ESC-10 is not at ../shared/data/ESC-10 on this machine (its cell ids hash the file list)")
    cells = list_cells(ROOT / manifest["suite_file"], output=tmp_path / "run", limit=manifest["limit"])
    assert sorted(c.id for c, _ in cells) == sorted(c["id"] for c in manifest["cells"])
