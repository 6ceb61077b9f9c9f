"""Paths in a suite: relative paths made absolute, and what the run needs on disk checked at validate."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from audiobench.kernel.errors import SuiteError
from audiobench.suite.lines import KeyPath, LocatedErrors
from audiobench.suite.schema import ComponentSpec


def _is_path_field(annotation: Any) -> bool:
    if annotation is Path:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return Path in typing.get_args(annotation)
    return False


def resolve_paths(base: Path, overridden: set[KeyPath], **groups: Any) -> None:
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
                    prefix = tuple(key.split("."))  # "train.augment": the key path train -> augment
                    entry = (*prefix, i, name) if isinstance(specs, list) else (*prefix, name)
                    p = (Path.cwd() if entry in overridden else base) / p
                spec.params[name] = os.path.normpath(p.absolute())


def check_on_disk(errors: LocatedErrors, dataset: Any, model: Any, contaminations: list[ComponentSpec],
                   n_mels: int | None = None, training: bool = False, augment: list[ComponentSpec] = ()) -> None:
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
    for c in augment:
        problems = c.build().check(data)
        errors.items += [SuiteError(f"train.augment: {p}", errors.file, c.line) for p in problems]


def check_target_classes(errors: LocatedErrors, dataset: Any, targets: Any, methods: list[ComponentSpec]) -> None:
    """``targets.classes`` (the suite's, and each method's own) against the dataset's class names
    where they are known without decoding audio: an unknown name or an index out of range is
    reported at validate, before anything trains."""
    from audiobench.contracts.targets import class_indices
    from audiobench.kernel.errors import AudiobenchError

    if dataset is None:
        return
    try:
        names = dataset.build().known_class_names()
    except AudiobenchError:
        return
    if not names:
        return
    checks = [(("targets",), targets)] + [(("methods", i, "targets"), m.targets) for i, m in enumerate(methods)]
    for path, t in checks:
        if t is None or t.select != "classes":
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
    kind = getattr(model.build(), "output_kind", "softmax")
    if kind == "sigmoid":
        return
    checks = [(("targets",), targets)] + [(("methods", i, "targets"), m.targets) for i, m in enumerate(methods)]
    for path, t in checks:
        if t is None:
            continue
        # by value, not by what was written: a resolved suite (a run's manifest, re-read by score)
        # spells every default out
        defaults = type(t)()
        set_here = [k for k in ("top_k", "threshold") if getattr(t, k) != getattr(defaults, k)]
        if set_here:
            verb = "apply" if len(set_here) > 1 else "applies"
            errors.add(path, f"targets.{' and '.join(set_here)} {verb} to sigmoid (multi-label) models only; "
                       f"'{model.name}' is a {kind} model (to explain several classes per clip: select: all, "
                       "or select: classes)")
