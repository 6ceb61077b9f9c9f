"""Declared contracts (issue 26, step 6): every hook the harness calls is declared, with a documented
default, on its base class; layer names come from the model; one helper caches trained artefacts."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field

from audiobench.contracts.component import Component, Params
from audiobench.contracts.domains import Domain
from audiobench.data.base import Dataset
from audiobench.data.contaminations import Contamination
from audiobench.kernel import shipped
from audiobench.kernel.artefacts import INFO_KEY, cached_artefact
from audiobench.kernel.cache import cache_dir
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import Explainer
from audiobench.methods.blocks import layer_choices, layer_index
from audiobench.methods.cam import GradCAM
from audiobench.models.base import AudioClassifier, ModelSpec
from audiobench.models.cnn14 import Cnn14Spec
from tests.paths import ROOT

REPO = ROOT
LIBRARY = [REPO / "audiobench", REPO / "methods", REPO / "metrics"]

#: base class -> the hooks the harness calls on it (each declared on the base, with a docstring)
HOOKS: dict[type, tuple[str, ...]] = {
    Component: ("description", "label", "details"),
    ModelSpec: ("build", "train_model", "trains_own_way", "trained_conditions", "model_key", "details",
                "required_frontend", "check", "checkpoint", "architecture", "block_names", "min_input", "silent_blocks"),
    AudioClassifier: ("network_input", "blocks", "block_names", "block", "block_channels", "features", "head",
                      "forward", "exact_attribution", "probabilities", "attention_maps", "token_grid", "patch_map"),
    Explainer: ("attribute", "explain", "fit", "row_label", "check_params", "check_classifier", "augments",
                "fit_notes", "note", "domain_problem", "check_targets", "unexplained_reason", "cell_identity",
                "grid_problem"),
    Dataset: ("load", "fingerprint", "check", "class_count", "known_class_names", "clip_seconds", "has_folds",
              "folds", "load_folds"),
    Contamination: ("key", "identity", "overlaps", "title", "apply", "pool", "check"),
    Domain: ("key", "title", "model_problem", "to_logmel", "to_audio", "grid_bins"),
}
HOOK_NAMES = sorted({h for hooks in HOOKS.values() for h in hooks} | {
    "output_kind", "output_kinds", "trainable", "detector", "code_version", "run_notes", "Params",
    "needs_exact_attribution", "knows_exact_attribution", "input_kind", "has_attention", "needs_attention"})
#: duck-typed reads of foreign objects, left as they are: (file, what)
FOREIGN_HASATTR = {("audiobench/sanity/randomisation.py", "reset_parameters")}  # torch modules


def _library_lines() -> list[tuple[str, int, str]]:
    out = []
    for root in LIBRARY:
        for path in sorted(root.rglob("*.py")):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                out.append((str(path.relative_to(REPO)), i, line))
    return out


def test_no_hook_is_looked_up_by_hasattr_or_getattr() -> None:
    """A hook is called directly: no ``hasattr(obj, "hook")`` / ``getattr(obj, "hook", None)`` in the library."""
    found = []
    for rel, i, line in _library_lines():
        for what in re.findall(r"hasattr\([^,]+,\s*[\"'](\w+)[\"']", line):
            if (rel, what) not in FOREIGN_HASATTR:
                found.append(f"{rel}:{i}: {line.strip()}")
        for obj, what in re.findall(r"getattr\(([^,]+),\s*[\"'](\w+)[\"']", line):
            if what in HOOK_NAMES and not obj.strip().endswith("params"):  # a parameter read is no hook
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "hooks looked up instead of called:\n" + "\n".join(found)


@pytest.mark.parametrize(("base", "hook"), [(b, h) for b, hooks in HOOKS.items() for h in hooks],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_each_base_declares_its_hooks_with_a_docstring(base: type, hook: str) -> None:
    assert hook in vars(base), f"{base.__name__}.{hook} is not declared on the base class"
    doc = inspect.getdoc(getattr(base, hook))
    assert doc and len(doc) > 20, f"{base.__name__}.{hook} has no docstring saying what it returns"


# -- the defaults give what the callers did when a hook was absent --------------------------------------
class _BareSpec(ModelSpec):
    """A model spec that overrides nothing but build."""


class _CheckpointSpec(ModelSpec):
    """A plugin spec with a checkpoint parameter."""

    class Params(Params):
        checkpoint: Path | None = Field(None)


class _BareData(Dataset):
    """A dataset without folds or a seconds parameter."""

    class Params(Params):
        classes: int = 2


class _Seconds(Dataset):
    """A dataset with a clip length."""

    class Params(Params):
        seconds: float = 1.5


def test_model_spec_defaults_mean_the_spec_does_not_say() -> None:
    spec = _BareSpec()
    assert spec.architecture() is None and spec.block_names() is None and spec.min_input() is None
    assert spec.checkpoint() is None and spec.check() == [] and _BareSpec.details() and spec.silent_blocks() == {}
    assert _CheckpointSpec({"checkpoint": "/x/w.pt"}).checkpoint() == Path("/x/w.pt")  # read from the parameter


def test_cnn14_says_its_blocks_without_building() -> None:
    spec = Cnn14Spec({"width": 4, "depth": 3})
    assert spec.architecture() == (4, 3) and spec.block_names() == ["conv_block1", "conv_block2", "conv_block3"]
    assert spec.block_names() == spec.build(["a", "b"], 16).block_names()  # the spec says what the model has
    assert spec.min_input() == (4, 4, "a cnn14 of depth 3 (2 2x2 poolings)")


def test_dataset_defaults() -> None:
    data = _BareData()
    assert not data.has_folds() and data.folds() == set() and data.clip_seconds() is None
    assert data.check() == [] and data.class_count() is None and data.known_class_names() is None
    with pytest.raises(AudiobenchError, match="has no folds"):
        data.load_folds([1], 16000)
    assert _Seconds().clip_seconds() == 1.5
    assert Component.details() == [] and _BareData.details() == []


def test_explainer_defaults_report_nothing() -> None:
    class Bare(Explainer):
        """A method with no checks."""

        name: ClassVar[str] = "bare"

    method = Bare()
    assert method.check_params() == [] and method.check_classifier(4, "cnn14", ["a"]) == []
    assert method.row_label() == "bare"


def test_a_mixture_from_folds_needs_a_dataset_with_folds() -> None:
    from audiobench.data.contaminations import Mixture

    mix = Mixture({"snr_db": 0, "source": {"folds": [1]}})
    assert mix.check(_BareData()) == ["mixture: source folds need a dataset with folds (esc50, urbansound8k), not ''"]
    with pytest.raises(AudiobenchError, match="^mixture source folds: dataset '' has no folds$"):
        mix.pool(_BareData(), {}, "test", 16000)


# -- layer names come from the model ----------------------------------------------------------------------
def test_layer_names_are_the_models() -> None:
    names = ["stem", "middle", "top"]
    assert layer_index("middle", 3, "toy", names) == 2 and layer_index("last", 3, "toy", names) == 3
    with pytest.raises(AudiobenchError, match=r"^'conv_block1' is not a block of this toy \(depth 3\); use last, "
                                              r"stem\.\.top, 1\.\.3 .* or a dotted module path to a submodule \(top\.<child>\)$"):
        layer_index("conv_block1", 3, "toy", names)
    assert layer_index("anything", 3, "toy", None) is None  # names unknown: the run checks it
    assert layer_choices(2) == "last, 1..2 (negative: from the deepest, -1 = last) or a dotted module path to a submodule"
    assert GradCAM({"layer": "band"}).check_classifier(1, "band_energy", ["band"]) == []
    ((param, problem),) = GradCAM({"layer": "conv_block1"}).check_classifier(1, "band_energy", ["band"])
    assert param == "layer" and "use last, band, 1..1" in problem


def test_no_cnn14_block_name_in_the_method_contract() -> None:
    for rel in ("methods/base.py", "methods/blocks.py", "audiobench/suite/crossref.py"):
        code = [line for line in (REPO / rel).read_text().splitlines() if not line.lstrip().startswith(("#", '"'))]
        assert not [line for line in code if "conv_block" in line and "``" not in line], rel


# -- the cached-artefact helper ---------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", "off")
    return cache_dir()


def _trainer(state: dict[str, Any], info: dict[str, Any]) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def train() -> tuple[dict[str, Any], dict[str, Any]]:
        calls.append(1)
        return state, info

    return train, calls


def test_a_miss_trains_and_writes_then_a_hit_loads(cache: Path) -> None:
    weights, meta = cache / "classifiers" / "k.pt", cache / "classifiers" / "k.json"
    train, calls = _trainer({"w": torch.arange(3.0)}, {"hash": "k", "cached": False})
    state, info, cached = cached_artefact(weights, train, meta)
    assert calls == [1] and cached is False and info == {"hash": "k", "cached": False}
    assert torch.equal(torch.load(weights, weights_only=True)["w"], torch.arange(3.0))
    assert json.loads(meta.read_text()) == {"hash": "k", "cached": False}  # written as train returned it
    assert not list(weights.parent.glob(".*.tmp"))  # atomic writes leave nothing behind
    state, info, cached = cached_artefact(weights, train, meta)
    assert calls == [1] and cached is True and torch.equal(state["w"], torch.arange(3.0))
    assert info == {"hash": "k", "cached": False}  # read back unchanged: the caller sets its flag


def test_a_one_file_artefact_keeps_the_nmf_layout(cache: Path) -> None:
    path = cache / "methods" / "l2i" / "k.nmf.pt"
    train, calls = _trainer({"W": torch.ones(2, 3)}, {"key": "k", "shape": [2, 3]})
    state, info, cached = cached_artefact(path, train)
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ["W", INFO_KEY] and json.loads(saved[INFO_KEY]) == {"key": "k", "shape": [2, 3]}
    assert not cached and not path.with_suffix(".json").exists()
    state, info, cached = cached_artefact(path, train)
    assert calls == [1] and cached and list(state) == ["W"] and info == {"key": "k", "shape": [2, 3]}


def test_a_shipped_copy_is_restored_without_training(cache: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    (store / "methods" / "toy").mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, store / "methods/toy/k.pt")
    (store / "methods/toy/k.json").write_text(json.dumps({"key": "k", "history": []}))
    files = {rel: shipped.sha256(store / rel) for rel in ("methods/toy/k.pt", "methods/toy/k.json")}
    (store / shipped.INDEX).write_text(json.dumps({"files": files}))
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))

    def train() -> tuple[dict[str, Any], dict[str, Any]]:
        raise AssertionError("a shipped artefact must not be retrained")

    state, info, cached = cached_artefact(cache / "methods/toy/k.pt", train, cache / "methods/toy/k.json")
    assert cached and torch.equal(state["w"], torch.ones(2)) and info["shipped"]["store"] == "store"


def test_a_failed_training_writes_nothing(cache: Path) -> None:
    def train() -> tuple[dict[str, Any], dict[str, Any]]:
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError):
        cached_artefact(cache / "x.pt", train, cache / "x.json")
    assert not (cache / "x.pt").exists() and not (cache / "x.json").exists()


def test_one_helper_serves_every_trained_artefact() -> None:
    """No copy of restore / torch.save / the two atomic writes is left beside the helper."""
    users = ["audiobench/models/training.py", "audiobench/models/clap_synth.py", "methods/base.py", "methods/l2i_fit.py"]
    for rel in users:
        text = (REPO / rel).read_text()
        assert "cached_artefact(" in text, rel
        assert "restore(" not in text and "torch.save(" not in text and "atomic_write" not in text, rel


def test_every_builtin_override_of_a_validate_hook_takes_the_base_signature() -> None:
    """The harness calls check_classifier(depth, model, names) and check_params(): a built-in (or merged)
    method written against an older signature fails at validate with a TypeError, as PIQ did."""
    from audiobench.contracts.registry import METHODS

    for hook in ("check_classifier", "check_params", "row_label", "fit_notes", "domain_problem"):
        want = list(inspect.signature(getattr(Explainer, hook)).parameters)
        for name in METHODS.builtin_names():
            got = list(inspect.signature(getattr(METHODS.get(name), hook)).parameters)
            assert got == want, f"{name}.{hook}{tuple(got)} is not Explainer.{hook}{tuple(want)}"
