"""Property-based suite tests (hypothesis): suites generated from the schema, valid and mutated.

* Any value at any key gives either a :class:`Suite` or :class:`SuiteErrors` whose every problem is
  one located line: never another exception.
* A suite `validate` accepts has a geometry that works: a clip of its length goes through the
  front end, each domain, the classifier and the GradCAM layer it names, and the inverse STFT.
* A valid suite mutated by one known-invalid change is refused, each problem at a line.
* A few valid tiny suites run end to end (tiny synth, width-4 cnn14, 1 epoch, a few clips).

Examples are derandomised (the same on every run) and few, so the file stays within about a minute.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from audiobench.kernel.errors import AudiobenchError
from audiobench.suite import Suite, SuiteErrors, load_suite

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RUNS = settings(FAST, max_examples=3)

# -- generated suites ---------------------------------------------------------------------------

n_ffts = st.sampled_from([64, 128, 256, 512])


@st.composite
def frontends(draw: st.DrawFn) -> dict[str, Any]:
    """Front ends over the schema's ranges, including ones whose geometry cannot work."""
    n_fft = draw(n_ffts)
    out: dict[str, Any] = {"n_fft": n_fft, "win_length": draw(st.integers(16, n_fft))}
    out["hop_length"] = draw(st.integers(1, out["win_length"] + 64))
    out["n_mels"] = draw(st.integers(8, 64))
    if draw(st.booleans()):
        out["window"] = draw(st.sampled_from(["hann", "hamming"]))
    if draw(st.booleans()):
        out["f_min"] = draw(st.sampled_from([0.0, 50.0, 2000.0, 7999.0]))
    return out


methods = st.sampled_from([
    "saliency", "random", {"name": "gradcam", "layer": "last"}, {"name": "gradcam", "layer": 1},
    {"name": "gradcam_pp", "layer": "conv_block2"}, {"name": "gradcam", "layer": -1},
    {"name": "integrated_gradients", "n_steps": 2},
])
metrics = st.lists(st.sampled_from(["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"]), min_size=1, max_size=4, unique=True)
columns = st.sampled_from(["dataset", "model", "domain", "contamination", "method", "label"])


@st.composite
def suites(draw: st.DrawFn, tiny: bool = False) -> dict[str, Any]:
    """A suite dict drawn from the schema; ``tiny``: small enough to run in a few seconds."""
    depth = draw(st.integers(1, 2 if tiny else 6))
    suite: dict[str, Any] = {
        "name": "prop",
        "seed": draw(st.integers(0, 3)),
        "dataset": {"name": "synth", "classes": 2, "clips_per_class": 5, "seconds": 0.5 if tiny else draw(
            st.sampled_from([0.5, 0.75, 1.0]))},
        "model": {"name": "cnn14", "width": 4, "depth": depth, "train": {"epochs": 1, "batch_size": 8}},
        "domains": draw(st.lists(st.sampled_from(["stft2mel", "mel"]), min_size=1, max_size=2, unique=True)),
        "contaminations": draw(st.sampled_from([["none"], ["none", {"name": "white_noise", "snr_db": 3}]])),
        "methods": draw(st.lists(methods, min_size=1, max_size=2, unique_by=str)),
        "metrics": draw(metrics),
        "audio": {"n": draw(st.integers(0, 1))},
        "batch_size": 4,
        "limit": 3,
    }
    if tiny:
        suite["frontend"] = {"n_fft": draw(st.sampled_from([128, 256])), "hop_length": 64, "n_mels": 16}
        suite["frontend"]["win_length"] = suite["frontend"]["n_fft"]
        suite["methods"] = ["saliency"] + draw(st.lists(st.sampled_from([{"name": "gradcam", "layer": depth}]), max_size=1))
    elif draw(st.booleans()):
        suite["frontend"] = draw(frontends())
    if draw(st.booleans()):
        per = draw(st.lists(columns, max_size=2, unique=True))
        rest = [c for c in ("label", "method", "domain", "contamination") if c not in per]
        suite["tables"] = [{"name": "t", "rows": rest[0], "group": rest[1] if len(rest) > 1 else None, "per": per}]
    return suite


