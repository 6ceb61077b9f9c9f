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
            for name, info in spec.cls().Params.model_fields.items():
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
        problems = data.check()
        errors.items += [SuiteError(p, errors.file, dataset.line) for p in problems]
        if problems:
            data = None
    if model is not None:
        built = model.build()
        n_classes = data.class_count() if data is not None and not training else None
        found = built.check(n_mels=n_mels, n_classes=n_classes)
        if built.detector and n_classes not in (None, 2):
            found.append(f"model {model.name} is a detector (classes absent, present), but the dataset has "
                         f"{n_classes} classes")
        errors.items += [SuiteError(p, errors.file, model.line) for p in found]
    for c in contaminations:
        built = c.build()
        problems = built.check(data)
        errors.items += [SuiteError(f"contaminations: {p}", errors.file, c.line) for p in problems]
    for c in augment:
        problems = c.build().check(data)
        errors.items += [SuiteError(f"train.augment: {p}", errors.file, c.line) for p in problems]

