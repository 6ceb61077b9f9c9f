"""Built-in explanation methods (importable as ``audiobench.methods``).

Each module registers its methods with ``audiobench.registry.METHODS``; add your own with
``@METHODS.register("name")`` on an :class:`Explainer` subclass (see ``examples/plugin``).
"""

from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams, to_mask

__all__ = ["ExplainContext", "Explainer", "ExplainerParams", "to_mask"]
