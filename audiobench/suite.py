"""Suite files: YAML -> a validated :class:`Suite`, every error located as ``file:line: message``.

The format is documented key by key in ``suites/README.md``; ``suites/quickstart.yaml`` is a
commented example.
"""

from __future__ import annotations

import copy
import os
import re
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audiobench.component import Component, Params
from audiobench.errors import AudiobenchError, SuiteError, did_you_mean
from audiobench.frontend import FrontendParams
from audiobench.registry import REGISTRIES, load_plugin_file
from audiobench.tables import TableSpec

Path_ = tuple[Any, ...]

DEFAULT_METRICS = ("ai", "ad", "ag", "ff", "fid_in", "sps", "comp")
_SHORTHAND = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(\{.*\})?\s*$", re.S)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

TOP_LEVEL_KEYS = {
    "name": "suite name; the default output is results/<name>/",
    "description": "free text",
    "seed": "seed of every random draw (contaminations, noise, training)",
    "frontend": "STFT / mel settings of the classifier's input",
    "dataset": "the dataset: a name or {name: ..., params}",
    "split": "the split explanations are evaluated on (test)",
    "limit": "evaluate a class-stratified, seeded sample of N clips of the split",
    "batch_size": "clips per explanation batch",
    "model": "the classifier: {name: cnn14, width, depth, train: {...}}",
    "domains": "masking domains: stft2mel, mel",
    "contaminations": "conditions: none, {name: mixture, snr_db: 3}, ...",
    "methods": "explanation methods, one table row each",
    "metrics": "metric names, in column order",
    "tables": "table layouts: {name, rows, group, per, metrics}",
    "audio": "{n: N}: listenable interpretations written per stft2mel cell",
    "plugins": "local Python files registering methods/metrics/datasets",
}


