"""A contract test a plugin author runs on their own method, like ``captum.testing``::

    from audiobench.testing import check_method
    check_method("my_method")                      # raises AssertionError naming the broken rule
    check_method("my_method", params={"k": 3})

It builds a tiny CNN14 and a batch of tones, then checks, in both masking domains, what the harness
relies on: the method is registered under its name, its parameters validate, ``explain`` returns an
:class:`~audiobench.contracts.explanation.Explanation` whose mask is shaped like the input, finite and in
[0, 1], rows are explained independently of their batch-mates (a batch equals its rows one by one,
up to float rounding, for deterministic methods), the same seed gives the same explanation, and
parts, removals and side outputs have one row per explained row. Trainable methods are fitted on a
few clips first (``fit=True``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS
from audiobench.data.base import ClipSet
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, FitContext
from audiobench.models.cnn14 import Cnn14


def _tones(n: int, classes: int, sample_rate: int = 16000, seconds: float = 0.5) -> ClipSet:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    labels = torch.arange(n) % classes
    freqs = 300.0 * (1 + labels.float()) + 40.0 * torch.arange(n)
    wave = 0.5 * torch.sin(2 * math.pi * freqs[:, None] * t)
    return ClipSet(wave, labels, [f"tone{i}" for i in range(n)], [f"c{i}" for i in range(classes)], sample_rate)


def _check(ok: bool, name: str, rule: str) -> None:
    if not ok:
        raise AssertionError(f"method '{name}': {rule}")


def check_method(
    name: str, params: dict[str, Any] | None = None, fit: bool = True, deterministic: bool | None = None,
    atol: float = 1e-4,
) -> list[str]:
    """Check the method registered as ``name`` against the explainer contract; returns the rules checked.

    Another seed may change the explanation (mask or removals) only when the class declares
    ``stochastic = True`` (the meta-consistency stage re-explains only those over seeds; a declared
    one may still ignore the seed on some inputs, as L2I when every non-relevant component is drawn). A
    deterministic method (``deterministic``; by default, one whose mask does not change with the
    seed) must also give a batch equal to its rows explained one at a time. Raises ``AssertionError``
    naming the first broken rule.
    """
    cls = METHODS.get(name)
    _check(isinstance(cls, type) and issubclass(cls, Explainer), name, "is not an Explainer subclass")
    _check(cls.name == name, name, f"its name is '{cls.name}', registered as '{name}'")
    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    classifier = Cnn14(3, n_mels=32, width=4, depth=2).eval().requires_grad_(False)
    classifier.class_names = ["c0", "c1", "c2"]
    checked = ["registered", "params"]
    for domain in (Stft2Mel(), Stft2Mel({"operator": "log1p"}), Mel()):  # both masking operators of stft2mel
        if cls.domains is not None and domain.name not in cls.domains:
            continue
        explainer = cls(params or {})
        model = DomainModel(classifier, domain, frontend).eval()
        clips = _tones(6, 3)
        if explainer.trainable and fit:
            with tempfile.TemporaryDirectory() as tmp:
                explainer.fit(FitContext(model=model, train=clips, valid=clips, augment=[], seed=0,
                                         device=torch.device("cpu"), identity={"check_method": tmp},
                                         log_dir=Path(tmp), progress=False))
        x = domain.represent(frontend, clips.waveforms).x
        with torch.no_grad():
            target = model(x).argmax(dim=1)
        def explain(rows: slice, seed: int, explainer=explainer, x=x, target=target, model=model) -> Explanation:
            torch.manual_seed(seed)  # as the engine does before every batch
            with torch.enable_grad():
                return explainer.explain(x[rows], target[rows], ExplainContext(model, seed=seed))

        e, again, other = explain(slice(None), 1), explain(slice(None), 1), explain(slice(None), 2)
        where = f"[{domain.key()}] "
        _check(isinstance(e, Explanation), name, where + f"explain returned {type(e).__name__}, not an Explanation")
        _check(e.mask.shape == x.shape, name, where + f"mask shape {tuple(e.mask.shape)} is not the input's {tuple(x.shape)}")
        _check(bool(torch.isfinite(e.mask).all()), name, where + "mask has NaN or Inf values")
        _check(bool((e.mask >= 0).all() and (e.mask <= 1).all()), name, where + "mask values outside [0, 1]")
        _check(torch.equal(e.mask, again.mask), name, where + "the same seed gave another mask")
        for key, value in [*e.removals.items(), ("interpreter_scores", e.interpreter_scores), ("n_parts", e.n_parts)]:
            _check(value is None or value.shape[0] == x.shape[0], name, where + f"{key} has not one row per input row")
        if e.parts is not None:
            _check(bool(((e.parts.rows >= 0) & (e.parts.rows < x.shape[0])).all()), name, where + "parts name rows out of range")
            _check(len(e.parts.names) == len(e.parts.rows) == e.parts.masks.shape[0], name, where + "parts are ragged")
        same = torch.equal(e.mask, other.mask) and e.removals.keys() == other.removals.keys() and all(
            torch.equal(v, other.removals[k]) for k, v in e.removals.items())
        _check(same or cls.stochastic, name, where + "another seed gave another explanation, but the class does "
               "not declare stochastic = True")
        if deterministic if deterministic is not None else torch.equal(e.mask, other.mask):
            rows = torch.cat([explain(slice(i, i + 1), 1).mask for i in range(x.shape[0])])
            _check(torch.allclose(rows, e.mask, atol=atol, rtol=1e-3), name,
                   where + "a batch differs from its rows explained one at a time (rows must not depend on batch-mates)")
        checked.append(f"explain[{domain.key()}]")
    return checked
