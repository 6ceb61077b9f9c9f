"""The extension surface: everything a plugin (method, metric, dataset, contamination, domain, model)
imports, in one module whose names stay put when the library's inside moves::

    from audiobench.api import METHODS, ExplainContext, Explainer, ExplainerParams

    @METHODS.register("time_occlusion")
    class TimeOcclusion(Explainer): ...

Registries (``METHODS``, ``METRICS``, ``DATASETS``, ``CONTAMINATIONS``, ``DOMAINS``, ``MODELS``) take
``@REGISTRY.register(name)``; ``check_method`` / ``load_plugin_file`` are the plugin author's checks.
"""

from __future__ import annotations

from audiobench.contracts.component import Component, Params
from audiobench.contracts.domains import ClipPhase, Domain, Representation
from audiobench.contracts.explanation import Explanation, MaskParts
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import (
    CONTAMINATIONS,
    DATASETS,
    DOMAINS,
    METHODS,
    METRICS,
    MODELS,
    load_plugin_file,
)
from audiobench.data.base import ClipSet, Dataset, Skip
from audiobench.data.contaminations import Contamination
from audiobench.kernel.batching import chunked, row_clips
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    ExplainerParams,
    FitContext,
    to_mask,
)
from audiobench.metrics.base import Metric, MetricInputs, register_metric
from audiobench.models.base import AudioClassifier, ModelSpec, probabilities
from audiobench.testing import check_method

__all__ = [
    "CONTAMINATIONS", "DATASETS", "DOMAINS", "METHODS", "METRICS", "MODELS",
    "AudioClassifier", "AudiobenchError", "ClipPhase", "ClipSet", "Component", "Contamination", "Dataset", "Domain", "DomainModel",
    "ExplainContext", "Explainer", "ExplainerParams", "Explanation", "FitContext", "Frontend", "FrontendParams",
    "MaskParts", "Metric", "MetricInputs", "ModelSpec", "Params", "Representation", "Skip",
    "check_method", "chunked", "load_plugin_file", "probabilities", "register_metric", "row_clips", "to_mask",
]

