"""``audiobench list``: the registered components of a kind, plugins included (module ``listing``, not ``list``)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "list"
LIST_KINDS = ("methods", "metrics", "datasets", "contaminations", "domains", "models")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``list`` to the subcommands ``sub`` and return its parser."""
    ls = sub.add_parser(NAME, help="list registered components", description=(
        "Print one name per line with a one-line description, including plugins."))
    ls.add_argument("kind", choices=LIST_KINDS)
    ls.add_argument("-v", "--verbose", action="store_true", help="also each component's parameters (name = default: meaning) and each dataset's URL, citation and licence")
    ls.add_argument("--plugins", nargs="+", metavar="FILE", default=[], help=(
        "also what these plugin files register: a .py plugin file, or a suite whose plugins: list is read"))
    return ls


def describe(obj: Any) -> str:
    """A registered entry's one line: a component class's ``Component.description()``, a metric's
    ``description`` (metrics are registered as instances, every other kind as a class)."""
    return obj.description() if isinstance(obj, type) else obj.description


def parameters(obj: Any) -> list[str]:
    """``name = default: description`` of each parameter a component takes (``list --verbose``); a
    metric (an instance) takes none."""
    fields = obj.Params.model_fields if isinstance(obj, type) else {}
    out = []
    for name, info in fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        out.append(f"{name} = {default}" + (f": {info.description}" if info.description else ""))
    return out


def run(args: argparse.Namespace) -> int:
    """Print each registered component of ``args.kind`` (with ``--verbose``, its details and parameters)."""
    from audiobench.contracts.registry import REGISTRIES, load_plugin_file, plugin_files

    for path in plugin_files(args.plugins):
        load_plugin_file(path)
    for name, obj in REGISTRIES[args.kind].items():
        print(f"{name:<22} {describe(obj)}")
        if args.verbose and isinstance(obj, type):  # Component.details(); a metric has none
            for line in obj.details():
                print(f"{'':<22}   {line}")
        if args.verbose:
            for line in parameters(obj):
                print(f"{'':<22}   {line}")
    return 0
