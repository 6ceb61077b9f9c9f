"""Built-in metrics (importable as ``audiobench.metrics``).

A metric is a function of the shared :class:`MetricInputs` of a batch returning one value per
sample (NaN where it is undefined, which the engine records as a skip), registered with its
direction and aggregation by :func:`register_metric`.
"""

from audiobench.metrics.base import Metric, MetricInputs, compute_inputs, register_metric

__all__ = ["Metric", "MetricInputs", "compute_inputs", "register_metric"]
