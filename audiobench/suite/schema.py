"""The suite's schema: top-level keys, training and audio parameters, component entries, :class:`Suite`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_serializer

from audiobench.contracts.component import Component, NoBoolNumbers, Params
from audiobench.contracts.frontend import FrontendParams
from audiobench.contracts.registry import METRICS, REGISTRIES
from audiobench.contracts.table_spec import TableSpec
from audiobench.contracts.targets import TargetParams
from audiobench.kernel.cache import content_dump
from audiobench.metrics.budget import BudgetParams
from audiobench.suite.sanity import SanityParams

DEFAULT_METRICS = ("ai", "ad", "ag", "ff", "fid_in", "sps", "comp")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

TOP_LEVEL_KEYS = {
    "name": "suite name; the default output is results/<name>/",
    "description": "free text",
    "seed": "seed of every random draw (contaminations, noise, training)",
    "frontend": "STFT / mel settings of the classifier's input",
    "dataset": "the dataset: a name or {name: ..., params}",
    "split": "the split explanations are evaluated on (test)",
    "limit": "evaluate a class-stratified, seeded sample of N clips of the split",
    "batch_size": "clips per explanation batch",
    "model": "the classifier: {name: cnn14, width, depth, train: {...}}",
    "domains": "masking domains: stft2mel, mel",
    "contaminations": "evaluated conditions: none, {name: mixture, snr_db: 3, in_domain: false}, ...",
    "train": "what trained components may see: {augment: [conditions]} (classifier and trainable methods)",
    "methods": "explanation methods, one table row each",
    "metrics": "metric names, in column order",
    "tables": "table layouts: {name, rows, group, per, metrics}",
    "audio": "{n: N}: listenable interpretations written per stft2mel cell",
    "masks": "{precision: log8|float16|float32}: how each cell's masks are kept (masks/, audiobench score)",
    "targets": "which class each clip is explained for: decision (default), all, {select: classes, classes: [...]}",
    "plugins": "local Python files registering methods/metrics/datasets",
    "executor": "where cells run: {name: local|submitit|ray, workers, partition, time_min, gpus_per_task, ...}",
    "sanity": "sanity stages after the cells: {randomisation: {...}, roar: {...}, plots: {...}}",
    "budget": "budget-matched faithfulness (ins_auc, del_auc, ad_at_10, ...): {fractions: [0.01, ..., 1.0], fill: zero|mean|noise}",
}


class TrainParams(Params):
    """How the harness trains the classifier when the suite does not name a checkpoint."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    augment_prob: float = Field(
        0.0, ge=0, le=1, description="share of training clips drawn from the suite's train.augment conditions")
    mixture_prob: float = Field(0.0, ge=0, le=1, description="share of training clips mixed with another class")
    mask_augment: float = Field(
        0.0, ge=0, lt=1, description="SpecAugment-style: drop up to this share of frames and mel bands per clip"
    )
    mixture_snr_db: tuple[float, float] = Field((0.0, 10.0), description="SNR range of those mixtures (uniform)")

    @model_serializer(mode="wrap")
    def _stable(self, handler: Any) -> dict[str, Any]:
        # augment_prob 0 is left out: the cache keys of classifiers trained before it existed stay the same
        out = handler(self)
        if not out.get("augment_prob"):
            out.pop("augment_prob", None)
        return out


class AudioParams(Params):
    n: int = Field(4, ge=0, description="clips per stft2mel cell written as listenable WAV")


class MaskParams(Params):
    """How a run keeps its explanations (``RUN_DIR/masks``, read by ``audiobench score``)."""

    precision: Literal["log8", "float16", "float32"] = Field(
        "log8", description="log8: 1 byte per value (relative error <= 2.8 %); float16; float32: exact"
    )


class ExecutorParams(Params):
    """Where a run's cells run once the shared stage is done (:mod:`audiobench.harness.executors`). It does not
    shape any number: the same suite gives the same cells whichever executor runs them."""

    name: Literal["local", "submitit", "ray"] = Field(
        "local", description="local: worker processes on this machine; submitit: a Slurm job array; ray: Ray tasks")
    workers: int = Field(1, ge=1, description="local: worker processes (1: cells in this process, in order)")
    threads: int | None = Field(None, ge=1, description="local: torch threads per worker (default: this machine's share)")
    cluster: Literal["slurm", "local", "debug"] | None = Field(
        None, description="submitit: slurm, or local (subprocesses, for tests); default: slurm where sbatch exists")
    folder: str | None = Field(None, description="submitit: job logs and pickles (default: RUN_DIR/submitit)")
    partition: str | None = Field(None, description="submitit: Slurm partition")
    time_min: int = Field(60, ge=1, description="submitit: time limit of each job, minutes")
    cpus_per_task: int = Field(1, ge=1, description="submitit and ray: CPUs per cell task (= its torch threads)")
    gpus_per_task: int = Field(0, ge=0, description="submitit and ray: GPUs per cell task")
    mem_gb: float | None = Field(None, gt=0, description="submitit and ray: memory per task, GB")
    array_parallelism: int = Field(32, ge=1, description="submitit: array tasks running at once")
    cells_per_task: int = Field(1, ge=1, description="submitit: cells run one after the other by each array task")
    setup: list[str] = Field(default_factory=list, description="submitit: shell lines run before each job (module load ...)")
    slurm: dict[str, Any] = Field(default_factory=dict, description="submitit: further sbatch options (account, qos, ...)")
    address: str | None = Field(None, description="ray: cluster address (auto, ray://host:10001); default: a local instance")

    @property
    def parallel(self) -> bool:
        """Whether cells leave this process (any executor but one local worker)."""
        return self.name != "local" or self.workers > 1


class _Top(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    description: str = ""
    seed: int = 0
    split: str = Field("test", pattern="^(train|valid|test)$")
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)


@dataclass
class ComponentSpec:
    """One entry of a suite list: a registered name, its parameters and its row label."""

    kind: str
    name: str
    params: dict[str, Any]
    label: str | None = None
    line: int | None = None
    targets: Any = None  # methods: a TargetParams overriding the suite's ``targets`` for this method's rows
    in_domain: bool = False  # contaminations: trained components may have seen this condition (a label, no number)
    # methods: the label the row has on its own (its `label:` or the method's default row label), before rows sharing
    # a display name get their parameters appended; its cell ids hash this one, so editing another row of the suite
    # never moves this row's ids or seeded draws. None: the label itself.
    identity_label: str | None = None

    def cls(self) -> type[Component]:
        return REGISTRIES[self.kind].get(self.name)

    def build(self) -> Any:
        return self.cls()(self.params)

    def resolved(self) -> dict[str, Any]:
        """Name, label and every parameter with its default filled in; a method row shown under another label
        than its own (rows sharing a name get their parameters appended) also records ``identity_label``, so
        a suite rebuilt from a manifest (:func:`audiobench.harness.scoring.suite_from_resolved`) names its cells alike."""
        out: dict[str, Any] = {"name": self.name}
        if self.label:
            out["label"] = self.label
        if self.identity_label not in (None, self.label):
            out["identity_label"] = self.identity_label
        if self.targets is not None:
            out["targets"] = self.targets.model_dump(mode="json")
        out["params"] = self.build().params.model_dump(mode="json")
        return out

    def identity(self) -> dict[str, Any]:
        """:meth:`resolved` with every path parameter (``root``, ``checkpoint``, ...) replaced by what it
        holds (:func:`audiobench.kernel.cache.path_content`): what a cell's hash reads, so that cell ids do not
        depend on where the data lies. The manifest keeps :meth:`resolved` (the paths, for the reader)."""
        out = self.resolved()
        if (own := out.pop("identity_label", None)) is not None:
            out["label"] = own
        out["params"] = content_dump(self.build().params)
        return out


@dataclass
class Suite:
    """A validated suite."""

    name: str
    file: Path | None
    seed: int
    frontend: FrontendParams
    dataset: ComponentSpec
    split: str
    limit: int | None
    batch_size: int
    model: ComponentSpec
    train: TrainParams
    domains: list[ComponentSpec]
    contaminations: list[ComponentSpec]
    methods: list[ComponentSpec]
    metrics: list[str]
    tables: list[TableSpec]
    audio: AudioParams
    targets: TargetParams = field(default_factory=TargetParams)
    masks: MaskParams = field(default_factory=MaskParams)
    plugins: list[Path] = field(default_factory=list)
    description: str = ""
    executor: ExecutorParams = field(default_factory=ExecutorParams)  # not in resolved(): it shapes no number
    sanity: SanityParams | None = None
    augment: list[ComponentSpec] = field(default_factory=list)  # train.augment: conditions trained components see
    budget: BudgetParams = field(default_factory=BudgetParams)  # the budget-matched metrics' budgets and fill

    def uses_budget(self) -> bool:
        """Whether a metric of the suite needs the budget passes (then ``budget`` shapes its numbers)."""
        return any(name in METRICS and "budget" in METRICS.get(name).needs for name in self.metrics)

    def resolved(self) -> dict[str, Any]:
        """The suite with every default filled in: what the manifest records and cells hash."""
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "frontend": self.frontend.model_dump(mode="json"),
            "dataset": self.dataset.resolved(),
            "split": self.split,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "model": {**self.model.resolved(), "train": self.train.model_dump(mode="json")},
            "domains": [d.resolved() for d in self.domains],
            # in_domain is a label (not in the cells' hashes) but re-reading the suite needs it
            "contaminations": [{**c.resolved(), **({"in_domain": True} if c.in_domain else {})} for c in self.contaminations],
            "methods": [m.resolved() for m in self.methods],
            "metrics": list(self.metrics),
            "tables": [t.model_dump(mode="json") for t in self.tables],
            "audio": self.audio.model_dump(mode="json"),
            "targets": self.targets.model_dump(mode="json"),
            "masks": self.masks.model_dump(mode="json"),
            "plugins": [str(p) for p in self.plugins],
            **({"sanity": self.sanity.model_dump(mode="json")} if self.sanity is not None else {}),
            **({"train": {"augment": [c.resolved() for c in self.augment]}} if self.augment else {}),
            # only where it acts or was set: the resolved suites (and hashes) of earlier runs stay the same
            **({"budget": self.budget.model_dump(mode="json")}
               if self.uses_budget() or self.budget != BudgetParams() else {}),
        }
