"""ROAR: RemOve And Retrain (Hooker et al. 2019, "A benchmark for interpretability methods in deep
neural networks"; L-MAC Fig. 4 left).

For each method and removal fraction k, the k most salient time-frequency bins of every training
and test clip (by the method's mask for the classifier's decision) are set to 0 on the masking
domain's grid (the value a mask of 0 gives them in every masking metric), a fresh classifier of
the suite's kind is trained from scratch on what remains and its test accuracy is reported. A
method that finds what the classifier needs makes accuracy fall faster than removing random bins
(the baseline, drawn per clip with the seed). Each (method, k) is retrained with several seeds.

Ties in a mask (plateaus, values kept at log8 precision) are broken by a seeded uniform jitter of
1e-9, far below the masks' smallest step, so removal sets are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from audiobench.contracts.domains import Domain
from audiobench.contracts.frontend import Frontend
from audiobench.kernel.batching import CPU_ROWS
from audiobench.models.base import AudioClassifier
from audiobench.models.training import accuracy

TIE_JITTER = 1e-9


def removal_mask(scores: torch.Tensor | None, fraction: float, seed: int, shape: torch.Size | None = None) -> torch.Tensor:
    """R [N, 1, T, F] float (1: removed): per row the ``round(fraction * T * F)`` bins of highest ``scores``.

    ``scores`` None: random bins (the ROAR baseline), drawn with ``seed`` for a tensor of ``shape``.
    Raises ``ValueError`` for a fraction outside [0, 1].
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"removal fraction must lie in [0, 1], not {fraction}")
    shape = scores.shape if scores is not None else shape
    if shape is None:
        raise ValueError("give scores or a shape")
    gen = torch.Generator().manual_seed(seed)
    jitter = torch.rand(shape, generator=gen, dtype=torch.float64)
    key = jitter if scores is None else scores.detach().cpu().double() + TIE_JITTER * jitter
    flat = key.flatten(1)
    k = round(fraction * flat.shape[1])
    out = torch.zeros_like(flat, dtype=torch.float32)
    if k:
        out.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
    return out.view(shape)


def _network_inputs(clf: AudioClassifier, domain: Domain, frontend: Frontend, x: torch.Tensor, device: torch.device,
                    batch: int = CPU_ROWS) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([clf.network_input(domain, frontend, x[i:i + batch].to(device)) for i in range(0, len(x), batch)])


def retrain_accuracy(
    build: Callable[[], AudioClassifier], domain: Domain, frontend: Frontend,
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
    epochs: int, lr: float, batch_size: int, seed: int, device: torch.device,
) -> float:
    """Test accuracy of a classifier built by ``build()`` (seeded) and trained from scratch for ``epochs``
    (Adam, cross-entropy; binary cross-entropy for multi-hot labels) on representations ``x_train``
    [N, 1, T, F] on ``domain``'s grid; the last epoch's weights are evaluated on ``x_test``."""
    torch.manual_seed(seed)
    clf = build().to(device).train()
    train_in = _network_inputs(clf, domain, frontend, x_train, device)
    test_in = _network_inputs(clf, domain, frontend, x_test, device)
    y = y_train.to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    multi = y.dim() == 2
    for _ in range(epochs):
        clf.train()
        order = torch.randperm(len(train_in), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size].to(device)
            scores = clf(train_in[idx])
            if multi:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, y[idx].float())
            else:
                loss = torch.nn.functional.cross_entropy(scores, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return accuracy(clf.eval(), test_in, y_test.to(device))


def roar_curve(
    build: Callable[[], AudioClassifier], domain: Domain, frontend: Frontend,
    x_train: torch.Tensor, y_train: torch.Tensor, s_train: torch.Tensor | None,
    x_test: torch.Tensor, y_test: torch.Tensor, s_test: torch.Tensor | None,
    fractions: list[float], seeds: list[int], epochs: int, lr: float, batch_size: int, device: torch.device,
    done: dict[tuple[float, int], float] | None = None, on_result: Callable[[float, int, float], None] | None = None,
) -> dict[tuple[float, int], float]:
    """Accuracy after removing each fraction of the bins ranked by ``s_train`` / ``s_test`` (masks shaped
    like ``x``; None: random bins), per (fraction, seed); ``done`` results are kept, each new one is
    passed to ``on_result`` (the stage writes it, so an interrupted run resumes)."""
    out = dict(done or {})
    for k in fractions:
        for seed in seeds:
            if (k, seed) in out:
                continue
            r_train = removal_mask(s_train, k, seed, x_train.shape).to(x_train.device)
            r_test = removal_mask(s_test, k, seed + 7919, x_test.shape).to(x_test.device)
            acc = retrain_accuracy(build, domain, frontend, x_train * (1 - r_train), y_train, x_test * (1 - r_test),
                                   y_test, epochs, lr, batch_size, seed, device)
            out[(k, seed)] = acc
            if on_result is not None:
                on_result(k, seed, acc)
    return out
