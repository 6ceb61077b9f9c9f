"""Contract tests a plugin author runs on their own method or model, like ``captum.testing``::

    from audiobench.testing import check_method, check_model
    check_method("my_method")                      # raises AssertionError naming the broken rule
    check_method("my_method", params={"k": 3})
    check_model("my_model", params={"checkpoint": "weights.pt"})

``check_model`` (the model contract) is documented on the function.

``TINY_SUITE`` is a suite that runs in seconds (a 3-class synthetic set, a 2-block CNN14 trained for
3 epochs); ``tiny_suite(**overrides)`` returns a copy with some top-level keys replaced, and
``tiny_classifier()`` the keys that decide which classifier a run trains (seed, dataset, front end,
model). Suites that take these unchanged share one trained classifier in a cache::

    suite = tiny_suite(methods=["saliency", "my_method"], domains=["mel"])

It builds a tiny CNN14 and a batch of tones, then checks, in both masking domains, what the harness
relies on: the method is registered under its name, its parameters validate, ``explain`` returns an
:class:`~audiobench.contracts.explanation.Explanation` whose mask is shaped like the input, finite and in
[0, 1], rows are explained independently of their batch-mates (a batch equals its rows one by one,
up to float rounding, for deterministic methods), the same seed gives the same explanation, and
parts, removals and side outputs have one row per explained row. Trainable methods are fitted on a
few clips first (``fit=True``).
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS, MODELS
from audiobench.data.base import ClipSet
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, FitContext
from audiobench.models.base import OUTPUT_KINDS, AudioClassifier, ModelSpec
from audiobench.models.cnn14 import Cnn14
from audiobench.models.training import built_network
from audiobench.models.wavecnn import WaveCnn
from audiobench.suite.crossref import same_setting

TINY_SUITE: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"name": "synth", "classes": 3, "clips_per_class": 10, "seconds": 0.5},
    "frontend": {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
    "model": {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 3, "batch_size": 8}},
    "batch_size": 4,
    "domains": ["stft2mel", "mel"],
    "contaminations": ["none", {"name": "mixture", "snr_db": 3}],
    "methods": ["saliency", {"name": "integrated_gradients", "n_steps": 8}, "gradcam", "random"],
    "metrics": ["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"],
    "audio": {"n": 2},
}
"""A suite that runs in seconds on the embedded synthetic data (6 test clips). Read it; to change it, use
:func:`tiny_suite`, which copies."""

CLASSIFIER_KEYS = ("seed", "dataset", "frontend", "model")
"""The suite keys that decide the trained classifier (its cache key also reads the contaminations that
``train.augment_prob`` draws from, when it is above 0)."""


def tiny_suite(**overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`TINY_SUITE` with the given top-level keys replaced."""
    return copy.deepcopy({**TINY_SUITE, **overrides})


def tiny_classifier() -> dict[str, Any]:
    """A deep copy of :data:`TINY_SUITE`'s seed, dataset, front end and model: spread it into a suite of
    your own (``{"name": "mine", **tiny_classifier(), ...}``) to share the tiny suite's trained classifier."""
    return {key: copy.deepcopy(TINY_SUITE[key]) for key in CLASSIFIER_KEYS}


def _tones(n: int, classes: int, sample_rate: int = 16000, seconds: float = 0.5) -> ClipSet:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    labels = torch.arange(n) % classes
    freqs = 300.0 * (1 + labels.float()) + 40.0 * torch.arange(n)
    wave = 0.5 * torch.sin(2 * math.pi * freqs[:, None] * t)
    return ClipSet(wave, labels, [f"tone{i}" for i in range(n)], [f"c{i}" for i in range(classes)], sample_rate)


def _check(ok: bool, name: str, rule: str, kind: str = "method") -> None:
    if not ok:
        raise AssertionError(f"{kind} '{name}': {rule}")


