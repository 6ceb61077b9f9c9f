"""Train/evaluate separation: what trained components may see (``train:``) against what is evaluated.

A suite's ``contaminations:`` are the evaluated conditions; its ``train:`` section declares the
conditions trained components see as augmentation (besides the clean training clips)::

    train:
      augment:                               # the classifier (model.train.augment_prob) and every
        - {name: white_noise, snr_db: [0, 20]}  # trainable method (its augment_prob) draw from these

Two conditions are the same when :meth:`Contamination.identity` says so (the kind and the source of
what is added, never the level). By default nothing trained sees an evaluated condition:
``validate`` refuses, at the component's line, a classifier or trainable method whose augmentation
has the identity of an evaluated condition, unless that condition is marked ``in_domain: true``
(the L-MAC paper's Table 1: noise of the kind the classifier was trained with). The clean clips
(``none``) are in-domain. Every table block says which it is, and the manifest records what each
trained component trained on (:func:`training_record`).

A classifier loaded from a checkpoint trained elsewhere: the harness cannot know what it saw; its
conditions are what the suite declares (``in_domain``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audiobench.kernel.cache import stable_hash
from audiobench.suite.crossref import mapping_section
from audiobench.suite.lines import KeyPath, LocatedErrors
from audiobench.suite.schema import ComponentSpec, TrainParams

TRAIN_SECTION_KEYS = {"augment": "conditions trained components see besides clean clips (contamination entries)"}
IN_DOMAIN, OUT_OF_DOMAIN = "in-domain", "out-of-domain"


def parse_train_section(
    raw: Any, errors: LocatedErrors, parse_entry: Callable[[str, Any, KeyPath, LocatedErrors], ComponentSpec | None],
) -> list[ComponentSpec]:
    """The ``train:`` section -> its augmentation conditions (contamination specs); problems at their lines."""
    section = mapping_section(raw, ("train",), errors)
    if not section:
        return []
    for key in section:
        if key not in TRAIN_SECTION_KEYS:
            errors.add(("train", key), f"unknown key 'train.{key}' (keys: {', '.join(TRAIN_SECTION_KEYS)})")
    augment = section.get("augment") or []
    if not isinstance(augment, list):
        augment = [augment]
    specs = [parse_entry("contaminations", r, ("train", "augment", i), errors) for i, r in enumerate(augment)]
    out: list[ComponentSpec] = []
    for i, spec in enumerate(specs):
        if spec is None:
            continue
        if spec.name == "none":
            errors.add(("train", "augment", i), "'none' is not an augmentation: the clean training clips are always used")
        elif spec.in_domain:
            errors.add(("train", "augment", i, "in_domain"), "in_domain marks an evaluated condition, not an augmentation")
        else:
            out.append(spec)
    return out


def classifier_trains_here(model: ComponentSpec) -> bool:
    """Whether the harness trains the suite's model (no checkpoint; trainable or trained its own way)."""
    built = model.build()
    if built.checkpoint() is not None:
        return False
    return bool(built.trainable or built.trains_own_way())


def classifier_conditions(
    train: TrainParams, augment: list[ComponentSpec], model: ComponentSpec | None = None,
) -> list[tuple[Any, str, KeyPath]]:
    """(condition, title, suite key path) of every condition the harness-trained classifier sees: a
    built contamination for ``train.augment`` entries, an identity tuple for what the model mixes
    in itself (:meth:`ModelSpec.trained_conditions`, e.g. ``model.train.mixture_prob``)."""
    seen: list[tuple[Any, str, KeyPath]] = []
    if train.augment_prob > 0:
        seen += [(c.build(), c.build().title(), ("train", "augment", i)) for i, c in enumerate(augment)]
    own = model.build().trained_conditions(train) if model is not None else []
    seen += [(ident, title, ("model", "train")) for ident, title in own]
    return seen


def same_condition(trained: Any, evaluated: Any) -> bool:
    """Whether a training condition (a contamination, or an identity tuple) is the evaluated one."""
    if isinstance(trained, tuple):
        return trained == evaluated.identity()
    return bool(trained.overlaps(evaluated))


