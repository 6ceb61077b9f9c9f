"""Built-in explanation methods (importable as ``audiobench.methods``).

Each module registers its methods with ``audiobench.contracts.registry.METHODS``; add your own with
``@METHODS.register("name")`` on an :class:`Explainer` subclass (see ``examples/time_occlusion.py``,
a method in one file, and ``examples/plugin``, the same as an installable package).
"""

from audiobench.contracts.explanation import Explanation, MaskParts
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams, FitContext, to_mask

__all__ = ["ExplainContext", "Explainer", "ExplainerParams", "Explanation", "FitContext", "MaskParts", "to_mask"]
