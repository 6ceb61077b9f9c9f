"""Suite YAML with line numbers: key path -> line, and errors located as ``file:line: message``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from audiobench.kernel.errors import AudiobenchError, SuiteError

KeyPath = tuple[Any, ...]


def _line_map(node: yaml.Node, path: KeyPath = ()) -> Iterator[tuple[KeyPath, int]]:
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


class LocatedErrors:
    """Problems found in one suite, each located at the line of its key path."""

    def __init__(self, file: str, lines: dict[KeyPath, int], overridden: set[KeyPath] | None = None):
        self.file, self.lines, self.items = file, lines, []
        self.overridden = overridden or set()

    def line(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def add(self, path: KeyPath, message: str) -> None:
        if any(path[: len(o)] == o for o in self.overridden):
            message += " (set with --set)"
        self.items.append(SuiteError(message, self.file, self.line(path)))

    def add_validation(self, path: KeyPath, exc: ValidationError) -> None:
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if x != "__root__")
            where = ".".join(str(x) for x in path + loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            self.add(path + loc, f"{where}: {msg}")


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
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


class SuiteErrors(AudiobenchError):
    """Every problem found in a suite, one ``file:line: message`` per line."""

    def __init__(self, errors: list[SuiteError]):
        self.errors = errors
        super().__init__("\n".join(e.located() for e in errors))
