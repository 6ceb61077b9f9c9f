"""``clap_synth``: the embedded zero-shot model, a small CLAP trained in the harness (no download).

A dual encoder (Elizalde et al. 2023, CLAP): a CNN14-family audio encoder whose last layer
projects into a shared space of ``dim`` dimensions, a small word encoder
(:mod:`audiobench.models.text`) projecting into the same space, and a learned temperature. It is
trained with CLAP's symmetric cross-entropy (LMAC-ZS paper eq. 2) on the dataset's training clips
paired with generated captions (:mod:`audiobench.data.captions`: names, pitch, motion, rhythm,
loudness; mixtures captioned with both events). By default (``batching: one_per_class``) each batch
holds one clip of every class (in-batch negatives are never the same event); ``batching: random`` draws
plain shuffled batches of ``model.train.batch_size`` clips, as CLAP trains (Elizalde et al. 2023; LMAC-ZS
sec. 2.1, eq. 2: a batch of N (text, audio) pairs, every other pair a negative whatever its class), so a
batch may hold two clips of one class (see :func:`epoch_batches`). Silence (an all-zero input, what
an empty mask leaves) rides in every batch and is pulled to score each caption as the batch's unrelated clips do
(:func:`silence_anchor_loss`), so that "no evidence" and "evidence of another event" look alike to a
prompt, as in real CLAP (with ``batching: random`` the batch's other clips may include clips of the
caption's own class). The evaluation prompts (``template``, default "this is the
sound of {}") use a template no training caption uses. Deterministic from the seed; cached (and
shipped) like the classifier.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.component import Params
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import MODELS
from audiobench.data.base import ClipSet
from audiobench.data.captions import all_training_phrases, captions
from audiobench.data.contaminations import peak_normalise
from audiobench.kernel.artefacts import cached_artefact
from audiobench.kernel.batching import chunked
from audiobench.kernel.cache import cache_dir, stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.models.base import ModelSpec
from audiobench.models.cnn14 import Cnn14, conv_block_names
from audiobench.models.text import Tokenizer, WordEncoder, build_vocabulary
from audiobench.models.zeroshot import ZeroShotClassifier, class_prompts, template_problem

CLAP_SYNTH_CODE_VERSION = 1  # bump when training changes the weights
MAX_LOGIT_SCALE = 100.0  # CLAP clamps 1 / temperature at 100
Batching = Literal["one_per_class", "random"]
BATCHINGS: tuple[Batching, ...] = ("one_per_class", "random")


def epoch_batches(labels: torch.Tensor, n_classes: int, batching: Batching, batch_size: int,
                  gen: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch's training batches: indices into ``labels`` [N] (class ids in 0..``n_classes``-1), drawn
    from ``gen`` lazily, a batch at a time (the caller draws from ``gen`` between batches).

    * ``one_per_class``: each batch holds one clip of every class present, in random order; an epoch
      has as many batches as the smallest class has clips (the larger classes' surplus is left out,
      a fresh draw each epoch). ``batch_size`` is not read.
    * ``random``: a random permutation of all N clips cut into batches of ``batch_size`` (CLAP's
      plain shuffled batches); a trailing batch of fewer than 2 clips is left out (the contrastive
      loss needs two). Raises :class:`AudiobenchError` when ``batch_size`` < 2.
    """
    if batching == "one_per_class":
        by_class = [torch.nonzero(labels == c).flatten() for c in range(n_classes)]
        by_class = [ix for ix in by_class if len(ix)]
        steps = min(len(ix) for ix in by_class)
        cols = torch.stack([ix[torch.randperm(len(ix), generator=gen)[:steps]] for ix in by_class], dim=1)
        for step in torch.randperm(steps, generator=gen).tolist():
            yield cols[step][torch.randperm(cols.shape[1], generator=gen)]
    elif batching == "random":
        if batch_size < 2:
            raise AudiobenchError(f"model.batching random needs model.train.batch_size >= 2 (contrastive pairs), "
                                  f"got {batch_size}")
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) >= 2:
                yield idx
    else:
        raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}")


