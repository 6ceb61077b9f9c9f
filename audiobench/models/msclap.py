"""``msclap``: Microsoft CLAP 2022 (the checkpoint the LMAC-ZS paper explains), loaded from local files.

CLAP (Elizalde et al., ICASSP 2023; package ``msclap``, https://github.com/microsoft/CLAP) is a
dual encoder: a PANNs CNN14 audio encoder, a BERT-base text encoder (``bert-base-uncased``,
CLS token), each followed by a projection into a shared 1024-d space, and a learned temperature.
This adapter rebuilds that network on the harness's model contract and loads the released
weights ``CLAP_weights_2022.pth`` (https://zenodo.org/record/8378278, or the ``microsoft/msclap``
repository on Hugging Face). Nothing is downloaded: the checkpoint and the BERT folder (its
``config.json`` and tokenizer files, e.g. ``vocab.txt``) are local paths from the suite; the BERT
*weights* come from the CLAP checkpoint (``caption_encoder.base.*``), not from the folder.

Checkpoint layout (msclap 1.3.4, ``msclap/models/clap.py`` and ``configs/config_2022.yml``): a
file ``{"model": state_dict}`` whose keys are

==========================================  ==============================================
msclap key                                   here
==========================================  ==============================================
``audio_encoder.base.{bn0,conv_block1..6,``  ``audio.*`` (:class:`~audiobench.models.cnn14.Cnn14`,
``fc1,fc_audioset}.*``                        PANNs names: 64 mel bands, width 64, depth 6)
``audio_encoder.base.logmel_extractor.melW`` ``mel_basis`` [513, 64]: librosa's slaney filters
``audio_encoder.base.spectrogram_extractor.`` not used: the harness computes the STFT (the same
``stft.conv_{real,imag}.weight``              hann window, 1024 samples, hop 320)
``audio_encoder.projection.*``                ``audio_proj.*`` (linear1, linear2, layer_norm)
``caption_encoder.base.*``                    ``text.*`` (a ``transformers`` BertModel)
``caption_encoder.projection.*``              ``text_proj.*``
``logit_scale``                               ``log_scale`` (log of 1/temperature)
==========================================  ==============================================

``*.position_ids`` / ``*.token_type_ids`` buffers, which older ``transformers`` versions saved,
are accepted and dropped. msclap itself loads with ``strict=False``; here every other key must be
consumed and every parameter filled (one-line errors otherwise). Architecture sizes (width,
depth, embedding and projection sizes, AudioSet head) are read off the checkpoint's shapes; the
BERT sizes come from the folder's ``config.json``.

Audio path. msclap's CNN14 reads a 44.1 kHz waveform (5 s; shorter clips are tiled, longer ones
cropped at random) and computes ``10 log10(max(|STFT|^2 @ melW, 1e-10))`` (torchlibrosa,
``power_to_db`` with ref 1, no top_db), then ``bn0`` and the conv blocks. Here the network reads
the harness's masked representation: :meth:`MsClap.network_input` takes the dB mel the domain
stands for (:meth:`Domain.to_db_mel`): ``10 log10(max(expm1(.), 1e-10))`` of the log1p-mel of the
``stft2mel`` grids and of the default ``mel`` grid, so there the mask multiplies the log1p-mel (or
the STFT), not CLAP's feature; the grid itself under ``mel{grid: db}``, whose mask multiplies CLAP's
dB log-mel directly (the LMAC-ZS paper's Mel masking, sec. 3.2). That is CLAP's input exactly when the
suite's front end is CLAP's: 44.1 kHz, ``n_fft``/``win_length`` 1024, hop 320, ``window: hann``,
64 mel bands from 50 to 14000 Hz, ``mel_scale: slaney``, ``mel_norm: slaney``, ``mel_power: 2``
(the front end's filterbank must then equal the checkpoint's ``melW``; a mismatch is an error at
the first input). Differences from msclap that remain: the harness fits clips to the dataset's
``seconds`` by zero-padding (msclap tiles short clips) and peak-normalises every clip (msclap reads
the file's level; CNN14's ``bn0`` uses running statistics, so a level change shifts its input).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.component import Params
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import ModelSpec
from audiobench.models.cnn14 import Cnn14
from audiobench.models.zeroshot import ZeroShotClassifier, class_prompts, template_problem

if TYPE_CHECKING:
    from audiobench.contracts.domains import Domain
    from audiobench.contracts.frontend import Frontend

CLAP_URL = "https://zenodo.org/record/8378278 (CLAP_weights_2022.pth; also https://huggingface.co/microsoft/msclap)"
BERT_URL = ("https://huggingface.co/google-bert/bert-base-uncased (config.json, vocab.txt, tokenizer_config.json; "
            "the weights are not needed)")
SAMPLE_RATE = 44100  # config_2022.yml: sampling_rate
#: the front end CLAP 2022 reads (config_2022.yml and torchlibrosa's defaults): what the spec declares
CLAP_FRONTEND = {"sample_rate": SAMPLE_RATE, "n_fft": 1024, "win_length": 1024, "hop_length": 320, "window": "hann",
                 "n_mels": 64, "f_min": 50.0, "f_max": 14000.0, "mel_scale": "slaney", "mel_norm": "slaney", "mel_power": 2}
AMIN = 1e-10  # torchlibrosa power_to_db
# msclap key prefix -> our prefix (a key maps by its longest matching prefix)
PREFIXES: dict[str, str] = {
    "audio_encoder.base.logmel_extractor.melW": "mel_basis",
    "audio_encoder.base.": "audio.",
    "audio_encoder.projection.": "audio_proj.",
    "caption_encoder.base.": "text.",
    "caption_encoder.projection.": "text_proj.",
    "logit_scale": "log_scale",
}
UNUSED_PREFIXES = ("audio_encoder.base.spectrogram_extractor.",)  # the STFT kernels: the harness computes the STFT
UNUSED_SUFFIXES = (".position_ids", ".token_type_ids")  # buffers older transformers saved in the state dict


class Projection(nn.Module):
    """msclap's projection head: ``LayerNorm(h + dropout(W2 gelu(h)))`` with ``h = W1 x`` (no biases).

    Shapes: [N, d_in] -> [N, d_out]. Dropout 0.5 (active in training only), as msclap.
    """

    def __init__(self, d_in: int, d_out: int, p: float = 0.5):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        return self.layer_norm(h + self.drop(self.linear2(F.gelu(h))))


def map_key(key: str) -> str | None:
    """The adapter's name for an msclap state-dict key; ``None`` for keys that are read and dropped.

    Raises ``KeyError`` for a key that belongs to no part of CLAP's layout.
    """
    key = key.removeprefix("module.")
    if key.startswith(UNUSED_PREFIXES) or key.endswith(UNUSED_SUFFIXES):
        return None
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return PREFIXES[prefix] + key[len(prefix):]
    raise KeyError(key)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The msclap state dict in ``path`` (``{"model": state_dict}`` or bare), on the CPU.

    Raises :class:`AudiobenchError` (one line, saying where to get the file) when the file is
    missing, unreadable, or holds no CLAP state dict.
    """
    from audiobench.models.checkpoint import _load_file

    path = Path(path)
    if not path.is_file():
        raise AudiobenchError(f"model.checkpoint: {path} not found; get CLAP_weights_2022.pth from {CLAP_URL}")
    raw = _load_file(path)
    state = raw.get("model", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AudiobenchError(f"model.checkpoint: {path} holds no state dict (expected {{'model': state_dict}})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for needed in ("audio_encoder.base.conv_block1.conv1.weight", "caption_encoder.projection.linear1.weight", "logit_scale"):
        if needed not in state:
            raise AudiobenchError(
                f"model.checkpoint: {path} is not a Microsoft CLAP (msclap, CNN14 + BERT) checkpoint: it has no "
                f"key {needed!r}; get CLAP_weights_2022.pth from {CLAP_URL}"
            )
    return state


class MsClap(ZeroShotClassifier):
    """Microsoft CLAP 2022: CNN14 audio encoder + BERT text encoder, scores = logit_scale x cos.

    Network input: CLAP's dB log-mel [B, 1, T, 64] (:meth:`network_input`); embeddings [B, d_proj]
    and [P, d_proj]. ``tokenizer`` is a ``transformers`` tokenizer; ``bert_config`` a ``BertConfig``.
    """

    def __init__(self, bert_config: Any, tokenizer: Any, *, n_mels: int = 64, width: int = 64, depth: int = 6,
                 n_audioset: int = 527, d_proj: int = 1024, n_freqs: int = 513, text_len: int = 100, text_batch: int = 32):
        from transformers import BertModel

        super().__init__()
        self.audio = Cnn14(n_audioset, n_mels=n_mels, width=width, depth=depth, dropout=0.2)
        self.register_buffer("mel_basis", torch.zeros(n_freqs, n_mels))
        emb = width * 2 ** (depth - 1)
        self.audio_proj = Projection(emb, d_proj)
        self.text = BertModel(bert_config, add_pooling_layer=True)
        self.text_proj = Projection(bert_config.hidden_size, d_proj)
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.tokenizer = tokenizer
        self.text_len, self.text_batch = text_len, text_batch
        self._frontend_checked: int | None = None

    # the block API is the audio encoder's (``self.audio``, PANNs Cnn14 reading dB log-mel; ZeroShotClassifier)

    # -- zero-shot contract ---------------------------------------------------------------------
    def audio_projection(self, last: torch.Tensor) -> torch.Tensor:
        """Last block [B, C, T', F'] -> PANNs pooling, ``relu(fc1)`` (msclap's 'embedding'), projection: [B, d_proj]."""
        x = last.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = self.audio.relu_fc(self.audio.fc1(self.audio.dropout(x)))
        return self.audio_proj(x)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """msclap's text preprocessing: special tokens, padded to ``text_len`` tokens (truncated beyond)."""
        tok = self.tokenizer(list(prompts), add_special_tokens=True, max_length=self.text_len, padding="max_length",
                             truncation=True, return_tensors="pt")
        return {k: tok[k] for k in ("input_ids", "token_type_ids", "attention_mask") if k in tok}

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> text embeddings [P, d_proj] (BERT's CLS token, projected), ``text_batch`` prompts at a time."""
        device = self.log_scale.device
        out = []
        for i in range(0, len(prompts), self.text_batch):
            tok = {k: v.to(device) for k, v in self.tokenize(prompts[i : i + self.text_batch]).items()}
            hidden = self.text(**tok)[0]  # last hidden state [n, L, hidden]
            out.append(self.text_proj(hidden[:, 0, :]))
        if not out:
            return torch.zeros(0, self.text_proj.linear1.out_features, device=device)
        return torch.cat(out)

    @property
    def logit_scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` of the checkpoint (msclap's ``compute_similarity``; not clamped)."""
        return self.log_scale.exp()

    # -- input -----------------------------------------------------------------------------------
    def network_input(self, domain: Domain, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        """A (masked) representation [B, 1, T, F] -> CLAP's dB log-mel ``10 log10(max(mel, 1e-10))`` [B, 1, T, 64].

        :meth:`Domain.to_db_mel`: ``mel`` = ``expm1`` of the log1p-mel the domain stands for (CLAP's
        ``|STFT|^2 @ melW`` when the front end is CLAP's, module docstring), or, on ``mel{grid: db}``,
        the masked grid itself (the mask multiplies CLAP's own feature, LMAC-ZS sec. 3.2). Raises
        :class:`AudiobenchError` (one line) when the front end's filterbank is not the checkpoint's
        ``melW`` or it reads magnitudes.
        """
        self._check_frontend(frontend)
        return domain.to_db_mel(frontend, x)

    def _check_frontend(self, frontend: Frontend) -> None:
        if self._frontend_checked == id(frontend):
            return
        p = frontend.params
        want = ("frontend: msclap needs CLAP's front end (sample_rate 44100, n_fft 1024, win_length 1024, hop_length 320, "
                "window hann, n_mels 64, f_min 50, f_max 14000, mel_scale slaney, mel_norm slaney, mel_power 2)")
        if p.mel_power != 2:
            raise AudiobenchError(f"{want}; this one has mel_power {p.mel_power}")
        fb = frontend.mel_fb.to(self.mel_basis)
        if fb.shape != self.mel_basis.shape:
            raise AudiobenchError(f"{want}; its filterbank is {tuple(fb.shape)}, the checkpoint's melW {tuple(self.mel_basis.shape)}")
        err = float((fb - self.mel_basis).abs().max() / self.mel_basis.abs().max().clamp_min(1e-12))
        if err > 1e-3:
            raise AudiobenchError(f"{want}; its mel filterbank differs from the checkpoint's melW by {err:.2g} (relative)")
        self._frontend_checked = id(frontend)


def load_msclap(model: MsClap, state: dict[str, torch.Tensor], path: str | Path = "<checkpoint>") -> None:
    """Copy an msclap state dict into ``model`` with strict key and shape checks (see the module table).

    Raises :class:`AudiobenchError` (one line) naming the first unknown key, missing parameter or
    shape mismatch, and how many there are.
    """
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in state.items():
        try:
            ours = map_key(k)
        except KeyError:
            unknown.append(k)
            continue
        if ours is None:
            continue
        if ours not in own:
            unknown.append(k)
            continue
        if own[ours].shape != v.shape:
            raise AudiobenchError(
                f"model.checkpoint: {path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[ours].shape)} "
                f"(is text_model the BERT the checkpoint was trained with?)"
            )
        mapped[ours] = v
    if unknown:
        raise AudiobenchError(f"model.checkpoint: {path}: {len(unknown)} keys outside the msclap CLAP layout, e.g. {unknown[0]!r}")
    missing = [k for k in own if k not in mapped and not k.endswith(UNUSED_SUFFIXES)]
    if missing:
        raise AudiobenchError(f"model.checkpoint: {path}: {len(missing)} parameters missing from the checkpoint, e.g. {missing[0]!r}")
    model.load_state_dict(mapped, strict=False)


def architecture(state: dict[str, torch.Tensor], path: str | Path = "<checkpoint>") -> dict[str, int]:
    """Sizes read off an msclap state dict: n_mels, width, depth, n_audioset, d_proj, n_freqs.

    Raises :class:`AudiobenchError` (one line) when a key the sizes are read from is absent.
    """
    depth = 0
    while f"audio_encoder.base.conv_block{depth + 1}.conv1.weight" in state:
        depth += 1
    try:
        return {
            "n_mels": int(state["audio_encoder.base.bn0.weight"].shape[0]),
            "width": int(state["audio_encoder.base.conv_block1.conv1.weight"].shape[0]),
            "depth": depth,
            "n_audioset": int(state["audio_encoder.base.fc_audioset.weight"].shape[0]),
            "d_proj": int(state["audio_encoder.projection.linear1.weight"].shape[0]),
            "n_freqs": int(state["audio_encoder.base.logmel_extractor.melW"].shape[0]),
        }
    except KeyError as exc:
        raise AudiobenchError(f"model.checkpoint: {path} lacks {exc.args[0]!r}; get CLAP_weights_2022.pth from {CLAP_URL}") from None


def text_model_problem(folder: Path | None) -> str | None:
    """Why ``folder`` cannot serve as CLAP's BERT folder (config and tokenizer files), or None."""
    if folder is None:
        return f"model.text_model: not set; give the bert-base-uncased folder from {BERT_URL}"
    folder = Path(folder)
    if not folder.is_dir():
        return f"model.text_model: {folder} not found; get the bert-base-uncased folder from {BERT_URL}"
    if not (folder / "config.json").is_file():
        return f"model.text_model: {folder} has no config.json; get it from {BERT_URL}"
    if not any((folder / f).is_file() for f in ("vocab.txt", "tokenizer.json")):
        return f"model.text_model: {folder} has no tokenizer files (vocab.txt or tokenizer.json); get them from {BERT_URL}"
    return None


@MODELS.register("msclap")
class MsClapSpec(ModelSpec):
    """Microsoft CLAP 2022 (CNN14 + BERT), zero-shot, from local weights (the LMAC-ZS paper's model)."""

    display_name = "CLAP (Microsoft, 2022)"
    output_kind = "similarity"
    trainable = False

    class Params(Params):
        checkpoint: Path | None = Field(None, description="CLAP_weights_2022.pth (zenodo record 8378278 / microsoft/msclap)")
        text_model: Path | None = Field(None, description="local bert-base-uncased folder: config.json and tokenizer files")
        template: str = Field("this is the sound of {}", description="zero-shot prompt; {} is the class phrase (the paper's)")
        prompts: dict[str, str] = Field(default_factory=dict, description="class name -> phrase, overriding the name's words")
        text_len: int = Field(100, ge=8, le=512, description="tokens per prompt, padded (config_2022.yml: text_len)")
        text_batch: int = Field(32, ge=1, description="prompts embedded at once")

    def required_frontend(self) -> dict[str, Any]:
        """CLAP 2022's front end (config_2022.yml; torchlibrosa's power mel on slaney filters)."""
        return dict(CLAP_FRONTEND)

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        """Missing or unusable files (checkpoint, BERT folder) and settings, one line each, with where to get them."""
        p = self.params
        problems = []
        if template_problem(p.template):
            problems.append(template_problem(p.template))
        if p.checkpoint is None:
            problems.append(f"model.checkpoint: not set; get CLAP_weights_2022.pth from {CLAP_URL}")
        elif not Path(p.checkpoint).is_file():
            problems.append(f"model.checkpoint: {p.checkpoint} not found; get CLAP_weights_2022.pth from {CLAP_URL}")
        else:  # read (memory-mapped), so a wrong or damaged file is named before a run
            try:
                sizes = architecture(read_state(Path(p.checkpoint)), p.checkpoint)
                if n_mels is not None and sizes["n_mels"] != n_mels:
                    problems.append(f"model.checkpoint: {p.checkpoint} reads {sizes['n_mels']} mel bands, frontend.n_mels is {n_mels}")
                    n_mels = None
            except AudiobenchError as exc:
                problems.append(str(exc))
        problem = text_model_problem(p.text_model)
        if problem:
            problems.append(problem)
        if n_mels is not None and n_mels != 64:
            problems.append(f"frontend.n_mels is {n_mels}; CLAP's CNN14 reads 64 mel bands (set frontend as suites/esc50_zs.yaml)")
        return problems

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = SAMPLE_RATE) -> MsClap:
        """CLAP with the checkpoint's weights and the folder's tokenizer, prompts from ``template``.

        Raises :class:`AudiobenchError` (one line) for a missing or wrong file, a sample rate or mel
        band count that is not CLAP's, or ``transformers`` not installed (``pip install 'audiobench[clap]'``).
        """
        p = self.params
        problems = self.check(n_mels=n_mels)
        if problems:
            raise AudiobenchError(problems[0])
        if sample_rate != SAMPLE_RATE:
            raise AudiobenchError(f"frontend.sample_rate is {sample_rate}; CLAP 2022 was trained on {SAMPLE_RATE} Hz audio")
        try:
            from transformers import AutoTokenizer, BertConfig
        except ImportError as exc:
            raise AudiobenchError("model msclap needs transformers: pip install -c constraints.txt 'audiobench[clap]'") from exc
        state = read_state(Path(p.checkpoint))
        sizes = architecture(state, p.checkpoint)
        if sizes["n_mels"] != n_mels:
            raise AudiobenchError(f"model.checkpoint: {p.checkpoint} reads {sizes['n_mels']} mel bands, frontend.n_mels is {n_mels}")
        folder = Path(p.text_model)
        try:
            config = BertConfig.from_pretrained(str(folder), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AudiobenchError(f"model.text_model: {folder} is not a usable BERT folder ({first}); see {BERT_URL}") from exc
        model = MsClap(config, tokenizer, text_len=p.text_len, text_batch=p.text_batch, **sizes)
        load_msclap(model, state, p.checkpoint)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        model.prompts = class_prompts(list(class_names), p.template, p.prompts)
        return model.eval()
