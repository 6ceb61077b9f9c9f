"""A trained interpreter's weights depend on the seed alone, never on what the process drew before its fit.

The runner fits a method when its first cell comes up, after whatever the earlier cells drew from torch's
global generator; a decoder built (or a lazy layer initialised) before the fit seeded itself took its initial
weights from that history, so the same cache key could hold different weights under another method order, a
``--cell`` process or a worker executor. Each fit below runs twice, after different global draws and into
different caches, and must give the same weights bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.methods.base import DomainModel, FitContext
from audiobench.methods.lmac import LMAC
from audiobench.methods.lmac_td import LMACTD
from audiobench.methods.piq import PIQ
from audiobench.models.cnn14 import Cnn14
from audiobench.testing import _tones

CASES = {
    "lmac": (LMAC, {"epochs": 1, "hidden": 4, "blocks": 2, "batch_size": 8}, "decoder"),
    "lmac, a named block (lazy projections)": (LMAC, {"epochs": 1, "hidden": 4, "blocks": ["conv_block2.conv2"],
                                                     "batch_size": 8}, "decoder"),
    "piq": (PIQ, {"epochs": 1, "codebook_size": 16, "dim": 8, "batch_size": 4}, "decoder"),
    "lmac_td": (LMACTD, {"epochs": 1, "n_filters": 16, "channels": 16, "chunk": 20, "intra_layers": 1,
                         "inter_layers": 1, "heads": 2, "ffn": 16, "hidden": 4, "batch_size": 4}, "net"),
}


def _weights(cls, params: dict, attr: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, draws: int) -> dict:
    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    clf = Cnn14(3, n_mels=32, width=4, depth=2).eval().requires_grad_(False)
    clf.class_names = ["c0", "c1", "c2"]
    model = DomainModel(clf, Stft2Mel(), frontend).eval()
    clips = _tones(12, 3)
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp / "cache"))  # a fresh cache: the fit trains
    torch.manual_seed(1234 + draws)
    torch.rand(draws)  # what earlier cells of a run would have drawn
    ctx = FitContext(model=model, train=clips, valid=clips, augment=[], seed=0, device=torch.device("cpu"),
                     identity={"test_fit_seeding": "same key"}, log_dir=tmp / "logs", progress=False)
    method = cls(params)
    assert method.fit(ctx)["cached"] is False
    return {k: v.clone() for k, v in getattr(method, attr).state_dict().items()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_fit_does_not_depend_on_the_global_generator_before_it(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls, params, attr = CASES[case]
    first = _weights(cls, params, attr, tmp_path / "a", monkeypatch, draws=3)
    second = _weights(cls, params, attr, tmp_path / "b", monkeypatch, draws=17)
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first), [k for k in first if not torch.equal(first[k], second[k])]