class SynthClap(ZeroShotClassifier):
    """CNN14-family audio encoder + word encoder; scores = logit_scale x cos(audio, prompt)."""

    def __init__(self, vocabulary: list[str], n_mels: int, width: int, depth: int, dim: int, text_width: int):
        super().__init__()
        self.audio = Cnn14(dim, n_mels=n_mels, width=width, depth=depth, dropout=0.0)  # fc_audioset: the projection
        self.tokenizer = Tokenizer(vocabulary)
        self.text = WordEncoder(len(vocabulary), text_width, dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def audio_projection(self, last: torch.Tensor) -> torch.Tensor:
        return self.audio.head(last)

    def encode_text(self, prompts: list[str], word_dropout: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
        device = self.log_scale.device
        ids, mask = self.tokenizer(prompts)
        if word_dropout > 0:  # replace words by <unk> so unseen words are learnt as uninformative
            drop = (torch.rand(ids.shape, generator=gen) < word_dropout) & mask
            ids = ids.masked_fill(drop, 1)
        return self.text(ids.to(device), mask.to(device))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def clap_loss(audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLAP's symmetric cross-entropy (LMAC-ZS eq. 2, averaged over the batch).

    ``audio``, ``text``: unit-norm [N, d], row i of each a pair. C = text @ audio.T; the loss is
    -1/2N sum_i (log softmax_t(C / tau)_ii + log softmax_a(C / tau)_ii).
    """
    logits = logit_scale * text @ audio.T
    target = torch.arange(len(audio), device=audio.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def silence_anchor_loss(audio: torch.Tensor, text: torch.Tensor, silent: torch.Tensor) -> torch.Tensor:
    """Mean over captions i of |t_i . s - mean_{j != i} t_i . a_j|: silence scores each caption as the
    batch's other (unrelated) clips do on average.

    ``audio``, ``text``: unit-norm [N, d], row i of each a pair (N >= 2); ``silent`` [d]: the unit-norm
    embedding of an all-zero input. The unrelated mean is a fixed target (no gradient): the term moves
    silence, not the clips. Why: LMAC-ZS (eq. 6) can shut a mask off only where the empty mask keeps the
    prompt's similarity, i.e. where t . f(0) is close to the clip's similarity to an unrelated prompt;
    in real CLAP, content-free audio and unrelated audio sit alike in the audio embeddings' cone.
    Without the term the embedded model scores silence anywhere in [-0.36, 0.59] against the prompts
    (0.24 from an unrelated clip's score on average).
    """
    with torch.no_grad():
        sim = text @ audio.T
        unrelated = (sim.sum(1) - sim.diagonal()) / (len(audio) - 1)
    return (text @ silent - unrelated).abs().mean()


@MODELS.register("clap_synth")
class ClapSynthSpec(ModelSpec):
    """Embedded zero-shot model: a small CLAP (CNN14-family audio encoder, word encoder) trained here."""

    display_name = "CLAP (embedded)"
    output_kind = "similarity"

    class Params(Params):
        width: int = Field(8, ge=1, description="channels of the audio encoder's first block")
        depth: int = Field(4, ge=2, le=6, description="conv blocks of the audio encoder")
        dim: int = Field(64, ge=2, description="dimension of the shared audio-text space")
        text_width: int = Field(64, ge=2, description="width of the word encoder")
        template: str = Field("this is the sound of {}", description="evaluation prompt; {} is the class phrase")
        prompts: dict[str, str] = Field(default_factory=dict, description="class name -> phrase, overriding the name's words")
        word_dropout: float = Field(0.15, ge=0, lt=1, description="share of caption words replaced by <unk> in training")
        faint_prob: float = Field(0.25, ge=0, le=1, description="share of training clips buried in noise and captioned faint")
        silence_anchor: float = Field(1.0, ge=0, description="weight of a term giving silence (an all-zero input: what "
                                      "an empty mask leaves) each caption's mean similarity to the batch's other clips: "
                                      "no evidence scores like unrelated audio")
        batching: Batching = Field(
            "one_per_class", description="one_per_class: each training batch holds one clip of every class; "
            "random: plain shuffled batches of model.train.batch_size clips, as CLAP (Elizalde et al. 2023; "
            "LMAC-ZS sec. 2.1, eq. 2), so two clips of a class can meet in a batch")
        added_fields: ClassVar[frozenset[str]] = frozenset({"batching"})

    def trained_conditions(self, train_params: Any) -> list[tuple[tuple[str, ...], str]]:
        """Mixtures (``model.train.mixture_prob``) and, with ``faint_prob``, white noise at -3 to 3 dB."""
        out = super().trained_conditions(train_params)
        if self.params.faint_prob > 0:
            out.append((("white_noise",), "white noise at -3 to 3 dB (faint_prob)"))
        return out

    def architecture(self) -> tuple[int, int]:
        """(width, depth) of the audio encoder."""
        return self.params.width, self.params.depth

    def block_names(self) -> list[str]:
        """The audio encoder's (a CNN14's): ``conv_block1`` ... ``conv_block<depth>``."""
        return conv_block_names(self.params.depth)

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> SynthClap:
        p = self.params
        vocabulary = build_vocabulary(all_training_phrases(class_names))
        model = SynthClap(vocabulary, n_mels, p.width, p.depth, p.dim, p.text_width)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        model.prompts = class_prompts(class_names, p.template, p.prompts)
        return model

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        problem = template_problem(self.params.template)
        return [problem] if problem else []

    def model_key(self, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
                  seed: int, augment: Any = ()) -> str:
        """The dual encoder's cache key: everything that shapes its weights (not the evaluation prompts)."""
        return stable_hash({"model": {"name": self.name, **self.params.model_dump(exclude={"template", "prompts"})},
                            "train": train_params.model_dump(), "classes": splits["train"].class_names,
                            "frontend": frontend.params.model_dump(), "data": data_fingerprint, "seed": seed,
                            "code": CLAP_SYNTH_CODE_VERSION})

    def train_model(
        self, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict, seed: int,
        device: torch.device, progress: bool = True, evaluated: str = "test", augment: Any = (),
    ) -> Any:
        """Train (or load from the cache) the dual encoder (``augment`` unused: it draws its own conditions); returns a ``TrainedClassifier`` whose
        ``info['accuracy'][evaluated]`` is the zero-shot accuracy with the evaluation prompts."""
        from audiobench.models.training import TrainedClassifier, accuracy, model_inputs

        classes = splits["train"].class_names
        key = self.model_key(train_params, splits, frontend, data_fingerprint, seed)
        folder = cache_dir() / "classifiers"
        weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
        torch.manual_seed(seed)
        model = self.build(classes, frontend.params.n_mels, frontend.params.sample_rate).to(device)
        feats = {s: model_inputs(model, frontend, splits[s], device) for s in (evaluated, "valid")}  # what it reads

        def fit() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            info = {"hash": key, **self._train(model, train_params, splits, frontend, seed, device, progress)}
            return {k: v.cpu() for k, v in model.state_dict().items()}, info | {"cached": False}

        state, info, cached = cached_artefact(weights, fit, meta, map_location=device)
        if cached:
            model.load_state_dict(state)
        info = info | {"cached": cached}
        model.eval()
        info["prompts"] = list(model.prompts or [])
        info["output_kind"] = "similarity"
        info["accuracy"] = {s: accuracy(model, feats[s], splits[s].labels.to(device)) for s in feats}
        info["zero_shot_accuracy"] = info["accuracy"][evaluated]
        return TrainedClassifier(model, info)

    def _train(self, model: SynthClap, tp: Any, splits: dict[str, ClipSet], frontend: Frontend, seed: int,
               device: torch.device, progress: bool) -> dict[str, Any]:
        from audiobench.models.augment import mask_batch, mix_rows

        p = self.params
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        train, valid = splits["train"], splits["valid"]
        classes = train.class_names
        wave = peak_normalise(train.subset(slice(None))).waveforms.to(device)
        labels = train.labels
        opt = torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
        valid_wave = peak_normalise(valid.subset(slice(None))).waveforms.to(device)
        vgen = torch.Generator().manual_seed(seed + 1)
        valid_text = captions(classes, valid.labels, vgen)

        def train_epoch() -> dict[str, float]:
            means = TermMeans()
            for idx in epoch_batches(labels, len(classes), p.batching, tp.batch_size, gen):
                x, lab = wave[idx.to(device)], labels[idx]
                n = len(idx)
                mixed = torch.rand(n, generator=gen) < tp.mixture_prob
                shift = 1 + int(torch.randint(max(1, n - 1), (1,), generator=gen))
                partner = torch.roll(torch.arange(n), shift)
                if p.batching == "random":  # a partner of another class only (one_per_class: always the case)
                    mixed &= lab[partner] != lab
                snr = tp.mixture_snr_db[0] + (tp.mixture_snr_db[1] - tp.mixture_snr_db[0]) * torch.rand(n, generator=gen)
                x = mix_rows(x, x[partner.to(device)], snr.to(device), mixed.to(device))
                faint = torch.rand(n, generator=gen) < p.faint_prob
                noise = torch.randn(x.shape, generator=gen).to(device)
                x = mix_rows(x, noise, (torch.rand(n, generator=gen) * 6 - 3).to(device), faint.to(device))
                loud = torch.where(faint, 0, 1 + torch.randint(2, (n,), generator=gen))
                text = captions(classes, lab, gen, loud, torch.where(mixed, lab[partner], -1))
                inp = frontend.logmel(x)
                if tp.mask_augment > 0:
                    inp = mask_batch(inp, tp.mask_augment, gen)
                if p.silence_anchor > 0:  # in the same batch: batch norm sees it among real clips
                    inp = torch.cat([inp, torch.zeros_like(inp[:1])])
                a = model.audio_embedding(inp)
                a, silent = a[:n], a[n:]
                t = F.normalize(model.encode_text(text, p.word_dropout, gen), dim=-1)
                loss = clap_loss(a, t, model.logit_scale)
                if p.silence_anchor > 0:
                    loss = loss + p.silence_anchor * silence_anchor_loss(a, t, silent[0])
                opt.zero_grad()
                loss.backward()
                opt.step()
                means.add({"loss": loss, "logit_scale": model.logit_scale}, n)
            return means.means("train_")

        @torch.no_grad()
        def validate() -> dict[str, float]:
            a = chunked(lambda w: model.audio_embedding(frontend.logmel(w)), valid_wave)
            t = model.embed_text(valid_text)
            # retrieval: is the clip's own caption's class the most similar among the classes' captions?
            return {"valid_loss": float(clap_loss(a, t, model.logit_scale))}

        fitted = fit_epochs([model], tp.epochs, train_epoch, validate, "valid_loss", mode="min",
                            desc="train zero-shot model", progress=progress)
        return {"model": {"name": self.name, **p.model_dump(mode="json")}, "train": tp.model_dump(),
                "selected_by": fitted["selected_by"], "best_epoch": fitted["best_epoch"], "history": fitted["history"],
                "seconds": round(time.perf_counter() - start, 2)}

