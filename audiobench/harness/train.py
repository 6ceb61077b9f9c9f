"""``audiobench train SUITE``: train (or fine-tune) the suite's classifier and write it as a checkpoint.

The classifier is trained on the dataset's ``train`` split and selected on ``valid`` (for ESC-50,
folds 1-3 and 4 as in the L-MAC paper), with the suite's ``model.train`` settings, exactly as
``audiobench run`` trains it when the suite names no checkpoint (and sharing its cache). With
``model.checkpoint`` set, training starts from those weights (fine-tuning; a PANNs AudioSet head
is replaced). The result is ``{"model": state_dict}`` in the PANNs key layout plus a JSON file next
to it with the accuracies, the training history and the class names; ``--set model.checkpoint=PATH``
then evaluates it without training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiobench.contracts.frontend import Frontend
from audiobench.data.base import SPLITS, ClipSet
from audiobench.data.integrity import check_splits
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.checkpoint import save_checkpoint
from audiobench.models.training import train_classifier
from audiobench.suite import Suite
from audiobench.suite.separation import training_record


def default_output(suite: Suite) -> Path:
    return Path("results") / suite.name / "classifier" / f"{suite.model.name}.pt"


def train_suite(suite: Suite, output: str | Path | None = None, device: str = "cpu",
                progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train ``suite``'s classifier, write ``output`` (default ``results/<suite>/classifier/cnn14.pt``) and its JSON."""
    from audiobench.harness.session import resolve_device

    spec = suite.model.build()
    if spec.trains_own_way():  # clap_synth
        raise AudiobenchError(f"audiobench train writes classifier checkpoints; model '{suite.model.name}' is trained "
                              "by `audiobench run` itself (cached, shipped for the embedded suites)")
    if not spec.trainable:
        raise AudiobenchError(f"audiobench train writes classifier checkpoints; model '{suite.model.name}' is not "
                              "trained here (its weights come from model.checkpoint)")
    dev = resolve_device(device)
    frontend = Frontend(suite.frontend).to(dev)
    dataset = suite.dataset.build()
    splits: dict[str, ClipSet] = {}
    for split in SPLITS:
        clips = dataset.load(split, suite.frontend.sample_rate).drop_silent(where=f"{suite.dataset.name}:{split}")
        if len(clips) == 0:
            raise AudiobenchError(f"dataset '{suite.dataset.name}' has no usable clips in split '{split}'")
        splits[split] = clips
    check_splits(splits, suite.dataset.name)
    trained = train_classifier(spec, suite.train, splits, frontend, dataset.fingerprint(), suite.seed,
                               dev, progress, init=True, augment=[c.build() for c in suite.augment])
    out = Path(output) if output else default_output(suite)
    if out.is_dir() or str(output or "").endswith(("/", "\\")):
        out = out / f"{suite.model.name}.pt"
    info = {
        **trained.info,
        "class_names": splits["train"].class_names,
        "dataset": suite.dataset.resolved(),
        "frontend": suite.frontend.model_dump(mode="json"),
        "seed": suite.seed,
        "suite_file": str(suite.file) if suite.file else None,
        "skips": [s.as_dict() for c in splits.values() for s in c.skips],
        # what it trained on (train/evaluate separation): a suite evaluating this checkpoint can tell
        "trained_on": training_record(splits, suite.augment, suite.train, True, suite.model),
    }
    save_checkpoint(trained.model, out, info)
    return out, info