class TrainParams(Params):
    """How the harness trains the classifier when the suite does not name a checkpoint."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    mixture_prob: float = Field(0.0, ge=0, le=1, description="share of training clips mixed with another class")
    mask_augment: float = Field(
        0.0, ge=0, lt=1, description="SpecAugment-style: drop up to this share of frames and mel bands per clip"
    )
    mixture_snr_db: tuple[float, float] = Field((0.0, 10.0), description="SNR range of those mixtures (uniform)")


class AudioParams(Params):
    n: int = Field(4, ge=0, description="clips per stft2mel cell written as listenable WAV")


class _Top(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    seed: int = 0
    split: str = Field("test", pattern="^(train|valid|test)$")
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)


@dataclass
class ComponentSpec:
    """One entry of a suite list: a registered name, its parameters and its row label."""

    kind: str
    name: str
    params: dict[str, Any]
    label: str | None = None
    line: int | None = None

    def cls(self) -> type[Component]:
        return REGISTRIES[self.kind].get(self.name)

    def build(self) -> Any:
        return self.cls()(self.params)

    def resolved(self) -> dict[str, Any]:
        """Name, label and every parameter with its default filled in."""
        out: dict[str, Any] = {"name": self.name}
        if self.label:
            out["label"] = self.label
        obj = self.build()
        if isinstance(getattr(obj, "params", None), BaseModel):
            out["params"] = obj.params.model_dump(mode="json")
        return out


@dataclass
class Suite:
    """A validated suite."""

    name: str
    file: Path | None
    seed: int
    frontend: FrontendParams
    dataset: ComponentSpec
    split: str
    limit: int | None
    batch_size: int
    model: ComponentSpec
    train: TrainParams
    domains: list[ComponentSpec]
    contaminations: list[ComponentSpec]
    methods: list[ComponentSpec]
    metrics: list[str]
    tables: list[TableSpec]
    audio: AudioParams
    plugins: list[Path] = field(default_factory=list)
    description: str = ""

    def resolved(self) -> dict[str, Any]:
        """The suite with every default filled in: what the manifest records and cells hash."""
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "frontend": self.frontend.model_dump(mode="json"),
            "dataset": self.dataset.resolved(),
            "split": self.split,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "model": {**self.model.resolved(), "train": self.train.model_dump(mode="json")},
            "domains": [d.resolved() for d in self.domains],
            "contaminations": [c.resolved() for c in self.contaminations],
            "methods": [m.resolved() for m in self.methods],
            "metrics": list(self.metrics),
            "tables": [t.model_dump(mode="json") for t in self.tables],
            "audio": self.audio.model_dump(mode="json"),
            "plugins": [str(p) for p in self.plugins],
        }


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


def _line_map(node: yaml.Node, path: Path_ = ()) -> Iterator[tuple[Path_, int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            yield sub, key.start_mark.line + 1
            for p, line in _line_map(value, sub):
                if p != sub:
                    yield p, line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _line_map(item, path + (i,))


class _Errors:
    def __init__(self, file: str, lines: dict[Path_, int], overridden: set[Path_] | None = None):
        self.file, self.lines, self.items = file, lines, []
        self.overridden = overridden or set()

    def line(self, path: Path_) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def add(self, path: Path_, message: str) -> None:
        if any(path[: len(o)] == o for o in self.overridden):
            message += " (set with --set)"
        self.items.append(SuiteError(message, self.file, self.line(path)))

    def add_validation(self, path: Path_, exc: ValidationError) -> None:
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if x != "__root__")
            where = ".".join(str(x) for x in path + loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            self.add(path + loc, f"{where}: {msg}")


def load_yaml(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse a YAML file and map each key path to its line (1-based)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AudiobenchError(f"suite file not found: {path}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"invalid YAML: {problem}", str(path), mark.line + 1 if mark else None) from None
    lines = dict(_line_map(node)) if node is not None else {}
    return data, lines


# ---------------------------------------------------------------------------------------------
# validation


def _parse_entry(kind: str, raw: Any, path: Path_, errors: _Errors) -> ComponentSpec | None:
    """``name``, ``name{k: v}`` or ``{name: ..., label: ..., k: v}`` -> a spec with validated params."""
    registry = REGISTRIES[kind]
    label = None
    if isinstance(raw, str):
        m = _SHORTHAND.match(raw)
        if not m:
            errors.add(path, f"cannot read {kind[:-1]} entry {raw!r}: expected a name, name{{key: value}} or a mapping")
            return None
        name, params = m.group(1), {}
        if m.group(2):
            try:
                params = yaml.safe_load(m.group(2)) or {}
            except yaml.YAMLError:
                errors.add(path, f"cannot read the parameters in {raw!r}")
                return None
    elif isinstance(raw, dict) and len(raw) == 1 and "{" in str(next(iter(raw))):
        errors.add(path, f"quote the shorthand entry, e.g. - \"{next(iter(raw))}: ...\"")
        return None
    elif isinstance(raw, dict):
        params = dict(raw)
        name = params.pop("name", None)
        label = params.pop("label", None)
        if not isinstance(name, str):
            errors.add(path, f"{kind[:-1]} entry needs a 'name' key")
            return None
        if label is not None and not isinstance(label, str):
            errors.add(path + ("label",), "label must be a string")
            label = None
    else:
        errors.add(path, f"{kind[:-1]} entry must be a name or a mapping, not {type(raw).__name__}")
        return None
    if name not in registry:
        errors.add(path, f"unknown {kind[:-1]} '{name}'{did_you_mean(name, registry.names())}")
        return None
    spec = ComponentSpec(kind, name, params, label, errors.line(path))
    try:
        spec.build()
    except ValidationError as exc:
        errors.add_validation(path, exc)
        return None
    except AudiobenchError as exc:
        errors.add(path, str(exc))
        return None
    return spec


def _as_list(raw: Any, key: str, errors: _Errors, default: list[Any]) -> list[Any]:
    if raw is None:
        return list(default)
    if not isinstance(raw, list):
        return [raw]
    if not raw:
        errors.add((key,), f"'{key}' must not be empty")
    return raw


def _default_label(spec: ComponentSpec) -> str:
    obj = spec.build()
    return obj.row_label() if hasattr(obj, "row_label") else obj.label()


def _method_labels(methods: list[ComponentSpec], errors: _Errors, path: Path_) -> None:
    """Fill default row labels; rows sharing a display name get their parameters appended."""
    defaults = [m.label or _default_label(m) for m in methods]
    for i, m in enumerate(methods):
        if m.label:
            continue
        clash = sum(d == defaults[i] for d in defaults) > 1
        if clash and m.params:
            args = ", ".join(f"{k}={v}" for k, v in m.params.items())
            m.label = f"{defaults[i]} ({args})"
        else:
            m.label = defaults[i]
    seen: dict[str, int] = {}
    for i, m in enumerate(methods):
        if m.label in seen:
            errors.add(path + (i,), f"duplicate row label '{m.label}' (also entry {seen[m.label] + 1}); set 'label:'")
        seen[m.label] = i


def parse_suite(
    data: Any, lines: dict[Path_, int] | None = None, file: Path | None = None, overridden: set[Path_] | None = None,
    training: bool = False,
) -> Suite:
    """Validate a parsed suite; raises :class:`SuiteErrors` listing every problem found.

    ``overridden``: key paths set from the command line (``--set``); their relative paths are
    relative to the working directory instead of the suite file. ``training``: the suite is read by
    ``audiobench train``, which replaces a checkpoint's head, so its class count is not compared.
    """
    fname = str(file) if file else "<suite>"
    errors = _Errors(fname, lines or {}, overridden)
    if not isinstance(data, dict):
        raise SuiteErrors([SuiteError("a suite must be a mapping of keys", fname, 1)])
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            errors.add((key,), f"unknown key '{key}'{did_you_mean(str(key), TOP_LEVEL_KEYS)}")
    base = file.parent if file else Path.cwd()

    plugins: list[Path] = []
    for i, p in enumerate(_as_list(data.get("plugins"), "plugins", errors, [])):
        path = (base / str(p)).resolve()
        try:
            load_plugin_file(path)
            plugins.append(path)
        except AudiobenchError as exc:
            errors.add(("plugins", i), str(exc))

    top_raw = {k: data[k] for k in ("name", "description", "seed", "split", "limit", "batch_size") if k in data}
    top = None
    try:
        top = _Top(**top_raw)
        if not _NAME.match(top.name):
            errors.add(("name",), "name may contain only letters, digits, '_', '.' and '-'")
    except ValidationError as exc:
        errors.add_validation((), exc)

    frontend = FrontendParams()
    try:
        frontend = FrontendParams(**(data.get("frontend") or {}))
    except ValidationError as exc:
        errors.add_validation(("frontend",), exc)
    except TypeError:
        errors.add(("frontend",), "frontend must be a mapping")

    dataset = None
    if "dataset" not in data:
        errors.add((), "required key 'dataset' is missing")
    else:
        dataset = _parse_entry("datasets", data["dataset"], ("dataset",), errors)

    model_raw = data.get("model", "cnn14")
    train = TrainParams()
    if isinstance(model_raw, dict) and "train" in model_raw:
        model_raw = dict(model_raw)
        try:
            train = TrainParams(**(model_raw.pop("train") or {}))
        except ValidationError as exc:
            errors.add_validation(("model", "train"), exc)
        except TypeError:
            errors.add(("model", "train"), "train must be a mapping")
    model = _parse_entry("models", model_raw, ("model",), errors)

    def entries(key: str, kind: str, default: list[Any]) -> list[ComponentSpec]:
        raw = _as_list(data.get(key), key, errors, default)
        specs = [_parse_entry(kind, r, (key, i) if key in data else (), errors) for i, r in enumerate(raw)]
        return [s for s in specs if s is not None]

    domains = entries("domains", "domains", ["stft2mel", "mel"])
    contaminations = entries("contaminations", "contaminations", ["none"])
    if "methods" not in data:
        errors.add((), "required key 'methods' is missing")
    methods = entries("methods", "methods", [])
    _method_labels(methods, errors, ("methods",))
    for key, specs in (("domains", domains), ("contaminations", contaminations)):
        ids = [s.build().key() if key == "contaminations" else s.name for s in specs]
        for i, ident in enumerate(ids):
            if ident in ids[:i]:
                errors.add((key, i), f"'{ident}' is listed twice")

    metrics = _as_list(data.get("metrics"), "metrics", errors, list(DEFAULT_METRICS))
    metric_registry = REGISTRIES["metrics"]
    for i, name in enumerate(metrics):
        if not isinstance(name, str):
            errors.add(("metrics", i), "metric entries are names")
        elif name not in metric_registry:
            errors.add(("metrics", i), f"unknown metric '{name}'{did_you_mean(name, metric_registry.names())}")
        elif name in metrics[:i]:
            errors.add(("metrics", i), f"metric '{name}' is listed twice")

    tables: list[TableSpec] = []
    for i, raw in enumerate(_as_list(data.get("tables"), "tables", errors, [{}])):
        try:
            t = TableSpec(**raw) if isinstance(raw, dict) else TableSpec(name=str(raw))
        except ValidationError as exc:
            errors.add_validation(("tables", i), exc)
            continue
        for j, m in enumerate(t.metrics or ()):
            if m not in metrics:
                errors.add(("tables", i, "metrics", j), f"table metric '{m}' is not in the suite's metrics{did_you_mean(m, metrics)}")
        columns = ("dataset", "model", "domain", "contamination", "method", "label")
        for key in ("rows", "group"):
            value = getattr(t, key)
            if value is not None and value not in columns:
                errors.add(("tables", i, key), f"{key} must be one of {', '.join(columns)}")
        tables.append(t)

    audio = AudioParams()
    try:
        audio = AudioParams(**(data.get("audio") or {}))
    except ValidationError as exc:
        errors.add_validation(("audio",), exc)

    # combinations: a method restricted to some domains
    for i, m in enumerate(methods):
        allowed = m.cls().domains
        for d in domains:
            if allowed is not None and d.name not in allowed:
                errors.add(("methods", i), f"method '{m.name}' does not support domain '{d.name}' (supports: {', '.join(allowed)})")

    _resolve_paths(base, errors.overridden, dataset=dataset, model=model, contaminations=contaminations, methods=methods)
    _check_on_disk(errors, dataset, model, contaminations, frontend.n_mels, training)

    if errors.items:
        raise SuiteErrors(errors.items)
    assert top is not None and dataset is not None and model is not None
    return Suite(
        name=top.name, file=file, seed=top.seed, frontend=frontend, dataset=dataset, split=top.split,
        limit=top.limit, batch_size=top.batch_size, model=model, train=train, domains=domains,
        contaminations=contaminations, methods=methods, metrics=list(metrics), tables=tables,
        audio=audio, plugins=plugins, description=top.description,
    )


class SuiteErrors(AudiobenchError):
    """Every problem found in a suite, one ``file:line: message`` per line."""

    def __init__(self, errors: list[SuiteError]):
        self.errors = errors
        super().__init__("\n".join(e.located() for e in errors))


def load_suite(path: str | Path, overrides: Sequence[str] = (), training: bool = False) -> Suite:
    """Read and validate a suite file; ``overrides`` are ``KEY.SUB=VALUE`` settings (``--set``);
    ``training``: for ``audiobench train`` (see :func:`parse_suite`)."""
    path = Path(path)
    data, lines = load_yaml(path)
    data, touched = apply_overrides(data, overrides)
    return parse_suite(data, lines, path, touched, training)


# ---------------------------------------------------------------------------------------------
# command-line overrides, paths, data on disk


def apply_overrides(data: Any, overrides: Sequence[str]) -> tuple[Any, set[Path_]]:
    """Set ``dotted.key=value`` pairs in the parsed YAML (values read as YAML) before validation.

    Keys walk mappings by name and lists by index (``methods.1.n_steps=20``); a component written
    as a name (``dataset: esc50``) becomes ``{name: esc50}`` so its parameters can be set. A
    top-level key the format does not have, a list index out of range, or a key under a plain
    value is an error. Returns the new data and the key paths that were set.
    """
    if not overrides:
        return data, set()
    if not isinstance(data, dict):
        raise AudiobenchError("--set needs a suite that is a mapping of keys")
    data = copy.deepcopy(data)
    touched: set[Path_] = set()
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = [p.strip() for p in key.strip().split(".")] if key.strip() else []
        if not sep or not parts or not all(parts):
            raise AudiobenchError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dataset.root=/data/ESC-50")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise AudiobenchError(f"--set {key}: cannot read {raw!r} as a YAML value (quote it)") from None
        if parts[0] not in TOP_LEVEL_KEYS:
            raise AudiobenchError(f"--set {key}: unknown key '{parts[0]}'{did_you_mean(parts[0], TOP_LEVEL_KEYS)}")
        node: Any = data
        path: list[Any] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(map(str, path)) or "the suite"
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise AudiobenchError(f"--set {key}: '{where}' is a list of {len(node)}; '{part}' is not an index in it")
                idx: Any = int(part) % len(node)
            elif isinstance(node, dict):
                idx = part
            else:
                raise AudiobenchError(f"--set {key}: '{where}' is a value ({node!r}), not a mapping")
            path.append(idx)
            if last:
                node[idx] = value
                break
            child = node[idx] if isinstance(node, list) or idx in node else None
            if isinstance(child, str) and _is_component(path):  # a name (or shorthand): make it a mapping
                m = _SHORTHAND.match(child)
                try:
                    params = yaml.safe_load(m.group(2)) if m and m.group(2) else {}
                except yaml.YAMLError:
                    params = None
                if not isinstance(params, dict):
                    raise AudiobenchError(f"--set {key}: cannot read the entry {child!r} at '{'.'.join(map(str, path))}'")
                child = {"name": m.group(1) if m else child, **params}
            elif child is None:
                child = {}
            node[idx] = child
            node = child
        touched.add(tuple(path))
    return data, touched


def _is_component(path: list[Any]) -> bool:
    """Whether the key path names a component entry (``dataset``, ``model``, ``methods.2``, ...)."""
    return tuple(path) in (("dataset",), ("model",)) or (
        len(path) == 2 and path[0] in ("domains", "contaminations", "methods") and isinstance(path[1], int)
    )


def _is_path_field(annotation: Any) -> bool:
    if annotation is Path:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return Path in typing.get_args(annotation)
    return False


def _resolve_paths(base: Path, overridden: set[Path_], **groups: Any) -> None:
    """Make relative path parameters absolute: relative to the suite file (to the working directory if set by --set)."""
    for key, specs in groups.items():
        for i, spec in enumerate(specs if isinstance(specs, list) else [specs]):
            if spec is None:
                continue
            fields = getattr(spec.cls(), "Params", None)
            for name, info in (getattr(fields, "model_fields", None) or {}).items():
                value = spec.params.get(name)
                if not _is_path_field(info.annotation) or not isinstance(value, str) or not value:
                    continue
                p = Path(value).expanduser()
                if not p.is_absolute():
                    entry = (key, i, name) if isinstance(specs, list) else (key, name)
                    p = (Path.cwd() if entry in overridden else base) / p
                spec.params[name] = os.path.normpath(p.absolute())


def _check_on_disk(errors: _Errors, dataset: Any, model: Any, contaminations: list[ComponentSpec],
                   n_mels: int | None = None, training: bool = False) -> None:
    """Paths the run needs (dataset files, checkpoint, noise folders): each problem at its entry's line."""
    data = None
    if dataset is not None:
        data = dataset.build()
        problems = data.check() if hasattr(data, "check") else []
        errors.items += [SuiteError(p, errors.file, dataset.line) for p in problems]
        if problems:
            data = None
    if model is not None:
        built = model.build()
        n_classes = data.class_count() if data is not None and hasattr(data, "class_count") and not training else None
        found = built.check(n_mels=n_mels, n_classes=n_classes) if hasattr(built, "check") else []
        errors.items += [SuiteError(p, errors.file, model.line) for p in found]
    for c in contaminations:
        built = c.build()
        problems = built.check(data) if hasattr(built, "check") else []
        errors.items += [SuiteError(f"contaminations: {p}", errors.file, c.line) for p in problems]
