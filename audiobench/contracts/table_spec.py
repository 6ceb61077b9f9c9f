"""What a table of a run shows (a suite's `tables:` entries; rendered by :mod:`audiobench.tables`). Torch-free: the views import it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from audiobench.contracts.component import Params


class TableSpec(Params):
    """What a table shows: its rows, row blocks, the columns that split tables, metrics, decimals.

    The one definition: a suite's ``tables:`` entries are validated as this model, and a run's
    manifest stores them as its ``model_dump()``.
    """

    name: str = Field("main", pattern=r"^[A-Za-z0-9_.-]+$")
    rows: str = "row"  # column whose values make the rows (``label``, its name before schema 2, is read as ``row``)
    group: str | None = "domain"  # rows are grouped by this column (blocks), or None
    per: tuple[str, ...] = ("dataset", "contamination")  # one table per combination of these columns
    metrics: tuple[str, ...] | None = None  # which metrics, in order; None = metric_info order
    precision: int = Field(2, ge=0, le=8)
    target: Literal["any", "decision"] = Field(
        "any", description="rows scored: every (clip, target) row, or only those whose target is the model's top class on X"
    )
    # bootstrap95: each cell carries its 95 % percentile-bootstrap interval over clips (value ± half-width),
    # and a best value is bold only where a paired Wilcoxon test separates it from the runner-up
    ci: Literal["none", "bootstrap95"] = "none"

    @field_validator("rows", "group", mode="before")
    @classmethod
    def _row_column(cls, value: Any) -> Any:
        return "row" if value == "label" else value

    @field_validator("per", mode="before")
    @classmethod
    def _row_columns(cls, value: Any) -> Any:
        return tuple("row" if v == "label" else v for v in value) if isinstance(value, (list, tuple)) else value
