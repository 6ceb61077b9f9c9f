"""Registries of named components: methods, metrics, datasets, contaminations, domains, models.

Built-ins register with a decorator in their own module and are listed here as lazy
``"module:attr"`` entries, so ``audiobench list`` and suite validation never import torch-heavy
modules they do not need. Third-party packages register through the entry-point groups
``audiobench.methods``, ``audiobench.metrics`` and ``audiobench.datasets``; a suite may also
name a local Python file under ``plugins:``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from audiobench.errors import AudiobenchError, did_you_mean

T = TypeVar("T")

KINDS = ("methods", "metrics", "datasets", "contaminations", "domains", "models")
ENTRY_POINT_KINDS = ("methods", "metrics", "datasets")


class Registry(Generic[T]):
    """Name -> component, with lazy entries and a clear error on duplicates and unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attr" (built-ins)
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        self._entry_points_scanned = kind not in ENTRY_POINT_KINDS

    # -- registration -------------------------------------------------
    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; a second, different object under one name is an error."""
        existing = self._items.get(name)
        if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
            raise AudiobenchError(
                f"duplicate {self.kind[:-1]} name '{name}': {_qualname(existing)} and {_qualname(obj)}"
            )
        lazy_module = self._lazy.get(name, "").partition(":")[0]
        if existing is None and lazy_module and _module(obj) != lazy_module:
            raise AudiobenchError(
                f"duplicate {self.kind[:-1]} name '{name}': built-in {self._lazy[name]} and {_qualname(obj)}"
            )
        if existing is None and name in self._entry_points and not self._loading_entry_point(name):
            raise AudiobenchError(
                f"duplicate {self.kind[:-1]} name '{name}': already provided by entry point "
                f"{self._entry_points[name].value}"
            )
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def add_lazy(self, name: str, target: str) -> None:
        """Register a built-in as ``"module:attr"``, imported on first use."""
        self._lazy[name] = target

    # -- lookup -------------------------------------------------------
    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(set(self._items) | set(self._lazy) | set(self._entry_points))

    def builtin_names(self) -> list[str]:
        """Names shipped with audiobench (not plugins)."""
        return sorted(self._lazy)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            module, _, _ = self._lazy[name].partition(":")
            importlib.import_module(module)  # its decorator registers it
            if name not in self._items:
                raise AudiobenchError(f"{self._lazy[name]} did not register {self.kind[:-1]} '{name}'")
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
            if ep.name in self._lazy or ep.name in self._items or ep.name in self._entry_points:
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
            self._items[name] = obj
        return self._items[name]


def _module(obj: Any) -> str | None:
    """The module that defined ``obj`` (instances such as metrics say so through ``defined_in``)."""
    return getattr(obj, "defined_in", None) or getattr(obj, "__module__", None)


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

_BUILTINS = {
    METHODS: {
        "saliency": "audiobench.methods.gradients:Saliency",
        "smoothgrad": "audiobench.methods.gradients:SmoothGrad",
        "integrated_gradients": "audiobench.methods.gradients:IntegratedGradients",
        "guided_backprop": "audiobench.methods.gradients:GuidedBackprop",
        "shap": "audiobench.methods.gradients:GradientShap",
        "gradcam": "audiobench.methods.cam:GradCAM",
        "gradcam_pp": "audiobench.methods.cam:GradCAMPlusPlus",
        "guided_gradcam": "audiobench.methods.cam:GuidedGradCAM",
        "random": "audiobench.methods.control:RandomMap",
        "lmac": "audiobench.methods.lmac:LMAC",
        "l2i": "audiobench.methods.l2i:L2I",
    },
    METRICS: {
        name: "audiobench.metrics.faithfulness:" + name
        for name in ("ai", "ad", "ag", "ff", "fid_in")
    }
    | {name: "audiobench.metrics.complexity:" + name for name in ("sps", "comp", "mm")}
    | {name: "audiobench.metrics.l2i:" + name
       for name in ("fidelity_top1", "fidelity_top5", "ff_l2i", "ff_l2i_random", "n_components")},
    DATASETS: {
        "synth": "audiobench.data.synth:SynthDataset",
        "esc50": "audiobench.data.esc50:ESC50",
        "urbansound8k": "audiobench.data.esc50:UrbanSound8K",
        "audio_folder": "audiobench.data.audio_folder:AudioFolder",
    },
    CONTAMINATIONS: {
        "none": "audiobench.data.contaminations:NoContamination",
        "mixture": "audiobench.data.contaminations:Mixture",
        "white_noise": "audiobench.data.contaminations:WhiteNoise",
        "noise_folder": "audiobench.data.noise_folder:NoiseFolder",
    },
    DOMAINS: {
        "stft2mel": "audiobench.domains:Stft2Mel",
        "mel": "audiobench.domains:Mel",
    },
    MODELS: {"cnn14": "audiobench.models.cnn14:Cnn14Spec"},
}
for _registry, _entries in _BUILTINS.items():
    for _name, _target in _entries.items():
        _registry.add_lazy(_name, _target)


def load_plugin_file(path: str | Path) -> None:
    """Import a local plugin file; its decorators register what it defines."""
    path = Path(path)
    if not path.is_file():
        raise AudiobenchError(f"plugin file not found: {path}")
    mod_name = f"audiobench_plugin_{abs(hash(str(path.resolve())))}"
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
        raise AudiobenchError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc
