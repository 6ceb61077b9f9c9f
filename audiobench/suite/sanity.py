"""The ``sanity:`` section of a suite: which sanity stages run after the cells, and how.

```yaml
sanity:
  randomisation: {domain: stft2mel, contamination: none, methods: [Saliency, L-MAC], clips: 20}
  roar: {domain: mel, methods: [Saliency, GradCAM, L-MAC], fractions: [0.2, 0.4, 0.6, 0.8], seeds: 3, epochs: 8}
  meta_consistency: {domain: stft2mel, clips: 20, perturbations: 3, seeds: 3}
  plots: {clips: 3}
```

Each stage is optional (absent: not run; ``{}``: its defaults). ``domain`` defaults to the suite's
first domain; ``methods`` (table row labels) to every method of the suite; ``contamination`` is a
contamination key of the suite (``none``, ``mixture_3db``, ...).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from audiobench.contracts.component import Params
from audiobench.contracts.registry import METRICS


class RandomisationParams(Params):
    """Cascading model randomisation (:mod:`audiobench.sanity.randomisation`)."""

    domain: str | None = Field(None, description="masking domain (default: the suite's first)")
    contamination: str = Field("none", description="the condition whose clips are explained (a contamination key)")
    methods: list[str] | None = Field(None, description="row labels of the methods tested (default: every method)")
    clips: int = Field(20, ge=2, description="the first N evaluated clips of that condition")
    seed: int = Field(0, ge=0, description="seed of the re-initialisation")


class RoarParams(Params):
    """RemOve And Retrain (:mod:`audiobench.sanity.roar`), on the clean (``none``) condition's masks."""

    domain: str | None = Field(None, description="masking domain whose masks rank the bins (default: the suite's first)")
    methods: list[str] | None = Field(None, description="row labels of the methods tested (default: every method)")
    fractions: list[float] = Field([0.2, 0.4, 0.6, 0.8], min_length=1, description="shares of bins removed")
    seeds: int = Field(3, ge=1, description="retrainings per (method, fraction), seeds 0..N-1")
    epochs: int = Field(8, ge=1, description="training epochs of each retrained classifier")
    model: dict[str, Any] = Field(default_factory=dict, description="parameters of the suite's model replaced for "
                                  "the retrained classifiers (a smaller one keeps ROAR cheap, e.g. {width: 4})")
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(32, ge=1)

    @field_validator("fractions")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0 < f < 1:
                raise ValueError(f"removal fractions lie in (0, 1), not {f}")
        return sorted(set(value))


class MetaConsistencyParams(Params):
    """Noise resilience and adversary reactivity of every metric (MetaQuantus;
    :mod:`audiobench.sanity.meta_consistency`), and the stability of each metric's ranking of the
    methods over seeds of the stochastic ones."""

    domain: str | None = Field(None, description="masking domain (default: the suite's first)")
    contamination: str = Field("none", description="the condition whose clips are explained (a contamination key)")
    methods: list[str] | None = Field(None, description="row labels of the methods compared (default: every method); "
                                      "at least two")
    metrics: list[str] | None = Field(None, description="metrics meta-evaluated (default: the suite's metrics that "
                                      "have a direction)")
    clips: int = Field(20, ge=3, description="the first N evaluated clips of that condition")
    perturbations: int = Field(3, ge=1, description="perturbations K per test (each explains every method again)")
    model_minor: float = Field(0.001, gt=0, description="std of the minor multiplicative weight noise N(1, std²) "
                               "(MetaQuantus's model resilience test)")
    model_disruptive: float = Field(2.0, gt=0, description="std of the disruptive weight noise (its adversary test)")
    input_minor_db: float = Field(60.0, description="SNR (dB) of the white noise added to the waveform, minor test")
    input_disruptive_db: float = Field(-10.0, description="SNR (dB) of the noise of the disruptive input test")
    seeds: int = Field(3, ge=1, description="seeds 0..N-1 of the stochastic methods; the ranking's Kendall tau "
                       "between seed 0 and each other seed is reported (1: no seed study)")
    seed: int = Field(0, ge=0, description="seed of the perturbations")

    def chosen_metrics(self, suite_metrics: list[str]) -> list[str]:
        """The metrics meta-evaluated: ``metrics``, or else those of ``suite_metrics`` that have a direction
        (unknown names are left out: validate reports them where they are listed)."""
        if self.metrics is not None:
            return list(self.metrics)
        return [n for n in suite_metrics if n in METRICS and METRICS.get(n).higher_is_better is not None]

    @field_validator("methods")
    @classmethod
    def _two(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) < 2:
            raise ValueError("meta-consistency compares rankings of methods: name at least two different ones")
        if value is not None and len(set(value)) < len(value):
            raise ValueError("a method is named twice")
        return value

    @model_validator(mode="after")
    def _minor_below_disruptive(self) -> MetaConsistencyParams:
        if self.model_minor >= self.model_disruptive:
            raise ValueError(f"model_minor ({self.model_minor:g}) must be below model_disruptive ({self.model_disruptive:g})")
        if self.input_minor_db <= self.input_disruptive_db:
            raise ValueError(f"input_minor_db ({self.input_minor_db:g} dB SNR) must be above input_disruptive_db "
                             f"({self.input_disruptive_db:g}): the minor noise is the quieter one")
        return self


class PlotParams(Params):
    """Figures (matplotlib, PNG and PDF under ``RUN_DIR/plots``)."""

    clips: int = Field(3, ge=0, description="per-clip map figures for the first N evaluated clips")
    dpi: int = Field(80, ge=30, le=600, description="PNG resolution")


class SanityParams(Params):
    """The stages that run after the cells; each absent one is skipped."""

    randomisation: RandomisationParams | None = None
    roar: RoarParams | None = None
    meta_consistency: MetaConsistencyParams | None = None
    plots: PlotParams | None = None


def roar_model(model: Any, p: RoarParams) -> Any:
    """The model spec ROAR retrains: the suite's, with ``p.model``'s parameters replaced (a pydantic
    ``ValidationError`` for a parameter the model does not have)."""
    spec = model.build()
    if not p.model:
        return spec
    return type(spec)({**spec.params.model_dump(), **p.model})


def stage_model_problem(stage: str, model: Any) -> str | None:
    """Why the sanity stage ``stage`` cannot run on the suite's model spec ``model`` (one line), or None:
    ROAR retrains the classifier (a model used as built cannot be) on masked representations, which does not
    yet give a waveform model (input kind ``waveform``) its clips' phase, so its passes would fail after every
    cell ran. The randomisation and meta-consistency stages read every batch with its clips."""
    if model is None:
        return None
    spec = model.build()  # per instance: an hf_audio folder's input kind is its model type's
    if stage == "roar" and spec.input_kind == "waveform":
        return f"sanity.roar does not yet give a waveform model ('{model.name}') its clips' phase: remove it"
    if stage == "roar" and not spec.trainable:
        return (f"sanity.roar retrains the classifier, but model '{model.name}' is not trainable (it is used as "
                "built): remove roar or use a trainable model")
    return None
