"""Registries of named components: methods, metrics, datasets, contaminations, domains, models.

Every component, built-in or plugin, is declared the same way: an entry point in the group
``audiobench.<kind>`` of an installed package (audiobench's own are in its ``pyproject.toml``),
or a decorator (``METHODS.register``, ``register_metric``...) in a plugin file a suite names under
``plugins:``. Entry points are read lazily, so ``audiobench list`` and suite validation never
import torch-heavy modules they do not need. The registered name is the component's name (the
registry sets ``cls.name``); a name registered twice, or an object of the wrong kind, is a
one-line error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from audiobench.kernel.errors import AudiobenchError, did_you_mean

T = TypeVar("T")

BUILTIN_DISTRIBUTION = "audiobench"

# what each kind registers: (module, class); metrics are instances, the others subclasses
_BASES = {
    "methods": ("audiobench.methods.base", "Explainer"),
    "metrics": ("audiobench.metrics.base", "Metric"),
    "datasets": ("audiobench.data.base", "Dataset"),
    "contaminations": ("audiobench.data.contaminations", "Contamination"),
    "domains": ("audiobench.contracts.domains", "Domain"),
    "models": ("audiobench.models.base", "ModelSpec"),
}


class Registry(Generic[T]):
    """Name -> component, with lazy entries and a clear error on duplicates and unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        self._entry_points_scanned = False

    # -- registration -------------------------------------------------
    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (and make ``name`` its name).

        Raises :class:`AudiobenchError` (one line) for an object of the wrong kind, a class that
        declares another name, or a second, different object under one name.
        """
        self._check_kind(name, obj)
        existing = self._items.get(name)
        if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
            raise AudiobenchError(
                f"duplicate {self.kind[:-1]} name '{name}': {_qualname(existing)} and {_qualname(obj)}"
            )
        self._scan_entry_points()
        ep = self._entry_points.get(name)
        if existing is None and ep is not None and not self._loading_entry_point(name) and ep.module != _module(obj):
            raise AudiobenchError(
                f"duplicate {self.kind[:-1]} name '{name}': already provided by entry point {ep.value}"
            )
        if isinstance(obj, type):
            declared = obj.__dict__.get("name")
            if declared and declared != name:
                raise AudiobenchError(
                    f"{_qualname(obj)} declares name '{declared}' but is registered as '{name}': "
                    "drop the class attribute, the registered name is the name"
                )
            obj.name = name  # type: ignore[attr-defined]
        self._items[name] = obj
        return obj

    def _check_kind(self, name: str, obj: Any) -> None:
        module, cls_name = _BASES[self.kind]
        base = getattr(importlib.import_module(module), cls_name)
        ok = isinstance(obj, base) if self.kind == "metrics" else isinstance(obj, type) and issubclass(obj, base)
        if not ok:
            what = f"a {cls_name} (register_metric makes one)" if self.kind == "metrics" else f"a subclass of {module}.{cls_name}"
            raise AudiobenchError(f"cannot register {_qualname(obj)} as {self.kind[:-1]} '{name}': expected {what}")

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    # -- lookup -------------------------------------------------------
    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(set(self._items) | set(self._entry_points))

    def builtin_names(self) -> list[str]:
        """Names shipped with audiobench (its own entry points), not plugins."""
        self._scan_entry_points()
        return sorted(n for n, ep in self._entry_points.items() if _distribution(ep) == BUILTIN_DISTRIBUTION)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        self._scan_entry_points()
        if name in self._entry_points:
            return self._load_entry_point(name)
        raise AudiobenchError(f"unknown {self.kind[:-1]} '{name}'{did_you_mean(name, self.names())}")

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    # -- entry points -------------------------------------------------
    _loading: set[str] = set()

    def _loading_entry_point(self, name: str) -> bool:
        return (self.kind, name) in Registry._loading

    def _scan_entry_points(self) -> None:
        if self._entry_points_scanned:
            return
        self._entry_points_scanned = True
        for ep in importlib.metadata.entry_points(group=f"audiobench.{self.kind}"):
            if ep.name in self._entry_points or (ep.name in self._items and _module(self._items[ep.name]) != ep.module):
                raise AudiobenchError(
                    f"duplicate {self.kind[:-1]} name '{ep.name}': entry point {ep.value} "
                    "clashes with one already registered"
                )
            self._entry_points[ep.name] = ep

    def _load_entry_point(self, name: str) -> T:
        ep = self._entry_points[name]
        Registry._loading.add((self.kind, name))
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin is the user's error, report it on one line
            raise AudiobenchError(f"plugin entry point {ep.value} for '{name}' failed to load: {exc}") from exc
        finally:
            Registry._loading.discard((self.kind, name))
        if name not in self._items:  # the entry point names the object itself
            self.add(name, obj)
        return self._items[name]


def _module(obj: Any) -> str | None:
    """The module that defined ``obj`` (instances such as metrics say so through ``defined_in``)."""
    return getattr(obj, "defined_in", None) or getattr(obj, "__module__", None)


def _distribution(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _qualname(obj: Any) -> str:
    name = getattr(obj, "qualname", None) or getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{_module(obj) or '?'}.{name}"


METHODS: Registry = Registry("methods")
METRICS: Registry = Registry("metrics")
DATASETS: Registry = Registry("datasets")
CONTAMINATIONS: Registry = Registry("contaminations")
DOMAINS: Registry = Registry("domains")
MODELS: Registry = Registry("models")

REGISTRIES: dict[str, Registry] = {
    "methods": METHODS,
    "metrics": METRICS,
    "datasets": DATASETS,
    "contaminations": CONTAMINATIONS,
    "domains": DOMAINS,
    "models": MODELS,
}

def plugin_files(paths: Sequence[str | Path]) -> list[Path]:
    """The plugin files behind ``paths``: a ``.py`` file is one; a suite (``.yaml``/``.yml``) names its
    own under ``plugins:``, relative to the suite's folder. :class:`AudiobenchError` for a missing file or
    a suite that is not YAML."""
    import yaml

    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise AudiobenchError(f"--plugins: {path} not found")
        if path.suffix.lower() not in (".yaml", ".yml"):
            out.append(path)
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise AudiobenchError(f"--plugins: {path} is not readable YAML ({str(exc).splitlines()[0]})") from None
        listed = data.get("plugins") or [] if isinstance(data, dict) else []
        out += [(path.parent / str(p)).resolve() for p in (listed if isinstance(listed, list) else [listed])]
    return out


def load_plugin_file(path: str | Path) -> None:
    """Import a local plugin file; its decorators register what it defines."""
    path = Path(path)
    if not path.is_file():
        raise AudiobenchError(f"plugin file not found: {path}")
    # a stable module name (the same in every process: cells run on their own re-import it)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    mod_name = f"audiobench_plugin_{path.stem.replace('-', '_')}_{digest}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except AudiobenchError:
        raise
    except Exception as exc:
        del sys.modules[mod_name]
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("audiobench."):
            hint = ("; audiobench's modules move: import the plugin API (registries, bases, Params, ClipSet, ...) "
                    "from audiobench.api, whose names stay put")
        raise AudiobenchError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}{hint}") from exc
