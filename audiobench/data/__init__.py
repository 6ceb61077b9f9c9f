"""Datasets, clip containers and contaminations."""

from audiobench.data.base import ClipSet, Dataset, Skip

__all__ = ["ClipSet", "Dataset", "Skip"]
