"""Generated captions for training audio-text models on the embedded synthetic events.

Each event class has several names and describing words: what it is, its pitch, its motion, its
rhythm; a caption also says how loud the event is over its background, and a mixture is captioned
with both events. Captions are drawn with a ``torch.Generator``, so a seed fixes them.

Evaluation prompts use a template never used here ("this is the sound of <class>" by default, see
:data:`TRAINING_TEMPLATES`), and some class phrases never occur verbatim in a training caption
(``chirp up``, ``chirp down``: training says "upward chirp", "chirp going up", ...): a zero-shot
model must combine words it learnt apart.

Class names without a description (any other dataset) get captions from their own words
(``dog_bark`` -> "a dog bark", "we hear a dog bark", ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audiobench.models.zeroshot import prompt_phrase


@dataclass(frozen=True)
class EventWords:
    """Words describing one event class: names (what it is), pitch, motion, rhythm."""

    names: tuple[str, ...]
    pitch: tuple[str, ...]
    motion: tuple[str, ...]
    rhythm: tuple[str, ...]


#: Descriptions of the synthetic classes (``audiobench.data.synth_events``), from their generators.
SYNTH_WORDS: dict[str, EventWords] = {
    "tone": EventWords(("tone", "pure tone", "sine tone", "steady tone"), ("mid pitched",), ("steady",), ("continuous",)),
    "chirp_up": EventWords(("upward chirp", "chirp going up", "rising chirp", "sweep going up"),
                           ("low to high",), ("rising", "sweeping up"), ("continuous",)),
    "chirp_down": EventWords(("downward chirp", "chirp going down", "falling chirp", "sweep going down"),
                             ("high to low",), ("falling", "sweeping down"), ("continuous",)),
    "harmonic": EventWords(("harmonic", "harmonic stack", "harmonic drone", "note with overtones"),
                           ("low pitched",), ("steady",), ("continuous",)),
    "am_tone": EventWords(("am tone", "tremolo tone", "amplitude modulated tone", "throbbing tone"),
                          ("high pitched",), ("steady",), ("pulsing", "throbbing")),
    "fm_tone": EventWords(("fm tone", "vibrato tone", "frequency modulated tone", "wavering tone"),
                          ("high pitched", "very high"), ("wavering", "wobbling"), ("continuous",)),
    "noise_band": EventWords(("noise band", "band of noise", "hiss", "narrow hiss"),
                             ("very high", "high pitched"), ("steady",), ("continuous",)),
    "rumble": EventWords(("rumble", "low rumble", "deep rumble", "low noise"), ("very low", "deep"), ("steady",),
                         ("continuous",)),
    "click_train": EventWords(("click train", "clicks", "series of clicks", "ticking"), ("high pitched",), ("steady",),
                              ("periodic", "ticking", "regular")),
    "bell": EventWords(("bell", "ringing bell", "bell strike", "chime"), ("mid pitched",), ("decaying", "fading"),
                       ("single",)),
    "siren": EventWords(("siren", "two tone siren", "alarm siren", "wailing siren"), ("mid pitched",),
                        ("alternating", "switching"), ("periodic",)),
    "gated_noise": EventWords(("gated noise", "chopped noise", "noise bursts", "stuttering noise"), ("broadband",),
                              ("steady",), ("intermittent", "stuttering")),
    "buzz": EventWords(("buzz", "low buzz", "buzzing", "square wave buzz"), ("low pitched", "deep"), ("steady",),
                       ("continuous",)),
    "drips": EventWords(("drips", "water drips", "dripping", "drops of water"), ("mid pitched",), ("rising",),
                        ("intermittent", "irregular")),
}

#: Caption templates of single events ({name}, {pitch}, {motion}, {rhythm}, {loud}).
TRAINING_TEMPLATES: tuple[str, ...] = (
    "{name}",
    "a {name}",
    "a {loud} {name}",
    "{pitch} {name}",
    "a {pitch} {name}",
    "a {motion} {name}",
    "a {rhythm} {name}",
    "{name} that is {rhythm}",
    "a {rhythm} and {pitch} {name}",
    "recording of a {name}",
    "we hear a {loud} {name}",
    "a {name} over background noise",
    "there is a {motion} {name}",
)
#: Caption templates of two-event mixtures ({a}, {b}: the events' names).
MIXTURE_TEMPLATES: tuple[str, ...] = (
    "{a} and {b}",
    "a {a} with a {b}",
    "a {a} mixed with a {b}",
    "{a} together with {b}",
)
#: Loudness words by the event's level over its background: faint, clear, loud.
LOUDNESS = (("faint", "quiet", "soft"), ("clear",), ("loud", "strong"))


def class_words(class_name: str) -> EventWords:
    """The description of a class: :data:`SYNTH_WORDS`, or words made from its name."""
    if class_name in SYNTH_WORDS:
        return SYNTH_WORDS[class_name]
    phrase = prompt_phrase(class_name)
    return EventWords((phrase,), ("",), ("",), ("",))


def _pick(options: tuple[str, ...], gen: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=gen))]


def caption(class_name: str, gen: torch.Generator, loudness: int = 1, partner: str | None = None) -> str:
    """One caption of an event of ``class_name`` (``loudness`` 0 faint, 1 clear, 2 loud), or of its
    mixture with an event of ``partner``."""
    words = class_words(class_name)
    if partner is not None:
        template = _pick(MIXTURE_TEMPLATES, gen)
        return template.format(a=_pick(words.names, gen), b=_pick(class_words(partner).names, gen))
    described = words.pitch != ("",)
    templates = TRAINING_TEMPLATES if described else ("{name}", "a {name}", "a {loud} {name}", "recording of a {name}",
                                                      "we hear a {loud} {name}", "a {name} over background noise")
    text = _pick(templates, gen).format(
        name=_pick(words.names, gen), pitch=_pick(words.pitch, gen), motion=_pick(words.motion, gen),
        rhythm=_pick(words.rhythm, gen), loud=_pick(LOUDNESS[loudness], gen),
    )
    return " ".join(text.split())


def captions(
    class_names: list[str], labels: torch.Tensor, gen: torch.Generator, loudness: torch.Tensor | None = None,
    partners: torch.Tensor | None = None,
) -> list[str]:
    """Captions of a batch: ``labels`` [B] class indices, ``loudness`` [B] in {0, 1, 2} (default 1),
    ``partners`` [B] the class index of a mixed-in event or -1 for none."""
    out = []
    for i, label in enumerate(labels.tolist()):
        partner = None if partners is None or int(partners[i]) < 0 else class_names[int(partners[i])]
        level = 1 if loudness is None else int(loudness[i])
        out.append(caption(class_names[label], gen, level, partner))
    return out


def all_training_phrases(class_names: list[str]) -> list[str]:
    """Every word sequence a training caption can contain, for vocabularies and leak checks."""
    texts = []
    for c in class_names:
        w = class_words(c)
        texts += [*w.names, *w.pitch, *w.motion, *w.rhythm]
    texts += [t.format(name="", pitch="", motion="", rhythm="", loud="") for t in TRAINING_TEMPLATES]
    texts += [t.format(a="", b="") for t in MIXTURE_TEMPLATES]
    texts += [w for level in LOUDNESS for w in level]
    return texts
