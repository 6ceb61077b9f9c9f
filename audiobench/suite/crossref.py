"""Checks across keys of a suite: section types, method parameters against the model, table columns.

* A section that must be a mapping (``frontend``, ``audio``, ``masks``, ``model.train``) is one, or absent /
  null (the defaults); any other value, falsy ones included, is an error, never replaced.
* Method parameters that name classifier blocks (GradCAM's ``layer``, the ``blocks`` of L-MAC and
  L2I) are checked against the model's depth, read from the model spec or its checkpoint, through
  the method's ``check_classifier(depth, model)`` hook.
* A table's ``rows``, ``group`` and ``per`` name result columns, each at most once; table names
  are unique (their files would overwrite one another).
"""

from __future__ import annotations

from typing import Any

from audiobench.contracts.table_spec import TableSpec
from audiobench.kernel.errors import AudiobenchError, did_you_mean
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


def classifier_depth(model: ComponentSpec) -> tuple[int, str] | None:
    """(depth, name) of the model: its number of conv blocks, from its parameters or its
    checkpoint's shape; None when the model does not say or its checkpoint cannot be read (the
    model's own check reports that)."""
    built = model.build()
    if not hasattr(built, "architecture"):
        return None
    try:
        return int(built.architecture()[1]), model.name
    except AudiobenchError:
        return None


def check_method_layers(errors: LocatedErrors, model: ComponentSpec | None, methods: list[ComponentSpec],
                        paths: list[KeyPath]) -> None:
    """Report, at each method's parameter line, parameters naming blocks the model does not have.

    ``paths[i]`` is the key path of ``methods[i]``. Each method with a ``check_classifier(depth,
    model)`` hook (or a ``check_params()`` hook: missing paths, bad settings) returns (parameter,
    problem) pairs; a problem is printed as ``methods.<i>.<parameter>: <problem>``.
    """
    if model is None:
        return
    kind = getattr(model.cls(), "output_kind", "softmax")
    for spec, path in zip(methods, paths, strict=True):
        kinds = getattr(spec.cls(), "output_kinds", None)
        if kinds is not None and kind not in kinds:
            errors.add(path, f"method '{spec.name}' explains {' or '.join(kinds)} models, but model '{model.name}' "
                             f"is {kind} (use a zero-shot model such as clap_synth)" if "similarity" in kinds else
                             f"method '{spec.name}' explains {' or '.join(kinds)} models, but model '{model.name}' is {kind}")
    arch = classifier_depth(model)
    for spec, path in zip(methods, paths, strict=True):
        built = spec.build()
        own = getattr(built, "check_params", None)  # the method's own paths and settings
        problems = list(own()) if own is not None else []
        layers = getattr(built, "check_classifier", None)
        if layers is not None and arch is not None:
            problems += layers(*arch)
        for param, problem in problems:
            errors.add(path + (param,), f"{'.'.join(map(str, path + (param,)))}: {problem}")


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
