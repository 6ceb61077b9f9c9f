"""Zero-shot (CLAP-style) classifiers: an audio encoder and a text encoder meeting in one space.

A :class:`ZeroShotClassifier` is an :class:`~audiobench.models.base.AudioClassifier` of output
kind ``similarity``: its classes are text prompts (``prompts``, one per class name), and the score
of prompt c for a clip is ``logit_scale * cos(a, t_c)`` with ``a = f_audio(X)`` and
``t_c = f_text(prompt_c)`` (CLAP, Elizalde et al. 2023, eq. 1-3; LMAC-ZS, Paissan et al. 2024,
eq. 8: p = softmax over the prompts). Any prompt can be embedded (:meth:`embed_text`), so a method
such as LMAC-ZS can be asked about a class the model was never told of.

Subclasses keep their audio encoder as ``self.audio`` (an AudioClassifier such as a Cnn14: its block
API is the model's) and implement :meth:`audio_projection` (the deepest block's output -> the
unnormalised audio embedding) and :meth:`encode_text` (prompts -> unnormalised text embeddings).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from audiobench.models.base import AudioClassifier


class ZeroShotClassifier(AudioClassifier):
    """Audio encoder + text encoder; scores [B, P] = logit_scale x cosine(audio, prompt).

    Shapes: :meth:`audio_embedding` [B, d] and :meth:`embed_text` [P, d] are unit-norm;
    :attr:`logit_scale` is a positive scalar (CLAP's 1 / temperature).
    """

    output_kind = "similarity"

    def __init__(self) -> None:
        super().__init__()
        self._prompt_cache: tuple[tuple[str, ...], torch.Tensor] | None = None

    # -- the audio encoder's blocks: subclasses keep their audio encoder (an AudioClassifier such as
    # a Cnn14) as ``self.audio``, whose block API is the zero-shot model's --------------------------
    def blocks(self) -> list[nn.Module]:
        return self.audio.blocks()

    def block_names(self) -> list[str]:
        return self.audio.block_names()

    def block_channels(self) -> list[int]:
        return self.audio.block_channels()

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        """Every block output of the audio encoder, shallowest first."""
        return self.audio.features(inp)

    # -- to implement --------------------------------------------------------------------------
    def audio_projection(self, last: torch.Tensor) -> torch.Tensor:
        """The deepest block's output [B, C, T', F'] -> audio embedding [B, d] (before normalisation)."""
        raise NotImplementedError

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> text embeddings [P, d] (before normalisation), on the model's device."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLAP's learned inverse temperature (a positive scalar tensor)."""
        raise NotImplementedError

    # -- the contract --------------------------------------------------------------------------
    def audio_embedding_from_last(self, last: torch.Tensor) -> torch.Tensor:
        """Unit-norm audio embeddings [B, d] from the deepest block's output."""
        return F.normalize(self.audio_projection(last), dim=-1)

    def audio_embedding(self, inp: torch.Tensor) -> torch.Tensor:
        """Unit-norm audio embeddings [B, d] of network inputs (e.g. log-mel [B, 1, T, n_mels])."""
        return self.audio_embedding_from_last(self.features(inp)[-1])

    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings [P, d] of any prompts (seen in training or not)."""
        return F.normalize(self.encode_text(list(prompts)), dim=-1)

    def prompt_embeddings(self) -> torch.Tensor:
        """[C, d]: the embeddings of the class prompts, computed once per prompt list (no gradient).

        Raises ``RuntimeError`` when the model has no prompts.
        """
        if not self.prompts:
            raise RuntimeError("this zero-shot model has no class prompts (its ModelSpec sets them from the class names)")
        key = tuple(self.prompts)
        device = next(self.parameters()).device
        if self._prompt_cache is None or self._prompt_cache[0] != key or self._prompt_cache[1].device != device:
            with torch.no_grad():
                self._prompt_cache = (key, self.embed_text(list(key)).detach())
        return self._prompt_cache[1]

    def similarity(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities [B, P] of unit-norm audio [B, d] and text [P, d] embeddings."""
        return self.logit_scale * audio @ text.T

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """Deepest block output -> scores [B, C] over the class prompts (CLAP eq. 3)."""
        return self.similarity(self.audio_embedding_from_last(last), self.prompt_embeddings())

    def train(self, mode: bool = True) -> ZeroShotClassifier:
        self._prompt_cache = None  # weights may change in training
        return super().train(mode)


def prompt_phrase(class_name: str) -> str:
    """A class name as words for a prompt: ``crying_baby`` -> ``crying baby``."""
    return " ".join(class_name.replace("_", " ").replace("-", " ").split())


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a prompt template with exactly one ``{}`` for the class phrase (other
    fields such as ``{room}`` or ``{0}``, unmatched braces), or None. Literal braces are ``{{`` / ``}}``."""
    import string

    hint = "it must contain exactly one '{}' for the class name and no other braces (write '{{' for a literal brace)"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"model.template {template!r}: {exc}; {hint}"
    if fields != [""]:
        return f"model.template {template!r} has {len(fields)} field(s) {fields}; {hint}"
    return None


def class_prompts(class_names: list[str], template: str, overrides: dict[str, str] | None = None) -> list[str]:
    """One prompt per class: ``template`` (with ``{}``) filled with the class phrase (or its override).

    Raises ``ValueError`` when the template has no ``{}``.
    """
    problem = template_problem(template)
    if problem:
        raise ValueError(problem)
    overrides = overrides or {}
    return [template.format(overrides.get(c, prompt_phrase(c))) for c in class_names]