def write(tmp_path: Path, suite: dict[str, Any]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def parse(tmp_path: Path, suite: Any) -> Suite | SuiteErrors:
    """Validate; a refusal is returned after checking each problem is one located line."""
    try:
        return load_suite(write(tmp_path, suite))
    except SuiteErrors as exc:
        assert exc.errors
        for e in exc.errors:
            assert e.line is not None and e.line >= 1, e.located()
            assert "\n" not in e.message, e.message
        return exc


# -- properties ---------------------------------------------------------------------------------


def assert_geometry_works(suite: Suite) -> None:
    """Push a clip of the suite's length through everything whose shapes validate checked."""
    from audiobench.contracts.frontend import Frontend
    from audiobench.methods.base import DomainModel, ExplainContext

    frontend = Frontend(suite.frontend)
    assert int((frontend.mel_fb.sum(0) <= 0).sum()) == 0  # no dead mel band
    n = int(round(suite.dataset.build().params.seconds * suite.frontend.sample_rate))
    wave = torch.randn(1, n)
    classifier = suite.model.build().build(["a", "b"], suite.frontend.n_mels, suite.frontend.sample_rate).eval()
    for spec in suite.domains:
        domain = spec.build()
        rep = domain.represent(frontend, wave)
        model = DomainModel(classifier, domain, frontend)
        assert torch.isfinite(model(rep.x)).all()
        for m in suite.methods:
            method = m.build()
            if hasattr(method, "block"):
                method.block(ExplainContext(model))
        if domain.listenable and suite.audio.n:
            assert domain.to_audio(frontend, torch.ones_like(rep.x), rep).shape == (1, n)


@FAST
@given(suite=suites())
def test_validated_suites_have_working_geometry(suite: dict[str, Any], tmp_path: Path) -> None:
    result = parse(tmp_path, suite)
    event("accepted" if isinstance(result, Suite) else "refused")
    if isinstance(result, Suite):
        assert_geometry_works(result)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _set(suite: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(suite)
    node = out
    for key in path[:-1]:
        if isinstance(node[key], str):  # a component written as a name
            node[key] = {"name": node[key]}
        node = node[key]
    node[path[-1]] = value
    return out


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@FAST
@given(data=st.data(), suite=suites())
def test_any_value_at_any_key_fails_cleanly(data: st.DataObject, suite: dict[str, Any], tmp_path: Path) -> None:
    """Replace the value at a random key path by an arbitrary value: a Suite or located errors, nothing else."""
    path = data.draw(st.sampled_from(_paths(suite)))
    mutated = _set(suite, path, data.draw(junk))
    result = parse(tmp_path, mutated)
    event("accepted" if isinstance(result, Suite) else "refused")
    if isinstance(result, Suite):
        assert_geometry_works(result)


# Changes that make any suite invalid: (key path, value, what the message says)
MUTATIONS = [
    (("audio",), 4, "audio must be a mapping"),
    (("audio",), 0, "audio must be a mapping"),
    (("frontend",), [512], "frontend must be a mapping"),
    (("model", "train"), "fast", "model.train must be a mapping"),
    (("seed",), True, "not a boolean"),
    (("limit",), 0, "greater than or equal to 1"),
    (("dataset", "name"), "esc5O", "unknown dataset"),
    (("model", "depth"), 0, "greater than or equal to 1"),
    (("dataset", "seconds"), 0.2, "greater than or equal to 0.5"),
    (("frontend", "n_fft"), 2 ** 16, "not more than n_fft/2"),
    (("frontend", "f_min"), 8000.0, "is not below f_max"),
    (("frontend", "n_mels"), 200, "mel filters empty"),
    (("methods", 0), {"name": "gradcam", "layer": "fc1"}, "is not a block"),
    (("methods", 0), {"name": "gradcam", "layer": 0}, "is not a block"),
    (("methods", 0), {"name": "l2i", "blocks": 9}, "blocks, but this cnn14 has"),
    (("methods", 0), {"name": "lmac", "blocks": [7]}, "out of range"),
    (("metrics", 0), "fidin", "unknown metric"),
    (("tables",), [{"name": "t", "per": ["nope"]}], "is not a column"),
    (("tables",), [{"name": "t", "rows": "domain", "group": "domain"}], "is already the table's"),
    (("domains", 0), "mell", "unknown domain"),
]


@FAST
@given(suite=suites(), mutation=st.sampled_from(MUTATIONS))
def test_mutated_suites_are_refused_at_a_line(suite: dict[str, Any], mutation: tuple, tmp_path: Path) -> None:
    path, value, fragment = mutation
    if path[0] == "frontend" and len(path) > 1:
        suite = {**suite, "frontend": {"n_fft": 512, "win_length": 512, "hop_length": 128, "n_mels": 32}}
    result = parse(tmp_path, _set(suite, path, value))
    assert isinstance(result, SuiteErrors)
    assert any(fragment in e.message for e in result.errors), [e.message for e in result.errors]


@RUNS
@given(suite=suites(tiny=True))
def test_valid_tiny_suites_run(suite: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    from audiobench.harness.runner import run_suite

    tmp = tmp_path_factory.mktemp("prop")
    parsed = parse(tmp, suite)
    assume(isinstance(parsed, Suite))
    try:
        result = run_suite(write(tmp, suite), tmp / "run", progress=False)
    except AudiobenchError as exc:  # a refusal must have come from validate
        pytest.fail(f"a validated suite failed to run: {exc}")
    assert (result.run_dir / "per_sample.parquet").exists()
    assert result.tables
