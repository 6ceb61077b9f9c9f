"""A run's manifest: everything needed to understand and regenerate it."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from audiobench.contracts.registry import CONTAMINATIONS, METRICS
from audiobench.data.base import Skip
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.version import __version__
from audiobench.store.records import SCHEMA_VERSION, Manifest
from audiobench.suite import Suite
from audiobench.suite.separation import condition_labels


def git_hash() -> str | None:
    """The checkout's commit (``-dirty`` when tracked files changed), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "audiobench").is_dir():
        return None  # an installed wheel: site-packages may sit inside another project's checkout
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5)
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    """Versions of audiobench and of the libraries that shape its numbers."""
    import captum

    return {
        "audiobench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def evaluated_accuracy(frame: pd.DataFrame, domain: str | None = None) -> dict[str, float]:
    """Per contamination, the classifier's accuracy on the evaluated clips, from the stored rows:
    single-label data, the share of clips whose top class is the true class; multi-label data, the
    share of (clip, target) rows whose target is a true label (the precision of the decisions).
    Read through ``domain`` (its unmasked representation: what the model reads of it), by default the
    first domain of each contamination's rows (see :func:`accuracy_by_domain`)."""
    acc = {}
    rows = frame[frame.metric.isin(["pred_orig", "y_true", "target_true"])]
    if domain is not None:
        rows = rows[rows.domain == domain]
    for ckey, part in rows.groupby("contamination", sort=False):
        first = part[(part.row == part.row.iloc[0]) & (part.domain == part.domain.iloc[0])]
        if (first.metric == "y_true").any():
            wide = first.pivot_table(index="sample_id", columns="metric", values="value", aggfunc="first")
            acc[ckey] = float((wide["pred_orig"] == wide["y_true"]).mean())
        else:
            acc[ckey] = float(first[first.metric == "target_true"].value.mean())
    return acc


def accuracy_by_domain(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{domain: {contamination: accuracy}}``: the accuracy as each masking domain's unmasked
    representation is read by the model. Equal across domains for a model reading the log-mel
    (both domains give the same log-mel of an unmasked clip); a model that reads the linear
    magnitude, the phase or the dB mel may decide otherwise in one of them."""
    return {str(d): evaluated_accuracy(frame, str(d)) for d in frame.domain.unique()}


def build_manifest(
    suite: Suite, classifier: dict, cell_meta: list[dict], load_skips: list[Skip],
    frame: pd.DataFrame, limit: int | None, device: torch.device, t_start: float, class_names: list[str],
) -> dict[str, Any]:
    """Everything needed to understand and regenerate a run: the one builder of ``manifest.json``, whose
    result every view reads back as a :class:`~audiobench.store.records.Manifest` (checked here)."""
    conditions = {m["contamination"]: m["condition"] for m in cell_meta if "condition" in m}  # SNRs, skips
    labels = condition_labels(suite.contaminations)
    identities = {c.build().key(): list(c.build().identity()) for c in suite.contaminations}
    for key, record in conditions.items():
        record["domain"], record["identity"] = labels.get(key), identities.get(key)
    manifest = {
        "schema": SCHEMA_VERSION,
        "suite": suite.resolved(),
        "suite_file": str(suite.file) if suite.file else None,
        "suite_hash": stable_hash(suite.resolved()),
        "seed": suite.seed,
        "limit": limit,
        "device": str(device),
        "versions": versions(),
        "git": git_hash(),
        "classifier": {k: v for k, v in classifier.items() if k != "history"} | {"history": classifier.get("history", [])},
        "classes": class_names,
        "output_kind": classifier.get("output_kind", "softmax"),
        "prompts": classifier.get("prompts"),  # zero-shot models: one text prompt per class
        "accuracy": {"clean_test": classifier.get("accuracy", {}).get("test"), "evaluated": evaluated_accuracy(frame),
                     "by_domain": accuracy_by_domain(frame),
                     **({"clean_test_macro_auprc": classifier["macro_auprc"].get("test")} if "macro_auprc" in classifier else {})},
        "metrics": {name: METRICS.get(name).info() for name in suite.metrics},
        "display": {
            "domain": {d.build().key(): d.build().title() for d in suite.domains},
            # every block says whether trained components may have seen its condition (suite.separation)
            "contamination": {c.build().key(): f"{c.build().title()} ({labels[c.build().key()]})" for c in suite.contaminations},
            "dataset": {suite.dataset.name: suite.dataset.cls().label()},
        },
        "order": {
            "row": [m.label for m in suite.methods],
            "domain": [d.build().key() for d in suite.domains],
            "contamination": [c.build().key() for c in suite.contaminations],
        },
        "cells": [{k: v for k, v in m.items() if k != "condition"} for m in cell_meta],  # conditions once, below
        "contaminations": conditions,
        "skips": [s.as_dict() for s in load_skips] + [s for c in conditions.values() for s in c["skips"]]
        + [s for m in cell_meta for s in m.get("skips", [])],
        "seconds": round(time.perf_counter() - t_start, 2),
        "registered": {"contaminations": list(CONTAMINATIONS.names())},
    }
    Manifest.model_validate(manifest)  # a builder that drifts from the typed record fails here, not in a view
    return manifest
