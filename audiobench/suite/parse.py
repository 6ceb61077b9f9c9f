"""Validation: parsed YAML -> a :class:`Suite`, every problem reported at its line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from audiobench.contracts.frontend import FrontendParams
from audiobench.contracts.registry import REGISTRIES, load_plugin_file
from audiobench.contracts.table_spec import TableSpec
from audiobench.contracts.targets import TargetParams
from audiobench.kernel.errors import AudiobenchError, SuiteError, did_you_mean
from audiobench.metrics.budget import BudgetParams
from audiobench.suite.crossref import (
    check_domain_models,
    check_known_answer,
    check_method_domains,
    check_method_layers,
    check_method_targets,
    check_sigmoid_only_targets,
    check_tables,
    check_target_classes,
    mapping_section,
    model_frontend,
    table_entry,
)
from audiobench.suite.geometry import check_geometry
from audiobench.suite.labels import method_labels
from audiobench.suite.lines import KeyPath, LocatedErrors, SuiteErrors, load_yaml
from audiobench.suite.overrides import SHORTHAND, apply_overrides
from audiobench.suite.paths import check_on_disk, resolve_paths
from audiobench.suite.sanity import SanityParams, roar_model, stage_model_problem
from audiobench.suite.schema import (
    DEFAULT_METRICS,
    NAME_PATTERN,
    TOP_LEVEL_KEYS,
    AudioParams,
    ComponentSpec,
    ExecutorParams,
    MaskParams,
    Suite,
    TrainParams,
    _Top,
)
from audiobench.suite.separation import check_separation, parse_train_section


def parse_targets(raw: Any, path: KeyPath, errors: LocatedErrors) -> TargetParams | None:
    """A ``targets:`` value (``decision``, ``all`` or a mapping) -> :class:`TargetParams`; None when absent or wrong."""
    try:
        if isinstance(raw, str):
            return TargetParams(select=raw)
        if isinstance(raw, dict):
            return TargetParams(**raw)
        if raw is not None:
            errors.add(path, "targets must be decision, all, or a mapping {select: ..., classes: [...]}")
    except ValidationError as exc:
        errors.add_validation(path, exc)
    return None


def _parse_entry(kind: str, raw: Any, path: KeyPath, errors: LocatedErrors) -> ComponentSpec | None:
    """``name``, ``name{k: v}`` or ``{name: ..., label: ..., k: v}`` -> a spec with validated params."""
    registry = REGISTRIES[kind]
    label = None
    targets = None
    in_domain = False
    if isinstance(raw, str):
        m = SHORTHAND.match(raw)
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
        if kind == "methods" and "targets" in params:  # this method's rows explain other targets than the suite's
            targets = parse_targets(params.pop("targets"), path + ("targets",), errors)
        in_domain = params.pop("in_domain", False) if kind == "contaminations" else False
        if not isinstance(in_domain, bool):
            errors.add(path + ("in_domain",), "in_domain must be true or false")
            in_domain = False
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
    spec = ComponentSpec(kind, name, params, label, errors.line(path), targets, in_domain)
    try:
        spec.build()
    except ValidationError as exc:
        errors.add_validation(path, exc)
        return None
    except AudiobenchError as exc:
        errors.add(path, str(exc))
        return None
    return spec


def _as_list(raw: Any, key: str, errors: LocatedErrors, default: list[Any]) -> list[Any]:
    if raw is None:
        return list(default)
    if not isinstance(raw, list):
        return [raw]
    if not raw:
        errors.add((key,), f"'{key}' must not be empty")
    return raw


def parse_suite(
    data: Any, lines: dict[KeyPath, int] | None = None, file: Path | None = None, overridden: set[KeyPath] | None = None,
    training: bool = False,
) -> Suite:
    """Validate a parsed suite; raises :class:`SuiteErrors` listing every problem found.

    ``training``: the suite is read by ``audiobench train``, which replaces a checkpoint's head, so
    its class count is not compared.

    ``overridden``: key paths set from the command line (``--set``); their relative paths are
    relative to the working directory instead of the suite file.
    """
    fname = str(file) if file else "<suite>"
    errors = LocatedErrors(fname, lines or {}, overridden)
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
        if not NAME_PATTERN.match(top.name):
            errors.add(("name",), "name may contain only letters, digits, '_', '.' and '-'")
    except ValidationError as exc:
        errors.add_validation((), exc)

    frontend = FrontendParams()
    frontend_ok = False  # geometry is checked only on a valid front end
    frontend_raw = mapping_section(data.get("frontend"), ("frontend",), errors)
    if frontend_raw is not None:
        try:
            frontend, frontend_ok = FrontendParams(**frontend_raw), True
        except ValidationError as exc:
            errors.add_validation(("frontend",), exc)

    dataset = None
    if "dataset" not in data:
        errors.add((), "required key 'dataset' is missing")
    else:
        dataset = _parse_entry("datasets", data["dataset"], ("dataset",), errors)

    model_raw = data.get("model", "cnn14")
    train = TrainParams()
    if isinstance(model_raw, dict) and "train" in model_raw:
        model_raw = dict(model_raw)
        train_raw = mapping_section(model_raw.pop("train"), ("model", "train"), errors)
        try:
            train = TrainParams(**(train_raw or {}))
        except ValidationError as exc:
            errors.add_validation(("model", "train"), exc)
    model = _parse_entry("models", model_raw, ("model",), errors)
    if model is not None:
        frontend, frontend_ok = model_frontend(model, frontend, frontend_raw, frontend_ok, errors)

    def entries(key: str, kind: str, default: list[Any]) -> list[ComponentSpec]:
        raw = _as_list(data.get(key), key, errors, default)
        specs = [_parse_entry(kind, r, (key, i) if key in data else (), errors) for i, r in enumerate(raw)]
        if key == "methods":
            method_paths.extend((key, i) for i, s in enumerate(specs) if s is not None)
        return [s for s in specs if s is not None]

    method_paths: list[KeyPath] = []

    domains = entries("domains", "domains", ["stft2mel", "mel"])
    contaminations = entries("contaminations", "contaminations", ["none"])
    if "methods" not in data:
        errors.add((), "required key 'methods' is missing")
    methods = entries("methods", "methods", [])
    method_labels(methods, errors, ("methods",))
    for key, specs in (("domains", domains), ("contaminations", contaminations)):
        ids = [s.build().key() for s in specs]  # an instance's key: stft2mel and stft2mel_log1p are two groups
        for i, ident in enumerate(ids):
            if ident in ids[:i]:
                errors.add((key, i), f"'{ident}' is listed twice" + (
                    f" (entry {ids.index(ident) + 1} has the same key: two domains in one suite differ in their parameters)"
                    if key == "domains" else ""))

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
    checked_tables: list[tuple[int, TableSpec]] = []
    for i, raw in enumerate(_as_list(data.get("tables"), "tables", errors, [{}])):
        entry = table_entry(raw, ("tables", i), errors)
        if entry is None:
            continue
        try:
            t = TableSpec(**entry)
        except ValidationError as exc:
            errors.add_validation(("tables", i), exc)
            continue
        for j, m in enumerate(t.metrics or ()):
            if m not in metrics:
                errors.add(("tables", i, "metrics", j), f"table metric '{m}' is not in the suite's metrics{did_you_mean(m, metrics)}")
        tables.append(t)
        checked_tables.append((i, t))
    check_tables(errors, checked_tables)

    audio = AudioParams()
    audio_raw = mapping_section(data.get("audio"), ("audio",), errors)
    try:
        audio = AudioParams(**(audio_raw or {}))
    except ValidationError as exc:
        errors.add_validation(("audio",), exc)

    masks = _section_params(data, "masks", MaskParams, errors)
    executor = _section_params(data, "executor", ExecutorParams, errors)
    budget = _section_params(data, "budget", BudgetParams, errors)
    if data.get("budget") is not None and not any(
            isinstance(m, str) and m in metric_registry and "budget" in metric_registry.get(m).needs for m in metrics):
        errors.add(("budget",), "budget: is set but no metric of the suite uses it (add ins_auc, del_auc, ins_del, "
                                "ad_at_10, ... to metrics, or remove it)")

    targets = parse_targets(data.get("targets"), ("targets",), errors) or TargetParams()
    augment = parse_train_section(data.get("train"), errors, _parse_entry)

    sanity = _parse_sanity(data, errors, domains, contaminations, methods, model,
                           [m for m in metrics if isinstance(m, str)])

    check_method_domains(errors, methods, domains)  # combinations: a method restricted to some domains
    check_domain_models(errors, model, domains)

    resolve_paths(base, errors.overridden, dataset=dataset, model=model, contaminations=contaminations, methods=methods,
                  **{"train.augment": augment})
    check_on_disk(errors, dataset, model, contaminations, frontend.n_mels, training, augment)
    check_target_classes(errors, dataset, targets, methods)
    check_sigmoid_only_targets(errors, model, targets, methods)
    check_separation(errors, model, train, augment, contaminations, methods, method_paths, training,
                     augment_given=bool(isinstance(data.get("train"), dict) and data["train"].get("augment")))
    check_geometry(errors, frontend if frontend_ok else None, dataset, model, domains, audio, methods)
    check_method_layers(errors, model, methods, method_paths)
    check_method_targets(errors, model, targets, methods, method_paths)
    check_known_answer(errors, model, methods, method_paths, metrics)

    if errors.items:
        raise SuiteErrors(errors.items)
    assert top is not None and dataset is not None and model is not None
    return Suite(
        name=top.name, file=file, seed=top.seed, frontend=frontend, dataset=dataset, split=top.split,
        limit=top.limit, batch_size=top.batch_size, model=model, train=train, domains=domains,
        contaminations=contaminations, methods=methods, metrics=list(metrics), tables=tables,
        audio=audio, targets=targets, masks=masks, plugins=plugins, description=top.description,
        executor=executor, sanity=sanity, augment=augment, budget=budget,
    )


P = TypeVar("P", bound=BaseModel)


def _section_params(data: dict, key: str, cls: type[P], errors: LocatedErrors) -> P:
    """The top-level mapping ``key`` as ``cls`` (its defaults when absent or invalid; errors recorded at ``key``)."""
    raw = mapping_section(data.get(key), (key,), errors)
    if raw is not None:
        try:
            return cls(**raw)
        except ValidationError as exc:
            errors.add_validation((key,), exc)
    return cls()


def _parse_sanity(
    data: dict, errors: LocatedErrors, domains: list[ComponentSpec], contaminations: list[ComponentSpec],
    methods: list[ComponentSpec], model_spec: ComponentSpec | None = None, metric_names: list[str] | None = None,
) -> SanityParams | None:
    """The ``sanity:`` section, its domains, contaminations and method labels checked against the suite's."""
    raw = mapping_section(data.get("sanity"), ("sanity",), errors)
    if raw is None:
        return None
    try:
        sanity = SanityParams(**raw)
    except ValidationError as exc:
        errors.add_validation(("sanity",), exc)
        return None
    labels = [m.label for m in methods]
    keys = [c.build().key() for c in contaminations]
    for stage in ("randomisation", "roar", "meta_consistency"):
        params = getattr(sanity, stage)
        if params is None:
            continue
        domain_keys = [d.build().key() for d in domains]
        if params.domain is not None and params.domain not in domain_keys:
            errors.add(("sanity", stage, "domain"), f"domain '{params.domain}' is not one of the suite's domains "
                       f"({', '.join(domain_keys)})")
        cont = getattr(params, "contamination", "none")
        if cont not in keys:
            errors.add(("sanity", stage) + (("contamination",) if stage != "roar" else ()),
                       f"{stage} needs the condition '{cont}' among the suite's contaminations ({', '.join(keys)})")
        if (problem := stage_model_problem(stage, model_spec)) is not None:
            errors.add(("sanity", stage), problem)
            continue
        if stage == "roar" and params.model:
            try:
                roar_model(model_spec, params) if model_spec is not None else None
            except ValidationError as exc:
                errors.add_validation(("sanity", "roar", "model"), exc)
        for i, label in enumerate(params.methods or []):
            if label not in labels:
                errors.add(("sanity", stage, "methods", i),
                           f"'{label}' is not a method row of this suite{did_you_mean(label, labels)}")
    meta, metric_names = sanity.meta_consistency, metric_names or []
    if meta is not None:
        if meta.methods is None and len(labels) < 2:
            errors.add(("sanity", "meta_consistency"), "meta-consistency compares rankings of methods: the suite has one")
        if not meta.chosen_metrics(metric_names):
            errors.add(("sanity", "meta_consistency"), "no metric of the suite has a direction (better is higher or "
                       "lower) to meta-evaluate: add one (ai, ad, ff, ins_del, ...) to metrics")
        for i, name in enumerate(meta.metrics or []):
            if name not in metric_names:
                errors.add(("sanity", "meta_consistency", "metrics", i),
                           f"'{name}' is not a metric of this suite{did_you_mean(name, metric_names)}")
            elif name in REGISTRIES["metrics"] and REGISTRIES["metrics"].get(name).higher_is_better is None:
                errors.add(("sanity", "meta_consistency", "metrics", i),
                           f"'{name}' has no direction (better is neither higher nor lower): it cannot be meta-evaluated")
    return sanity


def load_suite(path: str | Path, overrides: Sequence[str] = (), training: bool = False) -> Suite:
    """Read and validate a suite file; ``overrides`` are ``KEY.SUB=VALUE`` settings (``--set``);
    ``training``: for ``audiobench train`` (see :func:`parse_suite`)."""
    path = Path(path)
    data, lines = load_yaml(path)
    data, touched = apply_overrides(data, overrides)
    return parse_suite(data, lines, path, touched, training)
