"""The manifest as typed records: what every view reads of a finished run (``RUN_DIR/manifest.json``).

:func:`audiobench.store.manifest.build_manifest` is the one builder; :func:`read_manifest` the one
reader. Older runs are brought to the current schema by :func:`migrate` (one path, applied in order
of schema version), so a view never meets an old layout. Unknown keys are kept (``extra="allow"``):
a manifest written by a newer audiobench still reads.

Schema versions: 1, the first; 2, per-target rows (``target`` column), the row column is ``row``
(was ``label``) and masks are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audiobench.kernel.errors import AudiobenchError
from audiobench.store.audio import method_folders

SCHEMA_VERSION = 2


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ComponentRecord(_Record):
    """A resolved component of the suite (dataset, model, domain, contamination, method)."""

    name: str
    label: str | None = None  # methods: the row label (the suite's ``label:``, filled in by validate)
    params: dict[str, Any] = Field(default_factory=dict)
    prompts: list[str] | None = None  # zero-shot models' prompt list, when the suite gives one


class SuiteRecord(_Record):
    """The resolved suite, every default filled in (``suite.resolved()``)."""

    name: str = ""
    description: str | None = None
    model: ComponentRecord | None = None
    dataset: ComponentRecord | None = None
    frontend: dict[str, Any] = Field(default_factory=dict)
    tables: list[dict[str, Any]] = Field(default_factory=lambda: [{}])
    methods: list[ComponentRecord] = Field(default_factory=list)
    audio: dict[str, Any] = Field(default_factory=dict)
    sanity: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None  # the budget-matched metrics' budgets and fill, where they were computed

    def method_folders(self) -> dict[str, str]:
        """Row label -> the method's audio folder (:func:`audiobench.store.audio.method_folders`)."""
        return dict(zip([m.label or m.name for m in self.methods], method_folders(self.methods), strict=True))


class MetricRecord(_Record):
    """A metric's registration as the run recorded it (``Metric.info()``)."""

    display: str | None = None
    higher_is_better: bool | None = None


class CellRecord(_Record):
    """One stored cell of the run (its ``cells/<id>.json``, ``resumed`` added by the run)."""

    id: str
    domain: str
    contamination: str
    method: str
    row: str  # the method's row label (schema 1: ``label``)
    hash: str = ""
    n: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    fit_seconds: float | None = None
    fit: dict[str, Any] = Field(default_factory=dict)
    not_applicable: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    skips: list[dict[str, Any]] = Field(default_factory=list)
    resumed: bool = False


class Accuracy(_Record):
    clean_test: float | None = None  # the classifier's accuracy on its clean test split (training record)
    evaluated: dict[str, float] = Field(default_factory=dict)  # per contamination key, on the evaluated clips
    by_domain: dict[str, dict[str, float]] = Field(default_factory=dict)  # per domain key, then as ``evaluated``
    clean_test_macro_auprc: float | None = None  # multi-label classifiers: macro-AUPRC on the clean test split


class Selection(_Record):
    sample_ids: list[str] = Field(default_factory=list)  # the evaluated clips, in order


class Manifest(_Record):
    """A run's manifest. ``schema_version`` is the JSON key ``schema``."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    suite: SuiteRecord = Field(default_factory=SuiteRecord)
    suite_file: str | None = None
    suite_hash: str | None = None
    seed: int | None = None
    limit: int | None = None
    device: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    git: str | None = None
    classifier: dict[str, Any] = Field(default_factory=dict)
    classes: list[str] = Field(default_factory=list)
    output_kind: str = "softmax"
    # the level clips reached the model at: peak-normalised (the recipe's) or as recorded (ModelSpec.peak_normalise)
    input_level: Literal["peak-normalised", "recorded"] = "peak-normalised"
    prompts: list[str] | None = None
    accuracy: Accuracy = Field(default_factory=Accuracy)
    metrics: dict[str, MetricRecord] = Field(default_factory=dict)
    display: dict[str, dict[str, str]] = Field(default_factory=dict)
    order: dict[str, list[str]] = Field(default_factory=dict)
    cells: list[CellRecord] = Field(default_factory=list)
    contaminations: dict[str, Any] = Field(default_factory=dict)
    skips: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float | None = None
    selection: Selection = Field(default_factory=Selection)
    executor: dict[str, Any] | None = None
    training: dict[str, Any] | None = None  # what trained components saw (suite.separation.training_record)
    sanity: dict[str, Any] | None = None

    def metric_info(self) -> dict[str, dict[str, Any]]:
        """Metric name -> its recorded registration as written (direction, aggregation, display)."""
        return {name: info.model_dump(exclude_unset=True) for name, info in self.metrics.items()}

    def display_name(self, column: str, key: str) -> str:
        """How tables and pages name ``key`` of ``column`` (``domain``, ``contamination``, ``dataset``)."""
        return str(self.display.get(column, {}).get(key, key))

    @property
    def model_name(self) -> str:
        return self.suite.model.name if self.suite.model is not None else "classifier"

    @property
    def class_prompts(self) -> list[str] | None:
        """A zero-shot model's prompt per class (None for classifiers)."""
        return self.prompts or self.classifier.get("prompts") or (self.suite.model.prompts if self.suite.model else None)

    @property
    def row_order(self) -> list[str]:
        """The rows (method labels) in suite order."""
        return list(self.order.get("row") or dict.fromkeys(c.row for c in self.cells))

    @property
    def evaluated_ids(self) -> list[str]:
        return list(self.selection.sample_ids)

    def cells_of(self, domain: str | None = None, contamination: str | None = None) -> list[CellRecord]:
        """The cells of one domain and/or condition, in run order."""
        return [c for c in self.cells if domain in (None, c.domain) and contamination in (None, c.contamination)]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A manifest dict of any schema brought to :data:`SCHEMA_VERSION` (a new dict). Raises
    :class:`AudiobenchError` for a manifest newer than this audiobench."""
    data = dict(data)
    version = int(data.get("schema", 1))
    if version > SCHEMA_VERSION:
        raise AudiobenchError(f"manifest schema {version} is newer than this audiobench's ({SCHEMA_VERSION}): upgrade audiobench")
    if version < 2:  # 1 -> 2: the row column was called label
        data["cells"] = [{**c, "row": c.get("row", c.get("label"))} for c in data.get("cells", [])]
        if "label" in (data.get("order") or {}):
            data["order"] = {("row" if k == "label" else k): v for k, v in data["order"].items()}
    data["schema"] = version  # a view can still tell what the run kept (schema 1: no masks)
    return data


def read_manifest(run_dir: str | Path) -> Manifest:
    """The typed manifest of a finished run. Raises :class:`AudiobenchError` (one line naming the file)
    when it is missing, not JSON, or not a manifest."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        raise AudiobenchError(f"no manifest.json in {run_dir}: not a finished audiobench run")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AudiobenchError(f"{path} is damaged ({exc}): run the suite again into {run_dir} to rewrite it") from exc
    if not isinstance(data, dict):
        raise AudiobenchError(f"{path} is not an audiobench manifest (a JSON {type(data).__name__})")
    try:
        return Manifest.model_validate(migrate(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AudiobenchError(f"{path} is not an audiobench manifest: {where}: {first['msg']}") from exc
