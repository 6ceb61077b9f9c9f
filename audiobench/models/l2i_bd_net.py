"""The network and loss of L2I by design (:mod:`audiobench.models.l2i_bd`): g(x) = Theta(Psi(f_I(x))), its
training objective and the NMF's grid X = log1p|STFT|."""

from __future__ import annotations

import torch

from audiobench.contracts.frontend import Frontend
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.blocks import blocks_problem
from audiobench.methods.l2i_parts import Psi, Theta, l2i_loss
from audiobench.models.base import AudioClassifier, probabilities, training_loss
from audiobench.models.cnn14 import Cnn14

PREDICTIONS = ("f", "g", "posthoc")
ROW_NAMES = {"f": "L2I BD w/ ATT", "g": "L2I BD-NoPred", "posthoc": "L2I-PostHoc"}  # Table VIII's names


def block_indices(blocks: int | list[int], depth: int) -> list[int]:
    """1-based indices of the blocks Psi reads: the ``blocks`` deepest, or the listed ones (sorted).
    Raises ``ValueError`` when they do not fit a network of ``depth`` blocks."""
    problem = blocks_problem(blocks, depth, "l2i_bd")
    if problem:
        raise ValueError(problem)
    return list(range(depth - blocks + 1, depth + 1)) if isinstance(blocks, int) else sorted(blocks)


class L2IByDesign(AudioClassifier):
    """g(x) = Theta(Psi(f_I(x))): log1p-mel [B, 1, T, n_mels] -> Theta's logits [B, C].

    ``f``: the CNN14 (its head gives f(x), the prediction-loss branch); ``block_idx``: the 1-based blocks
    Psi reads; ``k`` components; ``channels``: Psi's width; ``pooling``: Theta's; ``n_freq``: the STFT
    bins of the dictionary buffer ``W`` [n_freq, k] (set by training, saved with the weights). The blocks,
    features and channels are f's, so gradient and CAM methods read the same layers as on a CNN14.
    """

    def __init__(self, f: Cnn14, block_idx: list[int], k: int, channels: int | None, pooling: str, n_freq: int):
        super().__init__()
        self.f, self.block_idx = f, list(block_idx)
        self.output_kind = f.output_kind
        self.class_names, self.sample_rate = f.class_names, f.sample_rate
        frames = max(16, 2 ** (f.n_blocks + 1))
        was = f.training
        f.eval()
        with torch.no_grad():
            feats = f.features(torch.zeros(1, 1, frames, f.n_mels))
        f.train(was)
        dims = [(feats[i - 1].shape[1], feats[i - 1].shape[3]) for i in self.block_idx]
        self.psi = Psi(dims, k, channels or min(c for c, _ in dims))
        self.theta = Theta(k, f.n_classes, pooling)
        self.register_buffer("W", torch.zeros(n_freq, k))

    def blocks(self) -> list[torch.nn.Module]:
        return self.f.blocks()

    def block_names(self) -> list[str]:
        return self.f.block_names()

    def block_channels(self) -> list[int]:
        return self.f.block_channels()

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        return self.f.features(inp)

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """Not defined: g's scores read several blocks (:meth:`forward`). Raises :class:`AudiobenchError`."""
        raise AudiobenchError("l2i_bd's scores come from its interpreter, which reads several blocks: call the model "
                              "(forward), not head(); post-hoc interpreters that read head (l2i) do not explain it")

    def activations(self, feats: list[torch.Tensor], n_frames: int) -> torch.Tensor:
        """H [B, K, n_frames] >= 0 from every block's output ``feats`` (Psi on the chosen ones)."""
        return self.psi([feats[i - 1] for i in self.block_idx], n_frames)

    def outputs(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass: (f's logits [B, C], H [B, K, T], g's logits [B, C]) for a network input [B, 1, T, M]."""
        feats = self.f.features(inp)
        H = self.activations(feats, inp.shape[2])
        return self.f.head(feats[-1]), H, self.theta(H)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        feats = self.f.features(inp)
        return self.theta(self.activations(feats, inp.shape[2]))


def by_design_loss(
    W: torch.Tensor, H: torch.Tensor, x: torch.Tensor, g_logits: torch.Tensor, f_logits: torch.Tensor,
    labels: torch.Tensor, prediction: str, output_kind: str, alpha: float, beta: float, gamma: float,
    reduction: str = "ours", label_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The by-design loss and its unweighted terms (``loss``, ``pred``, ``recon``, ``l1``, ``fid_ce``).

    ``W`` [F, K], ``H`` [B, K, T], ``x`` [B, T, F] the log-magnitude spectrogram, ``g_logits`` (Theta's)
    and ``f_logits`` (f's head) [B, C], ``labels`` [B] class indices or [B, C] multi-hot (``label_mask``
    [B, C] bool: the known pairs). recon, l1 and fid_ce are :func:`l2i_loss`'s under ``reduction``, fid_ce
    against f's probabilities detached (soft targets); pred is :func:`training_loss` (CE, or BCE per
    known label) of f (``prediction`` ``f``: the journal's sec. III-C) or of g (``g``: BD-NoPred), and
    loss = gamma * pred + alpha * recon + beta * l1 (+ fid_ce for ``f``). ``posthoc``'s interpreter phase:
    loss = fid_ce + alpha * recon + beta * l1 (pred logged, not added; f is frozen there).
    Raises ``ValueError`` for another ``prediction``.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, not {prediction!r}")
    target = probabilities(f_logits.detach(), output_kind)  # type: ignore[arg-type]
    terms = l2i_loss(W, H, x, g_logits, target, alpha, beta, reduction, output_kind)
    scored = g_logits if prediction == "g" else f_logits
    pred = training_loss(scored, labels, output_kind, label_mask)  # type: ignore[arg-type]
    base = alpha * terms["recon"] + beta * terms["l1"]
    loss = {"f": gamma * pred + terms["fid_ce"] + base, "g": gamma * pred + base, "posthoc": terms["fid_ce"] + base}
    return {**terms, "loss": loss[prediction], "pred": pred}


def reconstruction_grid(frontend: Frontend, wave: torch.Tensor) -> torch.Tensor:
    """The NMF's and L_NMF's X: log1p|STFT| of waveforms [B, L] -> [B, T, n_fft/2 + 1] (the journal's sec. III-A)."""
    return torch.log1p(frontend.stft(wave).abs()).squeeze(1)
