"""Checks across keys of a suite: section types, method parameters against the model, table columns.

* A section that must be a mapping (``frontend``, ``audio``, ``masks``, ``model.train``) is one, or absent /
  null (the defaults); any other value, falsy ones included, is an error, never replaced.
* Method parameters that name classifier blocks (GradCAM's ``layer``, the ``blocks`` of L-MAC and
  L2I) are checked against the model's depth and block names, read from the model spec or its
  checkpoint (``ModelSpec.architecture``, ``ModelSpec.block_names``), through the method's
  ``Explainer.check_classifier(depth, model, names)`` hook; its own settings through ``check_params()``.
* A table's ``rows``, ``group`` and ``per`` name result columns, each at most once; table names
  are unique (their files would overwrite one another).
* ``targets`` (the suite's and each method's): named classes exist in the dataset, and the
  sigmoid-only settings (``top_k``, ``threshold``) are not set for another output kind.
"""

from __future__ import annotations

from typing import Any

from audiobench.contracts.frontend import FrontendParams
from audiobench.contracts.registry import METRICS
from audiobench.contracts.table_spec import TableSpec
from audiobench.contracts.targets import class_indices
from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.methods.blocks import layer_index
from audiobench.suite.lines import KeyPath, LocatedErrors
from audiobench.suite.schema import ComponentSpec

#: the result columns a table can be laid out by
TABLE_COLUMNS = ("dataset", "model", "domain", "contamination", "method", "row", "target")

#: an example of each mapping section, quoted in its error
SECTION_EXAMPLES = {
    ("frontend",): "frontend: {n_fft: 1024, n_mels: 80}",
    ("audio",): "audio: {n: 4}",
    ("masks",): "masks: {precision: float16}",
    ("executor",): "executor: {name: submitit, partition: gpu, gpus_per_task: 1}",
    ("model", "train"): "train: {epochs: 20}",
}


