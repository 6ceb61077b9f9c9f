"""``--set KEY.SUB=VALUE`` overrides applied to a parsed suite before validation."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.suite.lines import KeyPath
from audiobench.suite.schema import TOP_LEVEL_KEYS

SHORTHAND = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(\{.*\})?\s*$", re.S)


def apply_overrides(data: Any, overrides: Sequence[str]) -> tuple[Any, set[KeyPath]]:
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
    touched: set[KeyPath] = set()
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
                m = SHORTHAND.match(child)
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
