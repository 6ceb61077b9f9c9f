"""Aggregation: the long per-sample frame -> one :class:`Table` per combination of ``spec.per`` values.

See :mod:`audiobench.tables` for the conventions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from audiobench.contracts.table_spec import TableSpec
from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.tables.uncertainty import PAIR_COLUMNS, as_block, best_separated, half_widths

AGGREGATIONS = ("mean", "median")
MISSING = "–"
EMPTY_ROW_NOTE = " A row of – only: every clip of that method was skipped (reasons in manifest.json, skips)."
MISSING_LATEX = "--"
NONE_VALUE = "none"
REQUIRED_COLUMNS = ("metric", "value")

Display = Mapping[str, Mapping[str, str]]


@dataclass
class Table:
    """One aggregated table, ready to render.

    ``values`` and ``counts`` are indexed by the raw ``(group, row)`` values (the group level is
    ``""`` when ``spec.group`` is None) with one column per metric; ``blocks`` holds the same
    values split by group and indexed by the row display names, in display order.
    """

    spec: TableSpec
    key: dict[str, str]
    caption: str
    columns: list[str]
    blocks: list[tuple[str, pd.DataFrame]]
    counts: pd.DataFrame
    values: pd.DataFrame = field(default_factory=pd.DataFrame)
    headers: list[str] = field(default_factory=list)
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)
    ci: pd.DataFrame | None = None  # half-widths of the 95 % intervals, shaped like ``values`` (``spec.ci``)
    separated: dict[tuple[str, str], tuple[bool, float]] = field(default_factory=dict)  # (block, metric) -> (bold?, p)

    def slug(self) -> str:
        """File-name-safe name: ``<name>__<value>__<value>`` over ``spec.per``."""
        return "__".join(_safe(part) for part in (self.spec.name, *self.key.values()))


# -- building -----------------------------------------------------------------------------------


def decision_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the long frame whose target is the model's top class on the clean input X
    (``pred_orig``): what a table of the model's decisions scores when some methods explained every class."""
    if "target" not in df.columns or not (df["metric"] == "pred_orig").any():
        return df
    cells = [c for c in ("dataset", "model", "domain", "contamination", "method", "row") if c in df.columns]
    pred = df.loc[df["metric"] == "pred_orig", [*cells, "sample_id", "value"]].drop_duplicates([*cells, "sample_id"])
    pred = pred.rename(columns={"value": "_pred"})
    merged = df.merge(pred, on=[*cells, "sample_id"], how="left")
    keep = merged["_pred"].isna() | (pd.to_numeric(merged["target"], errors="coerce") == merged["_pred"])
    return merged.loc[keep.to_numpy()].drop(columns="_pred")