def mapping_section(raw: Any, path: KeyPath, errors: LocatedErrors) -> dict[str, Any] | None:
    """The mapping written at ``path``: ``{}`` when absent or null (every default), the mapping
    itself, or None after reporting any other value (``4``, ``0``, ``[4]``, ``"4"``) at its line."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    where = ".".join(map(str, path))
    example = SECTION_EXAMPLES.get(path)
    errors.add(path, f"{where} must be a mapping, not {type(raw).__name__} {raw!r}" + (f", e.g. {example}" if example else ""))
    return None


def model_blocks(model: ComponentSpec) -> tuple[int, str, list[str] | None] | None:
    """(depth, name, block names) of the model: its number of blocks, from its parameters or its
    checkpoint's shape (``ModelSpec.architecture``), and their names where the spec knows them
    (``ModelSpec.block_names``, else None); None when the model does not say its depth or its
    checkpoint cannot be read (the model's own check reports that)."""
    built = model.build()
    try:
        arch = built.architecture()
        if arch is None:
            return None
        return int(arch[1]), model.name, built.block_names()
    except AudiobenchError:
        return None


FIT_LOSSES = {"softmax": "softmax cross-entropy", "sigmoid": "binary cross-entropy"}  # what a trainable method's fit uses per kind


def check_method_layers(errors: LocatedErrors, model: ComponentSpec | None, methods: list[ComponentSpec],
                        paths: list[KeyPath]) -> None:
    """Report, at each method's parameter line, parameters naming blocks the model does not have.

    ``paths[i]`` is the key path of ``methods[i]``. Each method's ``check_params()`` (missing paths,
    bad settings) and, when the model says its depth, ``check_classifier(depth, model, names)`` return
    (parameter, problem) pairs; a problem is printed as ``methods.<i>.<parameter>: <problem>``.
    """
    if model is None:
        return
    kind = model.build().output_kind  # per instance (cnn14: output_kind)
    for spec, path in zip(methods, paths, strict=True):
        kinds = spec.cls().output_kinds
        if kinds is not None and kind not in kinds:
            errors.add(path, f"method '{spec.name}' explains {' or '.join(kinds)} models, but model '{model.name}' "
                             f"is {kind} (use a zero-shot model such as clap_synth)" if "similarity" in kinds else
                             f"method '{spec.name}' explains {' or '.join(kinds)} models, but model '{model.name}' is {kind}"
                             + (f" (its fit trains with {' or '.join(FIT_LOSSES.get(k, k) for k in kinds)})"
                                if spec.cls().trainable else ""))
    attention = model.build().has_attention
    for spec, path in zip(methods, paths, strict=True):
        if spec.cls().needs_attention and not attention:
            errors.add(path, f"method '{spec.name}' reads attention, but model '{model.name}' has no attention layers "
                             "(a transformer such as hf_audio)")
    blocks = model_blocks(model)
    for spec, path in zip(methods, paths, strict=True):
        built = spec.build()
        problems = list(built.check_params())  # the method's own paths and settings
        if blocks is not None:
            problems += built.check_classifier(*blocks)
            problems += silent_layer(built, model.build(), blocks)
        for param, problem in problems:
            errors.add(path + (param,), f"{'.'.join(map(str, path + (param,)))}: {problem}")


def silent_layer(method: Any, spec: Any, blocks: tuple[int, str, list[str] | None]) -> list[tuple[str, str]]:
    """("layer", why) when a CAM-style method's ``layer`` names a block the model's scores never reach
    (``ModelSpec.silent_blocks``: its maps would be zero); [] otherwise (module paths are checked at the run)."""
    layer = getattr(method.params, "layer", None)
    silent = spec.silent_blocks() if isinstance(layer, (str, int)) else {}
    try:
        index = layer_index(layer, *blocks) if silent else None
    except AudiobenchError:  # an unknown layer: check_classifier reports it
        index = None
    return [("layer", f"{layer!r} is {silent[index]}")] if index in silent else []


def table_entry(raw: Any, path: KeyPath, errors: LocatedErrors) -> dict[str, Any] | None:
    """A ``tables`` entry as keyword arguments of :class:`TableSpec`: a mapping, or a name (a
    string); None after reporting anything else."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        return {"name": raw}
    errors.add(path, f"{'.'.join(map(str, path))}: a table is a mapping such as {{name: main, per: [dataset]}} "
               f"or a name, not {type(raw).__name__} {raw!r}")
    return None


def check_tables(errors: LocatedErrors, tables: list[tuple[int, TableSpec]]) -> None:
    """Report unknown or repeated layout columns and repeated names of the tables (index, spec)."""
    names: dict[str, int] = {}
    for i, t in tables:
        used: dict[str, str] = {}
        layout: list[tuple[KeyPath, str, str]] = [(("tables", i, "rows"), "rows", t.rows)]
        if t.group is not None:
            layout.append((("tables", i, "group"), "group", t.group))
        layout += [(("tables", i, "per", j), f"per.{j}", c) for j, c in enumerate(t.per)]
        for path, key, column in layout:
            where = f"tables.{i}.{key}"
            if column not in TABLE_COLUMNS:
                hint = did_you_mean(column, TABLE_COLUMNS)
                if not hint.startswith(" (did you mean"):
                    hint = f" (one of {', '.join(TABLE_COLUMNS)})"
                errors.add(path, f"{where}: '{column}' is not a column{hint}")
            elif column in used:
                errors.add(path, f"{where}: column '{column}' is already the table's {used[column]}; "
                           f"rows, group and per must name different columns")
            else:
                used[column] = key
        if t.name in names:
            errors.add(("tables", i, "name"), f"tables.{i}.name: '{t.name}' is also the name of table {names[t.name]} "
                       f"(its files would be overwritten); give each table its own name")
        names.setdefault(t.name, i)


def _target_sections(targets: Any, methods: list[ComponentSpec]) -> list[tuple[KeyPath, Any]]:
    """(key path, TargetParams) of the suite's ``targets`` and of each method's own ``targets:``."""
    own = [(("methods", i, "targets"), m.targets) for i, m in enumerate(methods) if m.targets is not None]
    return [(("targets",), targets)] + own


def check_target_classes(errors: LocatedErrors, dataset: Any, targets: Any, methods: list[ComponentSpec]) -> None:
    """``targets.classes`` (the suite's, and each method's own) against the dataset's class names
    where they are known without decoding audio: an unknown name or an index out of range is
    reported at validate, before anything trains."""
    if dataset is None:
        return
    try:
        names = dataset.build().known_class_names()
    except AudiobenchError:
        return
    if not names:
        return
    for path, t in _target_sections(targets, methods):
        if t.select != "classes":
            continue
        for c in t.classes or []:
            try:
                class_indices([c], names)
            except AudiobenchError:
                what = f"{c} is out of range 0..{len(names) - 1}" if isinstance(c, int) else f"'{c}' is not a class"
                errors.add(path, f"targets.classes: {what} ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''})")


def check_sigmoid_only_targets(errors: LocatedErrors, model: Any, targets: Any, methods: list[ComponentSpec]) -> None:
    """``targets.top_k`` and ``targets.threshold`` act on sigmoid (multi-label) models only: set for a
    softmax or similarity model they would change nothing, so they are refused at their line."""
    if model is None:
        return
    kind = model.build().output_kind
    if kind == "sigmoid":
        return
    for path, t in _target_sections(targets, methods):
        # by value, not by what was written: a resolved suite (a run's manifest, re-read by score)
        # spells every default out
        defaults = type(t)()
        set_here = [k for k in ("top_k", "threshold") if getattr(t, k) != getattr(defaults, k)]
        if set_here:
            verb = "apply" if len(set_here) > 1 else "applies"
            errors.add(path, f"targets.{' and '.join(set_here)} {verb} to sigmoid (multi-label) models only; "
                       f"'{model.name}' is a {kind} model (to explain several classes per clip: select: all, "
                       "or select: classes)")


def check_method_targets(errors: LocatedErrors, model: ComponentSpec | None, targets: Any, methods: list[ComponentSpec],
                         paths: list[KeyPath]) -> None:
    """Report, at the method's parameter line, targets (the method's own ``targets:``, else the suite's) that the
    method cannot explain on this model's output kind (:meth:`Explainer.check_targets`, e.g. L-MAC's rank
    channels with ``select: all``)."""
    if model is None or targets is None:
        return
    kind = model.build().output_kind
    for spec, path in zip(methods, paths, strict=True):
        for param, problem in spec.build().check_targets(kind, spec.targets or targets):
            errors.add(path + (param,), f"{'.'.join(map(str, path + (param,)))}: {problem}")


def check_known_answer(errors: LocatedErrors, model: ComponentSpec | None, methods: list[ComponentSpec],
                       paths: list[KeyPath], metrics: list[Any]) -> None:
    """Report, at its line, each method (``needs_exact_attribution``) and metric (``needs`` ``exact``) that
    reads the model's exact attribution when the model does not know it (its spec's
    ``knows_exact_attribution``). ``paths[i]`` is the key path of ``methods[i]``."""
    if model is None or model.cls().knows_exact_attribution:
        return
    readers = [(path, "method", spec.name) for spec, path in zip(methods, paths, strict=True)
               if spec.cls().needs_exact_attribution]
    readers += [(("metrics", i), "metric", name) for i, name in enumerate(metrics)
                if isinstance(name, str) and name in METRICS and "exact" in METRICS.get(name).needs]
    for path, kind, name in readers:
        errors.add(path, f"{kind} '{name}' needs a model that knows its exact attribution (a hand-built one such as "
                         f"band_energy); model '{model.name}' does not")


def check_domain_models(errors: LocatedErrors, model: ComponentSpec | None, domains: list[ComponentSpec]) -> None:
    """A domain that cannot serve the suite's model (:meth:`Domain.model_problem`, e.g. ``mel{grid: db}``
    with ``band_energy``), reported at the domain's line."""
    if model is None:
        return
    for i, d in enumerate(domains):
        problem = d.build().model_problem(model.build())
        if problem:
            errors.add(("domains", i), problem)