def check_method(
    name: str, params: dict[str, Any] | None = None, fit: bool = True, deterministic: bool | None = None,
    atol: float = 1e-4, waveform: bool = True, classifier: AudioClassifier | None = None,
) -> list[str]:
    """Check the method registered as ``name`` against the explainer contract; returns the rules checked.

    ``classifier``: the network to explain (default: a tiny CNN14 of 3 classes reading 32 mel bands), e.g. a
    tiny transformer for methods that read attention.

    Another seed may change the explanation (mask or removals) only when the class declares
    ``stochastic = True`` (the meta-consistency stage re-explains only those over seeds; a declared
    one may still ignore the seed on some inputs, as L2I when every non-relevant component is drawn). A
    deterministic method (``deterministic``; by default, one whose mask does not change with the
    seed) must also give a batch equal to its rows explained one at a time. Raises ``AssertionError``
    naming the first broken rule. The rules run on a small CNN14 in every masking domain and, with
    ``waveform``, on a small raw-waveform model (:class:`~audiobench.models.wavecnn.WaveCnn`) in ``stft2mel``:
    such a model reads each row with its clip's phase, so a method that feeds the model rows laid out
    otherwise than by tiling the clips (row j from clip j mod N), without naming each row's clip
    (:func:`audiobench.kernel.batching.row_clips`), fails the batch-against-rows rule there. A domain the
    method instance refuses (:meth:`Explainer.domain_problem`, as ``validate`` does) is skipped.
    """
    cls = METHODS.get(name)
    _check(isinstance(cls, type) and issubclass(cls, Explainer), name, "is not an Explainer subclass")
    _check(cls.name == name, name, f"its name is '{cls.name}', registered as '{name}'")
    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    if classifier is None:
        classifier = Cnn14(3, n_mels=32, width=4, depth=2)
    classifier = classifier.eval().requires_grad_(False)
    classifier.class_names = ["c0", "c1", "c2"]
    cases: list[tuple[AudioClassifier, Any, str]] = [
        (classifier, d, d.key()) for d in (Stft2Mel(), Stft2Mel({"operator": "log1p"}), Mel())]  # both stft2mel operators
    if waveform and not cls.needs_attention:  # rows laid out otherwise than by tiling give a waveform model the wrong phase
        wave_clf = WaveCnn(3, width=4, depth=2, first_kernel=16).eval().requires_grad_(False)
        wave_clf.class_names = ["c0", "c1", "c2"]
        cases.append((wave_clf, Stft2Mel(), "stft2mel, waveform model"))
    checked = ["registered", "params"]
    for clf, domain, case in cases:
        if cls.domains is not None and domain.name not in cls.domains:
            continue
        explainer = cls(params or {})
        if explainer.domain_problem(domain) is not None:  # refused at validate (e.g. lmac{reanalyse: waveform} on mel)
            continue
        model = DomainModel(clf, domain, frontend).eval()
        clips = _tones(6, 3)
        if explainer.trainable and fit:
            with tempfile.TemporaryDirectory() as tmp:
                explainer.fit(FitContext(model=model, train=clips, valid=clips, augment=[], seed=0,
                                         device=torch.device("cpu"), identity={"check_method": tmp},
                                         log_dir=Path(tmp), progress=False))
        rep = domain.represent(frontend, clips.waveforms)
        x = rep.x
        with torch.no_grad(), model.reading(rep):
            target = model(x).argmax(dim=1)
        def explain(rows: slice, seed: int, explainer=explainer, x=x, target=target, model=model, rep=rep) -> Explanation:
            torch.manual_seed(seed)  # as the engine does before every batch
            with torch.enable_grad(), model.reading(rep.subset(torch.arange(len(x))[rows])):
                return explainer.explain(x[rows], target[rows], ExplainContext(model, seed=seed))

        e, again, other = explain(slice(None), 1), explain(slice(None), 1), explain(slice(None), 2)
        where = f"[{case}] "
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
                   where + "a batch differs from its rows explained one at a time (rows must not depend on batch-mates"
                   + (": a batch must tile its clips or name each row's clip with row_clips()" if clf is not classifier else "")
                   + ")")
        checked.append(f"explain[{case}]")
    return checked