def build_tables(
    df: pd.DataFrame,
    metric_info: Mapping[str, Mapping],
    spec: TableSpec = TableSpec(),
    order: Mapping[str, Sequence[str]] | None = None,
    display: Display | None = None,
    caption: Callable[[dict[str, str]], str] | None = None,
) -> list[Table]:
    """Aggregate the long per-sample frame into one :class:`Table` per ``spec.per`` combination.

    ``order`` lists the preferred order of a column's values (others follow in order of first
    appearance); ``display`` maps raw values to display names per column; ``caption`` builds the
    caption from the table key (raw values), by default ``"dataset=…, contamination=…"``.
    """
    order = order or {}
    display = display or {}
    group_col = spec.group
    keys = [*spec.per, *([group_col] if group_col else []), spec.rows]
    missing_cols = [c for c in (*REQUIRED_COLUMNS, *keys) if c not in df.columns]
    if missing_cols:
        raise AudiobenchError(f"results frame lacks column(s) {', '.join(missing_cols)}")
    if len(set(keys)) != len(keys):
        raise AudiobenchError(f"table '{spec.name}': rows, group and per columns overlap: {keys}")

    if spec.target == "decision":
        df = decision_rows(df)
    metrics = _select_metrics(df, metric_info, spec.metrics)
    info = {m: _metric_info(m, metric_info) for m in metrics}
    sub = df.loc[df["metric"].isin(metrics), [*keys, "metric", "value"]]
    if sub.empty:
        return []
    sub = sub.assign(value=pd.to_numeric(sub["value"], errors="coerce"))
    samples = None
    if spec.ci != "none":  # the per-sample rows, keys as strings, for intervals and paired tests
        pair_cols = [c for c in PAIR_COLUMNS if c in df.columns and c not in keys]  # target may be a key too
        samples = df.loc[df["metric"].isin(metrics), [*keys, *pair_cols, "metric", "value"]]
        samples = samples.assign(value=pd.to_numeric(samples["value"], errors="coerce"),
                                 **{c: _as_str(samples[c]) for c in keys})

    # One groupby per aggregation kind (at most two), never a loop over rows; key values are
    # turned into strings only after aggregation, on the small result.
    how_of = sub["metric"].map({m: i["aggregation"] for m, i in info.items()})
    parts = []
    for how, part in sub.groupby(how_of, sort=False):
        grouped = part.groupby([*keys, "metric"], sort=False, dropna=False, observed=True)["value"]
        parts.append(grouped.agg([how, "count"]).rename(columns={how: "value"}))
    agg = pd.concat(parts).reset_index()
    agg = agg.assign(**{c: _as_str(agg[c]) for c in keys}).set_index([*keys, "metric"])
    wide = pd.concat(
        {
            "value": agg["value"].unstack("metric").reindex(columns=metrics),
            "n": agg["count"].unstack("metric").reindex(columns=metrics).fillna(0).astype(int),
        },
        axis=1,
    )

    ranks = {c: _ranks(_as_str(pd.Series(sub[c].unique())), order.get(c, ())) for c in keys}
    if spec.per:
        split = [
            (combo if isinstance(combo, tuple) else (combo,), part.droplevel(list(spec.per)))
            for combo, part in wide.groupby(level=list(spec.per), sort=False)
        ]
        split.sort(key=lambda item: tuple(ranks[c][v] for c, v in zip(spec.per, item[0], strict=True)))
    else:
        split = [((), wide)]

    # (group, row) pairs with any row in the frame, per table: a listed row absent from all of them ran
    # without a single kept clip (every map skipped), which the table must show, not hide
    cols = [*spec.per, *([group_col] if group_col else []), spec.rows]
    seen = df[cols].drop_duplicates().assign(**{c: lambda f, c=c: _as_str(f[c]) for c in cols})
    anywhere: dict[tuple, set] = {}
    for rec in seen.itertuples(index=False):
        rec = tuple(rec)
        combo = rec[: len(spec.per)]
        anywhere.setdefault(combo, set()).add(((rec[len(spec.per)] if group_col else ""), rec[-1]))

    headers = [_header(info[m]) for m in metrics]
    directions = {m: info[m]["higher_is_better"] for m in metrics}
    tables = []
    for combo, part in split:
        key = dict(zip(spec.per, combo, strict=True))
        if not group_col:  # a constant group level keeps one index shape for all tables
            part = pd.concat({"": part}, names=["group"])
        values, counts = part["value"], part["n"]
        gname = values.index.names[0]
        in_run = anywhere.get(combo, set())
        values, counts, empty = _with_listed_rows(values, counts, [str(r) for r in order.get(spec.rows, ())], in_run)
        order_idx = sorted(
            values.index,
            key=lambda gr: ((ranks[group_col][gr[0]] if group_col else 0), ranks[spec.rows][gr[1]]),
        )
        values, counts = values.loc[order_idx], counts.loc[order_idx]
        blocks = []
        for g in dict.fromkeys(values.index.get_level_values(gname)):
            block = values.xs(g, level=gname)
            block.index = [_show(display, spec.rows, r) for r in block.index]
            block.index.name = spec.rows
            blocks.append((_show(display, group_col, g) if group_col else "", block))
        ci, separated = None, {}
        if samples is not None:
            mine = samples
            for c, v in key.items():
                mine = mine[mine[c] == v]
            if not group_col:
                mine = mine.assign(group="")
            gcol = group_col or "group"
            ci = as_block(half_widths(mine, [gcol, spec.rows], {m: info[m]["aggregation"] for m in metrics}),
                          values.index, list(metrics))
            for (shown, _), g in zip(blocks, dict.fromkeys(values.index.get_level_values(gname)), strict=True):
                for m, res in best_separated(mine[mine[gcol] == g], values.xs(g, level=gname), spec.rows,
                                             directions).items():
                    separated[(shown, m)] = res
        tables.append(
            Table(
                spec=spec,
                key=key,
                caption=(caption(dict(key)) if caption else _default_caption(spec.name, key, display))
                + (EMPTY_ROW_NOTE if empty else ""),
                columns=list(metrics),
                blocks=blocks,
                counts=counts,
                values=values,
                headers=headers,
                higher_is_better=directions,
                ci=ci,
                separated=separated,
            )
        )
    return tables


