"""Sparse NMF (audiobench.kernel.nmf): known answers, monotone objectives, nimfa as the oracle of the plain case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiobench.kernel.nmf import chunk_frames, learn_class_dictionaries, random_init, sparse_nmf


def planted(f: int = 60, k: int = 5, n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A parts-based matrix V = W H: each component owns a disjoint band of rows, activations sparse."""
    g = torch.Generator().manual_seed(seed)
    W = torch.zeros(f, k, dtype=torch.float64)
    band = f // k
    for j in range(k):
        W[j * band : (j + 1) * band, j] = torch.rand(band, generator=g, dtype=torch.float64) + 0.5
    W = W / W.norm(dim=0)
    H = torch.rand(k, n, generator=g, dtype=torch.float64) * (torch.rand(k, n, generator=g, dtype=torch.float64) < 0.4)
    return W @ H, W, H


def best_cosine(learnt: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """For each true component, the best cosine similarity with a learnt one."""
    a = learnt / learnt.norm(dim=0)
    b = true / true.norm(dim=0)
    return (a.T @ b).max(dim=0).values


def test_plain_nmf_reconstruction_error_falls_monotonically_and_recovers_parts() -> None:
    V, W_true, _ = planted()
    res = sparse_nmf(V, 5, n_iter=300, normalize=False, generator=torch.Generator().manual_seed(1))
    err = np.array(res.reconstruction)
    assert (np.diff(err) <= 1e-9 * err[:-1]).all()  # Lee & Seung: never increases
    assert err[-1] < 1e-3 * err[0]
    assert best_cosine(res.W, W_true).min() > 0.9


def test_sparse_nmf_objective_falls_monotonically_recovers_parts_and_keeps_unit_columns() -> None:
    V, W_true, _ = planted()
    res = sparse_nmf(V, 5, n_iter=300, sparsity=0.05, generator=torch.Generator().manual_seed(1))
    obj = np.array(res.objective)
    assert (np.diff(obj) <= 1e-9 * obj[:-1]).all()
    assert res.reconstruction[-1] < 0.05 * res.reconstruction[0]
    torch.testing.assert_close(res.W.norm(dim=0), torch.ones(5, dtype=torch.float64))
    assert best_cosine(res.W, W_true).min() > 0.9
    assert (res.W >= 0).all() and (res.H >= 0).all()


def test_sparsity_makes_activations_sparser() -> None:
    V, _, _ = planted(seed=3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    dense = sparse_nmf(V, 8, n_iter=200, sparsity=0.0, generator=g())
    sparse = sparse_nmf(V, 8, n_iter=200, sparsity=1.0, generator=g())
    assert sparse.H.sum() < dense.H.sum()


def test_plain_case_equals_nimfa_nmf_from_the_same_init() -> None:
    nimfa = pytest.importorskip("nimfa")
    if not hasattr(np, "mat"):  # nimfa 1.4 predates NumPy 2
        np.mat = np.asmatrix
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    g = torch.Generator().manual_seed(0)
    V = torch.rand(40, 120, generator=g, dtype=torch.float64)
    W0, H0 = random_init(V.unsqueeze(0), 6, torch.Generator().manual_seed(1))
    W0, H0 = W0[0], H0[0]
    fit = nimfa.Nmf(
        V.numpy(), seed="fixed", W=W0.numpy().copy(), H=H0.numpy().copy(), rank=6, max_iter=60,
        update="euclidean", objective="fro", min_residuals=None,
    )()
    assert fit.fit.n_iter == 60
    ours = sparse_nmf(V, 6, n_iter=60, normalize=False, W=W0, H=H0)
    np.testing.assert_allclose(ours.W.numpy(), np.asarray(fit.basis()), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.H.numpy(), np.asarray(fit.coef()), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.reconstruction[-1], fit.distance(metric="euclidean"), rtol=1e-9)


def test_batched_factorisation_equals_one_at_a_time_and_ignores_padding() -> None:
    V1, _, _ = planted(n=300, seed=1)
    V2, _, _ = planted(n=200, seed=2)
    W0, H0 = random_init(torch.zeros(2, 60, 300, dtype=torch.float64) + 1, 4, torch.Generator().manual_seed(5))
    batch = torch.zeros(2, 60, 300, dtype=torch.float64)
    batch[0], batch[1, :, :200] = V1, V2
    valid = torch.zeros(2, 300, dtype=torch.bool)
    valid[0], valid[1, :200] = True, True
    together = sparse_nmf(batch, 4, n_iter=50, sparsity=0.1, W=W0, H=H0, valid=valid)
    alone = sparse_nmf(V2, 4, n_iter=50, sparsity=0.1, W=W0[1], H=H0[1, :, :200])
    torch.testing.assert_close(together.W[1], alone.W)
    torch.testing.assert_close(together.H[1, :, :200], alone.H)
    assert (together.H[1, :, 200:] == 0).all()
    np.testing.assert_allclose(together.objective[-1][1], alone.objective[-1], rtol=1e-9)


def test_fixed_columns_are_held() -> None:
    V, W_true, _ = planted()
    W0, H0 = random_init(V.unsqueeze(0), 5, torch.Generator().manual_seed(0))
    W0[0, :, :2] = W_true[:, :2]
    res = sparse_nmf(V, 5, n_iter=50, sparsity=0.1, W=W0[0], H=H0[0], fixed=2)
    torch.testing.assert_close(res.W[:, :2], W_true[:, :2])
    assert not torch.allclose(res.W[:, 2:], W0[0, :, 2:] / W0[0, :, 2:].norm(dim=0))


def test_class_dictionaries_learn_beside_fixed_noise_and_stack_class_components() -> None:
    g = torch.Generator().manual_seed(0)
    f = 48
    noise_part = torch.zeros(f, 1, dtype=torch.float64)
    noise_part[:, 0] = 1.0  # flat background
    parts = torch.zeros(f, 2, dtype=torch.float64)
    parts[5:12, 0], parts[30:40, 1] = 1.0, 1.0

    def clips(part: torch.Tensor, n: int) -> torch.Tensor:
        return part @ torch.rand(1, n, generator=g, dtype=torch.float64) * 3 + noise_part @ torch.rand(1, n, generator=g, dtype=torch.float64)

    noise = noise_part @ torch.rand(1, 200, generator=g, dtype=torch.float64)
    W, info = learn_class_dictionaries(
        [clips(parts[:, :1], 150), clips(parts[:, 1:], 100)], noise, k_per_class=1, k_noise=1, n_iter=200,
        sparsity=0.01, generator=torch.Generator().manual_seed(0),
    )
    assert W.shape == (f, 2) and info["columns"] == [150, 100]
    cos = (W / W.norm(dim=0)).T @ (parts / parts.norm(dim=0))
    assert cos[0, 0] > 0.9 and cos[1, 1] > 0.9  # class c's component is class c's part, noise stayed out


def test_chunk_frames_averages_runs_of_frames() -> None:
    x = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    cols = chunk_frames(x, 3)  # 7 frames -> 2 chunks per clip, the last frame dropped
    assert cols.shape == (3, 4)
    torch.testing.assert_close(cols[:, 0], x[0, :3].mean(dim=0))
    torch.testing.assert_close(cols[:, 3], x[1, 3:6].mean(dim=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_same_factors_on_cuda() -> None:
    V, _, _ = planted()
    W0, H0 = random_init(V.unsqueeze(0), 5, torch.Generator().manual_seed(0))
    cpu = sparse_nmf(V, 5, n_iter=30, sparsity=0.1, W=W0[0], H=H0[0])
    gpu = sparse_nmf(V.cuda(), 5, n_iter=30, sparsity=0.1, W=W0[0].cuda(), H=H0[0].cuda())
    torch.testing.assert_close(gpu.W.cpu(), cpu.W)
    torch.testing.assert_close(gpu.H.cpu(), cpu.H)