def check_model(
    name: str | ModelSpec, params: dict[str, Any] | None = None, frontend: FrontendParams | None = None,
    n_classes: int | None = None, atol: float = 1e-4, constant_ok: bool = False,
) -> list[str]:
    """Check the model registered as ``name`` (or a :class:`ModelSpec` instance) against the model contract;
    returns the rules checked. The twin of :func:`check_method`, for a plugin author's model.

    The model is built for ``n_classes`` classes (``c0``, ``c1``, ...) on ``frontend`` (default: a small
    16 kHz front end with the settings the spec requires, :meth:`ModelSpec.required_frontend`) and fed a
    batch of tones in every masking domain. Rules: the front end is the one the model reads; the
    network is an :class:`AudioClassifier` with a known output kind; scores are [B, C] and finite;
    probabilities follow the output kind (softmax and similarity rows sum to 1, sigmoid values in
    [0, 1]); every class's score varies with the input and has a non-zero gradient to it (a constant
    class, e.g. the two-class wrapper ``[0, s]``, or a detached input gives all-zero maps); a batch's
    scores equal its rows scored one at a time (no batch statistics); two passes agree; the blocks'
    outputs exist, one per block, with the declared channels. ``constant_ok``: classes may score a
    constant (a hand-built model whose other classes are fixed, e.g. ``band_energy``: their exact
    attribution is zero); at least one class must still vary and have a gradient. Raises
    ``AssertionError`` naming the first broken rule. A domain the model cannot read (``validate`` refuses
    it: the mel domain for a model of input kind ``linear``) is left out; a model whose spec declares it a ``detector``
    is checked with two classes (absent, present) unless ``n_classes`` says otherwise; others with 3 by default.
    """
    spec = name if isinstance(name, ModelSpec) else MODELS.get(name)(params or {})
    label = spec.name or type(spec).__name__

    def rule(ok: bool, text: str) -> None:
        _check(ok, label, text, "model")

    required = spec.required_frontend()
    small = {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32}
    if frontend is None:
        frontend = FrontendParams(**{**small, **required})
    for key, want in required.items():
        got = getattr(frontend, key)
        rule(same_setting(got, want), f"front end: frontend.{key} is {got!r}, the model reads {want!r}")
    fe = Frontend(frontend)
    torch.manual_seed(0)
    if n_classes is None:  # 3 classes, or 2 (absent, present) for what the spec declares a detector
        n_classes = 2 if spec.detector else 3
    names = [f"c{i}" for i in range(n_classes)]
    clf = built_network(spec, names, frontend.n_mels, frontend.sample_rate)
    rule(isinstance(clf, AudioClassifier), f"build returned {type(clf).__name__}, not an AudioClassifier")
    rule(clf.output_kind in OUTPUT_KINDS, f"output kind {clf.output_kind!r} is not one of {OUTPUT_KINDS}")
    rule(clf.input_kind == spec.input_kind, f"the spec declares input kind {spec.input_kind!r}, the network it builds "
                                            f"{clf.input_kind!r} (validate reads the spec's)")
    rule((clf.detector, clf.frame_pooling) == (spec.detector, spec.frame_pooling),
         f"the spec declares detector {spec.detector} and frame_pooling {spec.frame_pooling!r}, the network it builds "
         f"{clf.detector} and {clf.frame_pooling!r} (validate and list models read the spec's)")
    rule(not clf.detector or n_classes == 2, f"a detector has two classes (absent, present), not {n_classes}: "
                                             "check it with n_classes=2")
    clf = clf.eval()
    checked = ["front end", "built"]
    clips = _tones(6, n_classes, frontend.sample_rate)
    for domain in (Stft2Mel(), Stft2Mel({"operator": "log1p"}), Mel()):
        where = f"[{domain.key()}] "
        if domain.model_problem(spec) is not None:  # refused at validate (a linear-magnitude model in mel)
            continue
        model = DomainModel(clf, domain, fe).eval()
        rep = domain.represent(fe, clips.waveforms)
        x = rep.x
        with torch.no_grad(), model.reading(rep):
            scores, again = model(x), model(x)
        rule(scores.shape == (len(x), n_classes),
             where + f"scores are {tuple(scores.shape)}, not [batch, classes] = {(len(x), n_classes)}")
        rule(bool(torch.isfinite(scores).all()), where + "scores have NaN or Inf values")
        rule(torch.equal(scores, again), where + "two passes over the same batch disagree (dropout in eval mode?)")
        p = model.probabilities(scores)
        if clf.output_kind == "sigmoid":
            rule(bool(((p >= 0) & (p <= 1)).all()), where + "sigmoid probabilities outside [0, 1]")
        else:
            rule(torch.allclose(p.sum(dim=1), torch.ones(len(p)), atol=1e-5),
                 where + f"{clf.output_kind} probabilities do not sum to 1 per row")
        constant = [names[c] for c in range(n_classes) if bool((scores[:, c] == scores[0, c]).all())]
        if constant_ok and len(constant) < n_classes:
            constant = []
        rule(not constant, where + f"class(es) {', '.join(constant)} score the same for every input: a "
             "method explaining them gets all-zero maps (a two-class wrapper [0, s]? declare detector = True on the model and its spec)")
        with torch.no_grad():
            rows = []
            for i in range(len(x)):
                with model.reading(rep.subset(torch.tensor([i]))):
                    rows.append(model(x[i : i + 1]))
            rows = torch.cat(rows)
        rule(torch.allclose(rows, scores, atol=atol, rtol=1e-3),
             where + "a batch's scores differ from its rows scored one at a time (batch statistics in eval mode?)")
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad(), model.reading(rep):
            out = model(xg)
            weights = torch.arange(1, len(x) + 1, dtype=out.dtype)  # distinct: a sum over rows can cancel
            dead = [] if out.requires_grad else list(names)
            for c in range(n_classes if out.requires_grad else 0):
                (g,) = torch.autograd.grad((out[:, c] * weights).sum(), xg, retain_graph=True, allow_unused=True)
                if g is None or not bool((g != 0).any()):
                    dead.append(names[c])
        if constant_ok and len(dead) < n_classes:
            dead = []
        rule(not dead, where + f"class(es) {', '.join(dead)} have no gradient to the input (a detached "
             "input, or a score that does not depend on it): gradient methods would give all-zero maps")
        with torch.no_grad(), model.reading(rep):
            feats = model.features(x)
        blocks, channels, block_names = clf.blocks(), clf.block_channels(), clf.block_names()
        rule(len(feats) == len(blocks) == len(channels) == len(block_names),
             where + f"{len(feats)} feature maps for {len(blocks)} blocks, {len(channels)} channel counts and "
             f"{len(block_names)} block names")
        rule(len(set(block_names)) == len(block_names), "block names are not unique")
        for f, ch, bn in zip(feats, channels, block_names, strict=True):
            rule(f.dim() >= 3 and f.shape[0] == len(x) and f.shape[1] == ch,
                 where + f"block {bn} returns {tuple(f.shape)}, declared {ch} channels ([B, C, ...])")
        checked.append(f"scores[{domain.key()}]")
    return checked