def _with_listed_rows(
    values: pd.DataFrame, counts: pd.DataFrame, listed: list[str], in_run: set
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Add, with – (n = 0), each listed row that has no row at all in a group block of the run
    (``in_run``: its (group, row) pairs): a method whose every clip was skipped keeps its row.
    Returns the frames and whether such a row was added."""
    groups = list(dict.fromkeys(values.index.get_level_values(0)))
    missing = [(g, r) for g in groups for r in listed if (g, r) not in in_run and (g, r) not in values.index]
    if missing:
        full = pd.MultiIndex.from_tuples(list(values.index) + missing, names=values.index.names)
        values, counts = values.reindex(full), counts.reindex(full).fillna(0).astype(int)
    return values, counts, bool(missing)


def _select_metrics(
    df: pd.DataFrame, metric_info: Mapping[str, Mapping], wanted: Sequence[str] | None
) -> list[str]:
    if wanted is None:
        present = set(df["metric"].unique())
        return [m for m in metric_info if m in present]
    for m in wanted:
        if m not in metric_info:
            raise AudiobenchError(f"unknown metric '{m}' in table spec{did_you_mean(m, metric_info)}")
    return list(dict.fromkeys(wanted))


def _metric_info(name: str, metric_info: Mapping[str, Mapping]) -> dict:
    raw = metric_info[name]
    how = raw.get("aggregation", "mean")
    if how not in AGGREGATIONS:
        raise AudiobenchError(f"metric '{name}': aggregation '{how}' is not one of {', '.join(AGGREGATIONS)}")
    return {
        "display": raw.get("display", name),
        "higher_is_better": raw.get("higher_is_better"),
        "aggregation": how,
    }


def _header(info: Mapping) -> str:
    arrow = {True: "↑", False: "↓"}.get(info["higher_is_better"], "")
    return f"{info['display']}{arrow}"


def _as_str(col: pd.Series) -> pd.Series:
    return col.astype(object).where(col.notna(), NONE_VALUE).astype(str)


def _ranks(col: pd.Series, preferred: Iterable) -> dict[str, int]:
    """Value -> position: listed values first (in the given order), then by first appearance."""
    listed = [str(v) for v in preferred]
    return {v: i for i, v in enumerate(dict.fromkeys([*listed, *col.unique()]))}


def _show(display: Display, col: str | None, value: str) -> str:
    return str(display.get(col, {}).get(value, value)) if col else value


def _default_caption(name: str, key: Mapping[str, str], display: Display) -> str:
    if not key:
        return name
    return ", ".join(f"{k}={_show(display, k, v)}" for k, v in key.items())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or NONE_VALUE