def method_conditions(method: ComponentSpec, augment: list[ComponentSpec]) -> list[tuple[Any, str, KeyPath]]:
    """(condition, title, key path) of the conditions a trainable method sees (none when it does not augment)."""
    if not method.build().augments():
        return []
    return [(c.build(), c.build().title(), ("train", "augment", i)) for i, c in enumerate(augment)]


def check_separation(
    errors: LocatedErrors, model: ComponentSpec | None, train: TrainParams, augment: list[ComponentSpec],
    contaminations: list[ComponentSpec], methods: list[ComponentSpec], method_paths: list[KeyPath],
    training: bool = False, augment_given: bool = False,
) -> None:
    """Refuse, at the trained component's line, augmentation with an evaluated condition not marked
    ``in_domain``. ``training``: ``audiobench train`` trains (fine-tunes) the classifier even when
    the suite names a checkpoint. ``augment_given``: the suite wrote entries under ``train.augment``
    (a malformed one is reported on its own, not again as an empty list)."""
    evaluated = [(i, c.build()) for i, c in enumerate(contaminations) if c.name != "none" and not c.in_domain]
    for i, c in enumerate(contaminations):
        if c.name == "none" and c.in_domain:
            errors.add(("contaminations", i, "in_domain"), "'none' (the clean clips) is always in-domain; remove in_domain")
    trained: list[tuple[KeyPath, str, list[tuple[tuple[str, ...], str, KeyPath]]]] = []
    own_way = model is not None and model.build().trains_own_way()
    if own_way and train.augment_prob > 0 and not model.build().takes_augment:
        errors.add(("model", "train", "augment_prob"), f"model '{model.name}' trains its own way and does not take "
                   "train.augment; set augment_prob to 0")
    trains = model is not None and (training or classifier_trains_here(model))
    if trains:
        trained.append((("model", "train"), f"the classifier ({model.name})", classifier_conditions(train, augment, model)))
    for path, m in zip(method_paths, methods, strict=True):
        if m.cls().trainable:
            trained.append((path, f"method '{m.label or m.name}'", method_conditions(m, augment)))
    if train.augment_prob > 0 and not augment and not augment_given and trains:
        errors.add(("model", "train", "augment_prob"), "augment_prob draws from train.augment, which lists no condition")
    for path, who, seen in trained:
        for condition, title, where in seen:
            hit = next(((i, c) for i, c in evaluated if same_condition(condition, c)), None)
            if hit is not None:
                i, c = hit
                errors.add(path, f"{who} trains on {title} ({'.'.join(map(str, where))}), the kind of condition "
                           f"evaluated as out-of-domain in contaminations[{i}] ({c.title()}): train on another "
                           f"condition, or mark contaminations[{i}] in_domain: true")


def condition_labels(contaminations: list[ComponentSpec]) -> dict[str, str]:
    """Contamination key -> ``in-domain`` (clean, or marked ``in_domain: true``) or ``out-of-domain``."""
    return {c.build().key(): IN_DOMAIN if c.name == "none" or c.in_domain else OUT_OF_DOMAIN for c in contaminations}


def training_record(
    splits: dict[str, Any], augment: list[ComponentSpec], train: TrainParams | None, classifier_trained: bool,
    model: ComponentSpec | None = None,
) -> dict[str, Any]:
    """What the manifest records of training: the clips of each training split (ids, count, hash), the
    declared augmentation conditions, and what the classifier saw (None when it was not trained here)."""
    clips = {name: {"n": len(splits[name]), "sha": stable_hash(list(splits[name].sample_ids)),
                    "sample_ids": list(splits[name].sample_ids)} for name in ("train", "valid") if name in splits}
    conditions = [{"key": c.build().key(), "title": c.build().title(), "identity": list(c.build().identity()),
                   **c.resolved()} for c in augment]
    classifier = None
    if classifier_trained and train is not None:
        seen = [{"title": t, "identity": list(c if isinstance(c, tuple) else c.identity())}
                for c, t, _ in classifier_conditions(train, augment, model)]
        classifier = {"clips": ["train", "valid"], "augment_prob": train.augment_prob,
                      "mixture_prob": train.mixture_prob, "conditions": seen}
    return {"clips": clips, "augment": conditions, "classifier": classifier}