def check_method_domains(errors: LocatedErrors, methods: list[ComponentSpec], domains: list[ComponentSpec]) -> None:
    """A method restricted to some domains (``Explainer.domains``) or refusing a domain instance with its
    parameters (:meth:`Explainer.domain_problem`, e.g. ``lmac_td`` on ``mel{grid: db}``), reported at the method."""
    for i, m in enumerate(methods):
        allowed = m.cls().domains
        for d in domains:
            if allowed is not None and d.name not in allowed:
                errors.add(("methods", i), f"method '{m.name}' does not support domain '{d.name}' (supports: {', '.join(allowed)})")
            elif (problem := m.build().domain_problem(d.build())) is not None:
                errors.add(("methods", i), f"method '{m.name}': {problem}")


def same_setting(a: Any, b: Any) -> bool:
    """Whether two settings are equal, numbers compared as numbers (YAML's 14000 is 14000.0)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def model_frontend(model: ComponentSpec, frontend: FrontendParams, raw: dict[str, Any] | None, ok: bool,
                   errors: LocatedErrors) -> tuple[FrontendParams, bool]:
    """The suite's front end checked against what the model reads (``ModelSpec.required_frontend``): a key
    the suite sets otherwise is an error at its ``frontend`` line; keys it leaves out take the model's.
    Returns the front end to use and whether it is valid (``ok`` as given when the model requires nothing)."""
    try:
        required = model.build().required_frontend()
    except Exception:  # noqa: BLE001  a spec that cannot be built is reported where it is parsed
        return frontend, ok
    if not required or (raw is not None and not ok):
        return frontend, ok
    given = raw or {}
    clash = False
    for key, want in required.items():
        if key in given and not same_setting(given[key], want):
            clash = True
            errors.add(("frontend", key), f"frontend.{key} is {given[key]!r}, but model '{model.name}' reads {want!r} "
                                          "(leave it out to take the model's)")
    if clash:
        return frontend, False
    return FrontendParams(**{**required, **given}), True

