"""A small text encoder for the embedded zero-shot model: words -> attention pooling -> embedding.

Tokens are lower-case words (``[a-z0-9]+``); words outside the vocabulary map to ``<unk>``, which
training also sees (word dropout), so a prompt with unseen words ("this is the sound of ...")
still embeds by the words the model knows. Order-free pooling lets a class phrase never seen as a
sequence in training ("chirp up") be understood from its words.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens of a text."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: list[str]) -> list[str]:
    """``<pad>``, ``<unk>``, then every word of ``texts`` in sorted order (deterministic)."""
    return [PAD, UNK, *sorted({w for t in texts for w in words(t)})]


class Tokenizer:
    """Texts -> padded token ids [N, L] and a mask [N, L] (True on words)."""

    def __init__(self, vocabulary: list[str]):
        self.vocabulary = list(vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        ids = [[self.index.get(w, 1) for w in words(t)] or [1] for t in texts]
        length = max(len(x) for x in ids)
        out = torch.zeros(len(ids), length, dtype=torch.long)
        for i, x in enumerate(ids):
            out[i, : len(x)] = torch.tensor(x)
        return out.to(device), (out != 0).to(device)


class WordEncoder(nn.Module):
    """Token ids [N, L] -> text embedding [N, dim] (unnormalised).

    Word embeddings pass a small MLP; a learned score per word weighs them (softmax over the
    words of a text); a linear projection maps the pooled vector to the shared space.
    """

    def __init__(self, vocab_size: int, width: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.score = nn.Linear(width, 1)
        self.proj = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h = h + self.mlp(h)
        score = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        pooled = (F.softmax(score, dim=1).unsqueeze(-1) * h).sum(dim=1)
        return self.proj(pooled)
