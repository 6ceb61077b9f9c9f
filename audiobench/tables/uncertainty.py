"""Uncertainty in tables (``tables: [{ci: bootstrap95}]``): each cell's 95 % bootstrap half-width over
clips, and the paired test that decides whether a column's best value is marked.

The best row of a block is bold only when the Wilcoxon signed-rank test (two-sided, on the
per-(clip, target) differences between it and the runner-up, :func:`audiobench.kernel.stats.paired_wilcoxon`)
gives p < 0.05; otherwise no value of that column is bold. See :mod:`audiobench.kernel.stats`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from audiobench.kernel.stats import ALPHA, half_width, paired_wilcoxon

CI_CHOICES = ("none", "bootstrap95")
PAIR_COLUMNS = ("sample_id", "target")


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in (clip, target) order, so the bootstrap draws do not depend on the store's order."""
    cols = [c for c in PAIR_COLUMNS if c in frame.columns]
    return frame.sort_values(cols, kind="stable") if cols else frame


def half_widths(sub: pd.DataFrame, index_cols: list[str], how: Mapping[str, str]) -> pd.DataFrame:
    """Half-widths of the 95 % bootstrap interval of each (index..., metric) group's aggregate,
    wide: one column per metric. ``how``: metric -> "mean" or "median"."""
    sub = ordered(sub)
    out = {}
    for key, part in sub.groupby([*index_cols, "metric"], sort=False, dropna=False, observed=True)["value"]:
        out[key] = half_width(part.to_numpy(), how[key[-1]])
    if not out:
        return pd.DataFrame()
    s = pd.Series(out)
    s.index.names = [*index_cols, "metric"]
    return s.unstack("metric")


def best_separated(
    sub: pd.DataFrame, values: pd.DataFrame, row_col: str, directions: Mapping[str, bool | None],
) -> dict[str, tuple[bool, float]]:
    """Per metric with a direction: (best row separated from the runner-up, p-value) within one block.

    ``sub``: the block's per-sample rows (columns ``row_col``, ``sample_id``, ``target``, ``metric``,
    ``value``); ``values``: the block's aggregated values, indexed by raw row value.
    """
    out: dict[str, tuple[bool, float]] = {}
    for metric, higher in directions.items():
        if higher is None or metric not in values.columns:
            continue
        col = values[metric].dropna()
        if len(col) < 2:
            continue
        ranked = col.sort_values(ascending=not higher)
        best, runner = str(ranked.index[0]), str(ranked.index[1])
        part = sub[sub["metric"] == metric]
        a = part[part[row_col] == best].set_index(list(PAIR_COLUMNS))["value"]
        b = part[part[row_col] == runner].set_index(list(PAIR_COLUMNS))["value"]
        joined = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()
        joined = joined.sort_index()
        p = paired_wilcoxon(joined["a"].to_numpy(), joined["b"].to_numpy()) if len(joined) else 1.0
        out[metric] = (bool(p < ALPHA), p)
    return out


def as_block(frame: pd.DataFrame, index: pd.Index, columns: list[str]) -> pd.DataFrame:
    """``frame`` reindexed to a table's (group, row) index and metric columns (NaN where absent)."""
    if frame.empty:
        return pd.DataFrame(np.nan, index=index, columns=columns)
    return frame.reindex(index=index, columns=columns)
