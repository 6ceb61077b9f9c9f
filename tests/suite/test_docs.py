"""The suite documentation names every parameter of every built-in component."""

from __future__ import annotations

from audiobench.contracts.frontend import FrontendParams
from audiobench.contracts.registry import REGISTRIES
from audiobench.contracts.targets import TargetParams
from audiobench.suite import TOP_LEVEL_KEYS, AudioParams, MaskParams, TrainParams
from audiobench.suite.schema import ExecutorParams
from audiobench.tables import TableSpec
from tests.paths import ROOT

DOC = (ROOT / "suites" / "README.md").read_text()


def test_every_key_and_parameter_is_documented() -> None:
    keys = set(TOP_LEVEL_KEYS)
    for params in (FrontendParams, TrainParams, TableSpec, AudioParams, TargetParams, MaskParams, ExecutorParams):
        keys |= set(params.model_fields)
    for kind in ("methods", "datasets", "contaminations", "domains", "models", "metrics"):
        for name in REGISTRIES[kind].builtin_names():
            obj = REGISTRIES[kind].get(name)
            assert f"`{name}`" in DOC, f"{kind} '{name}' is not documented"
            params = getattr(obj, "Params", None)
            if params is not None:
                keys |= set(params.model_fields)
    missing = sorted(k for k in keys if f"`{k}`" not in DOC)
    assert not missing, f"undocumented keys: {missing}"
