"""ROAR: removal masks, and a known answer: removing the informative bins destroys accuracy, random bins do not."""

from __future__ import annotations

import pytest
import torch

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.models.cnn14 import Cnn14Spec
from audiobench.sanity.roar import removal_mask, roar_curve


def test_removal_mask_removes_the_top_share_exactly():
    scores = torch.arange(20.0).view(1, 1, 4, 5).repeat(2, 1, 1, 1)
    r = removal_mask(scores, 0.25, seed=0)
    assert r.sum(dim=(1, 2, 3)).tolist() == [5.0, 5.0]
    assert r[0].flatten().nonzero().flatten().tolist() == [15, 16, 17, 18, 19]
    assert removal_mask(scores, 0.0, 0).sum() == 0 and removal_mask(scores, 1.0, 0).sum() == 40
    # ties (a constant map) are broken by the seeded jitter: deterministic, and another seed picks other bins
    flat = torch.zeros(1, 1, 10, 10)
    a, b, c = removal_mask(flat, 0.3, 1), removal_mask(flat, 0.3, 1), removal_mask(flat, 0.3, 2)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.sum() == 30
    rnd = removal_mask(None, 0.5, 3, torch.Size([2, 1, 4, 4]))
    assert rnd.sum(dim=(1, 2, 3)).tolist() == [8.0, 8.0]
    with pytest.raises(ValueError, match="fraction"):
        removal_mask(scores, 1.5, 0)


def _data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel-like inputs [n, 1, 16, 16]: noise everywhere, and the class (0-3) is the level of a patch
    at the same place in every clip (frames 0-3, bands 0-3); the oracle saliency is that patch.

    The patch is at one place for every class, so the removal pattern itself says nothing about the
    class (where it did, the holes would leak it: the known caveat of ROAR, Rong et al. 2022)."""
    y = torch.arange(n) % 4
    x = 0.5 * torch.rand(n, 1, 16, 16, generator=gen)
    sal = torch.zeros_like(x)
    sal[:, :, :4, :4] = 1.0
    return x + sal * (1.0 + y.view(-1, 1, 1, 1).float()), y, sal


def test_removing_the_informative_bins_is_worse_than_random_removal():
    gen = torch.Generator().manual_seed(0)
    x_train, y_train, s_train = _data(64, gen)
    x_test, y_test, s_test = _data(32, gen)
    frontend = Frontend(FrontendParams(n_fft=64, win_length=64, hop_length=32, n_mels=16))

    def build():
        return Cnn14Spec({"width": 4, "depth": 2}).build(["a", "b", "c", "d"], 16, 16000)

    kw = dict(fractions=[0.1], seeds=[0, 1], epochs=25, lr=0.01, batch_size=16, device=torch.device("cpu"))
    informed = roar_curve(build, Mel(), frontend, x_train, y_train, s_train, x_test, y_test, s_test, **kw)
    random = roar_curve(build, Mel(), frontend, x_train, y_train, None, x_test, y_test, None, **kw)
    # 10 % = 26 bins per clip: the 16 informative bins are all gone; random removal leaves ~90 % of them
    acc_informed = sum(informed.values()) / 2
    acc_random = sum(random.values()) / 2
    # (measured: about 0.2 and 0.75; small trainings are noisy, hence the margins)
    assert acc_informed < 0.4  # chance is 0.25
    assert acc_random > 0.55 and acc_random - acc_informed > 0.3
    # resuming: given results are kept and not recomputed
    calls = []
    again = roar_curve(build, Mel(), frontend, x_train, y_train, None, x_test, y_test, None, **kw, done=random,
                       on_result=lambda *a: calls.append(a))
    assert again == random and calls == []
