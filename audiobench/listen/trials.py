"""The trials of a run's MUSHRA listening test, read from its stored files only.

One trial per (condition, clip) whose input the run kept as audio (``audio/<condition>/input``) in a
listenable domain: the stimuli are the hidden reference (the input itself), the anchor (the ``random``
control's interpretation, when the suite has it) and every other method's listenable interpretation
of the clip's predicted class. Listeners see the stimuli in an order shuffled per (listener, trial)
with a seed derived from both, so a listener who comes back sees the same order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from audiobench.kernel.errors import AudiobenchError

REFERENCE = "reference"  # the hidden reference: the input clip
ANCHOR = "anchor"  # the random control's interpretation
ANCHOR_METHOD = "random"
INSTRUCTIONS = (  # L-MAC paper (Paissan et al., ICML 2024), sec. 3.3, the two instructions given to listeners
    "How well does the interpretation correspond to the part of the input audio associated with the given class?",
    "While evaluating, please pay attention to audio quality also.",
)


@dataclass(frozen=True)
class Trial:
    """One MUSHRA page: ``stimuli`` maps a stimulus name (a method row, ``reference``, ``anchor``) to its WAV,
    a path relative to the run directory."""

    id: str
    condition: str
    condition_label: str
    sample_id: str
    predicted: str  # the class (or prompt) the interpretations explain
    reference: str  # the input WAV (relative), played openly as "Reference" too
    stimuli: dict[str, str] = field(default_factory=dict)

    def order(self, listener: str) -> list[str]:
        """The stimulus names in the order ``listener`` sees them (deterministic per listener and trial)."""
        seed = int.from_bytes(hashlib.sha256(f"{listener}\x00{self.id}".encode()).digest()[:8], "big")
        names = sorted(self.stimuli)
        random.Random(seed).shuffle(names)
        return names


def trial_order(trials: list[Trial], listener: str) -> list[Trial]:
    """The trials in the order ``listener`` takes them (shuffled with a seed derived from the name)."""
    seed = int.from_bytes(hashlib.sha256(f"{listener}\x00trials".encode()).digest()[:8], "big")
    out = list(trials)
    random.Random(seed).shuffle(out)
    return out


def select_stimuli(trials: list[Trial], methods: list[str] | None = None, per_page: int | None = None) -> list[Trial]:
    """The trials with only the method rows ``methods`` (row labels; the hidden reference and the anchor are
    always kept), each clip's rows split over pages of at most ``per_page`` methods (MUSHRA pages stay small:
    ITU-R BS.1534-3 asks for at most 12 conditions besides the reference and anchors). A trial whose
    stimuli change gets its own id (``t001__<selection>p1``), so ratings of another selection in the same
    database stay valid. Raises :class:`AudiobenchError` for a row the run has no interpretations of."""
    if methods is None and per_page is None:
        return trials
    rows = list(dict.fromkeys(r for t in trials for r in t.stimuli if r not in (REFERENCE, ANCHOR)))
    wanted = rows if methods is None else list(dict.fromkeys(methods))
    unknown = [m for m in wanted if m not in rows]
    if unknown:
        raise AudiobenchError(f"--method: no listenable interpretations of {', '.join(map(repr, unknown))} in this run; "
                              f"rows: {', '.join(map(repr, rows))}")
    if per_page is not None and per_page < 1:
        raise AudiobenchError(f"--per-page must be at least 1, got {per_page}")
    size = per_page or len(wanted)
    pages = [wanted[i : i + size] for i in range(0, len(wanted), size)]
    tag = hashlib.sha256("\x00".join(wanted).encode()).hexdigest()[:6] + (f"x{size}" if len(pages) > 1 else "")
    out = []
    for t in trials:
        for k, page in enumerate(pages, start=1):
            keep = {n: w for n, w in t.stimuli.items() if n in (REFERENCE, ANCHOR) or n in page}
            if len(keep) > 1:
                out.append(Trial(f"{t.id}__{tag}p{k}", t.condition, t.condition_label, t.sample_id, t.predicted,
                                 t.reference, keep))
    return out


def load_trials(run_dir: str | Path, methods: list[str] | None = None, per_page: int | None = None) -> list[Trial]:
    """The listening test of a finished run, with only the method rows ``methods`` and at most ``per_page``
    of them on a page (:func:`select_stimuli`; default: every row on one page). Raises
    :class:`AudiobenchError` when the run kept no listenable interpretations (no ``audio/`` of a
    listenable domain, or ``audio.n: 0``)."""
    import pandas as pd

    from audiobench.report.build import interpretation_name, is_listenable
    from audiobench.store.audio import interpretation_dir
    from audiobench.store.ids import file_stem
    from audiobench.store.records import read_manifest
    from audiobench.store.run_dir import load_run

    run = Path(run_dir)
    manifest = read_manifest(run)
    classes = [str(c) for c in manifest.classes]
    prompts = manifest.class_prompts
    prompts = [str(p) for p in prompts] if isinstance(prompts, list) and len(prompts) == len(classes) else None
    folders = manifest.suite.method_folders()
    listenable = [d for d in dict.fromkeys(c.domain for c in manifest.cells) if is_listenable(d, manifest)]
    if not listenable:
        raise AudiobenchError(f"{run}: no listenable domain (e.g. stft2mel) in this run: nothing to listen to")
    domain = listenable[0]
    frame = load_run(run)
    preds = frame[(frame["domain"] == domain) & (frame["metric"] == "pred_orig")]
    pred_of = preds.groupby(["contamination", "sample_id"])["value"].first()
    selection = manifest.evaluated_ids
    trials: list[Trial] = []
    for condition in dict.fromkeys(c.contamination for c in manifest.cells_of(domain)):
        cells = manifest.cells_of(domain, condition)
        input_dir = run / "audio" / condition / "input"
        for sid in selection:
            wav = input_dir / f"{file_stem(sid)}.wav"
            if not wav.exists() or (condition, sid) not in pred_of.index or pd.isna(pred_of[(condition, sid)]):
                continue
            pred = int(pred_of[(condition, sid)])
            stimuli = {REFERENCE: wav.relative_to(run).as_posix()}
            for cell in cells:
                folder = interpretation_dir(run / "audio" / condition, domain, listenable) / folders.get(cell.row, "\x00")
                name = interpretation_name(folder, sid, pred, classes) if cell.row in folders else None
                path = folder / f"{file_stem(name)}.wav" if name is not None else None
                if path is not None:
                    stimuli[ANCHOR if cell.method == ANCHOR_METHOD else cell.row] = path.relative_to(run).as_posix()
            if len(stimuli) < 2:
                continue
            label = classes[pred] if pred < len(classes) else str(pred)
            trials.append(Trial(
                id=f"t{len(trials) + 1:03d}", condition=condition, condition_label=manifest.display_name("contamination", condition),
                sample_id=sid, predicted=f"{label} (prompt: {prompts[pred]})" if prompts else label,
                reference=stimuli[REFERENCE], stimuli=stimuli,
            ))
    if not trials:
        raise AudiobenchError(f"{run}: the run kept no listenable interpretations (suite key audio.n is 0?)")
    return select_stimuli(trials, methods, per_page)
