"""LIME and Kernel SHAP on segments: the batched solver against scikit-learn, LIME's kernel against
``pairwise_distances``, and the known answer of an additive model (its Shapley values are its terms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import pairwise_distances

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.methods.surrogate import (
    KERNEL_SHAP_END_WEIGHT,
    KernelShap,
    Lime,
    kernel_shap_samples,
    lime_samples,
    lime_weights,
    weighted_linear_fit,
)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 7.5])
def test_the_batched_fit_equals_scikit_learn_with_sample_weights(alpha: float) -> None:
    g = np.random.default_rng(0)
    z = g.integers(0, 2, (3, 40, 6)).astype(np.float64)
    y = g.normal(size=(3, 40))
    w = g.uniform(0.1, 2.0, (3, 40))
    ours = weighted_linear_fit(torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(w), alpha).numpy()
    for b in range(3):
        ref = (Ridge(alpha=alpha) if alpha else LinearRegression()).fit(z[b], y[b], sample_weight=w[b]).coef_
        np.testing.assert_allclose(ours[b], ref, rtol=1e-8, atol=1e-10)


def test_lime_weights_are_lime_image_s_kernel_on_the_cosine_distance() -> None:
    z = lime_samples(2, 7, 30, torch.Generator().manual_seed(0), "cpu")
    assert bool((z[:, 0] == 1).all()) and set(z.unique().tolist()) <= {0.0, 1.0}
    z[0, 1] = 0  # an all-zeros row: scikit-learn puts it at distance 1
    ours = lime_weights(z, 0.25).numpy()
    for b in range(2):
        d = pairwise_distances(z[b].numpy(), np.ones((1, 7)), metric="cosine").ravel()
        np.testing.assert_allclose(ours[b], np.sqrt(np.exp(-(d**2) / 0.25**2)), rtol=1e-5, atol=1e-7)


def test_kernel_shap_draws_coalition_sizes_by_the_shapley_kernel() -> None:
    d, n = 8, 20002
    z, w = kernel_shap_samples(1, d, n, torch.Generator().manual_seed(0), "cpu")
    assert bool((z[0, 0] == 1).all()) and bool((z[0, 1] == 0).all())
    assert float(w[0, 0]) == float(w[0, 1]) == KERNEL_SHAP_END_WEIGHT and bool((w[0, 2:] == 1).all())
    sizes = z[0, 2:].sum(-1)
    assert 1 <= int(sizes.min()) and int(sizes.max()) <= d - 1
    k = np.arange(1, d)
    p = (d - 1) / (k * (d - k))
    p /= p.sum()
    share = np.array([(sizes == s).float().mean().item() for s in k])
    assert np.abs(share - p).max() < 0.015  # 20 000 draws: 4 standard errors of the largest share is ~0.012
    # within a size, every component is equally likely to be in (uniform sets)
    assert float((z[0, 2:].mean(0) - z[0, 2:].mean()).abs().max()) < 0.02


class Additive(torch.nn.Module):
    """Class 1's logit is sum_k a_k * (the sum of x over time segment k of 4 frames); class 0's is 0."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seg = x.sum(dim=(1, 3)).view(x.shape[0], -1, 4).sum(-1)  # [N, segments]
        s = seg @ self.a
        return torch.stack([torch.zeros_like(s), s], dim=1)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


class AsDomainModel(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


@pytest.mark.parametrize("method, rtol", [(KernelShap, 1e-4), (Lime, 0.02)])
def test_an_additive_model_s_terms_are_recovered(method: type, rtol: float) -> None:
    """For f(z) = sum_k a_k S_k z_k (S_k: the clip's sum over segment k, zero fill), the Shapley values
    are a_k S_k exactly; LIME's ridge (alpha 1 against ~250 x the weight of a sample) shrinks them by ~1 %."""
    a = torch.tensor([2.0, -1.0, 0.5, 0.0, 3.0])
    x = torch.rand(2, 1, 20, 6) + 0.5
    explainer = method({"components": "time", "window": 4, "n_samples": 1000, "nonneg": "abs"})
    raw = explainer.attribute(x, torch.tensor([1, 1]), ExplainContext(AsDomainModel(Additive(a)), seed=3, max_rows=256))
    seg = x.sum(dim=(1, 3)).view(2, 5, 4).sum(-1)
    expected = (a * seg).repeat_interleave(4, dim=1)[:, None, :, None].expand_as(x)
    torch.testing.assert_close(raw, expected, rtol=rtol, atol=rtol * float(expected.abs().max()))


@pytest.mark.parametrize("method", [KernelShap, Lime])
def test_a_window_covering_the_grid_is_one_line_error_not_an_all_ones_mask(method: type) -> None:
    """One component leaves the surrogate nothing to weigh (LIME's map was constant, its mask all ones and
    best on AD / FF; Kernel SHAP raised a bare ValueError): the cell fails with one line saying what to lower."""
    from audiobench.kernel.errors import AudiobenchError

    explainer = method({"components": "time", "window": 100000, "n_samples": 20})
    ctx = ExplainContext(AsDomainModel(Additive(torch.ones(5))), seed=0, max_rows=64)
    with pytest.raises(AudiobenchError, match=r"window 100000 / band 32 on the 20 x 6 grid gives 1 component; a surrogate "
                                              r"needs at least 2: lower window or band"):
        explainer.attribute(torch.rand(2, 1, 20, 6), torch.tensor([1, 1]), ctx)


def test_validate_refuses_a_window_covering_every_frame_at_its_line(tmp_path) -> None:
    """Known before anything runs: 2 s at hop 186 is 173 frames, so a 200-frame window is one segment on both
    grids; the line of `window` says so once; a 0.5 share (two segments) and NMF parts pass."""
    import yaml

    from audiobench.suite import SuiteErrors, load_suite
    from tests.paths import ROOT

    data = yaml.safe_load((ROOT / "suites" / "quickstart.yaml").read_text())
    data["methods"] = [{"name": "lime", "components": "time", "window": 200}, {"name": "kernel_shap", "window": 0.5},
                       {"name": "lime", "components": "nmf", "n_components": 2}]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SuiteErrors) as err:
        load_suite(path)
    assert [str(e) for e in err.value.errors] == [
        f"{path}:{path.read_text().splitlines().index('  window: 200') + 1}: method 'lime' on STFT→Mel: window 200 / band 32 on the "
        "173 x 513 grid gives 1 component; a surrogate needs at least 2: lower window or band"]


def test_regions_partition_the_grid_and_the_methods_explain_a_cnn() -> None:
    from audiobench.models.cnn14 import Cnn14

    for components in ("time", "frequency", "patch"):
        regions = Lime({"components": components, "window": 6, "band": 10}).regions(20, 32)
        torch.testing.assert_close(regions.sum(0), torch.ones(20, 32))
    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    model = DomainModel(Cnn14(3, n_mels=32, width=4, depth=2).eval(), Mel(), frontend).eval()
    x = torch.rand(2, 1, 20, 32)
    for method in (Lime({"n_samples": 30, "window": 5}), KernelShap({"components": "patch", "n_samples": 30, "band": 8})):
        mask = method.explain(x, torch.tensor([0, 2]), ExplainContext(model, seed=1, max_rows=16)).mask
        assert mask.shape == x.shape and 0 <= float(mask.min()) and float(mask.max()) <= 1
        again = method.explain(x, torch.tensor([0, 2]), ExplainContext(model, seed=1, max_rows=7)).mask
        torch.testing.assert_close(mask, again, atol=1e-3, rtol=0)  # the seed fixes the draws; the pass size only the last bits
    assert Lime().row_label() == "LIME (time)" and KernelShap({"components": "frequency"}).row_label() == "Kernel SHAP (frequency)"


def test_nmf_parts_are_a_soft_partition_and_an_additive_model_on_them_is_recovered() -> None:
    """Two rank-one sources on disjoint bins, each alone in some frames (so the factorisation is unique):
    the clip's NMF parts separate them, and a model that reads only the first source gets Kernel SHAP's
    attribution on that source's bins."""
    torch.manual_seed(0)
    t, f = 16, 12
    on_low, on_high = torch.rand(t) + 0.5, torch.rand(t) + 0.5
    on_low[12:], on_high[:4] = 0, 0
    low = torch.zeros(t, f)
    low[:, :6] = torch.outer(on_low, torch.rand(6) + 0.5)  # source 1: bins 0-5, frames 0-11
    high = torch.zeros(t, f)
    high[:, 6:] = torch.outer(on_high, torch.rand(6) + 0.5)  # source 2: bins 6-11, frames 4-15
    x = (low + high).expand(2, 1, t, f).clone()
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=f))

    class ReadsLow(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            s = torch.expm1(v[..., :6]).sum(dim=(1, 2, 3))  # the mel domain's grid is log1p: read the magnitudes
            return torch.stack([s, -s], dim=1)

    class Model(torch.nn.Module):
        domain = Mel()

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return ReadsLow()(v)

        def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
            return scores

    method = KernelShap({"components": "nmf", "n_components": 2, "nmf_iter": 1000, "n_samples": 50, "nonneg": "abs"})
    ctx = ExplainContext(Model(), seed=0, max_rows=64)
    parts = method.clip_regions(x, ctx)
    assert parts.shape == (2, 2, t, f)
    torch.testing.assert_close(parts.sum(1), torch.ones(2, t, f), atol=1e-5, rtol=0)
    raw = method.attribute(x, torch.tensor([0, 0]), ctx)
    sounding = x > 0  # a silent bin's share of the parts is arbitrary (0/0 up to NMF's floor) and M*X is 0 there
    on_low, on_high = (raw.abs() * sounding)[..., :6].sum(), (raw.abs() * sounding)[..., 6:].sum()
    assert float(on_low) > 50 * float(on_high)
    del frontend


@pytest.mark.parametrize("fill_value", [0.25, 0.0])
@pytest.mark.parametrize("per_clip", [False, True])
def test_perturbed_scores_equal_the_copies_built_one_row_at_a_time(per_clip: bool, fill_value: float) -> None:
    """The batched copies (shared regions: one product per pass; per-clip NMF parts: one batched product
    per clip a pass spans; a zero fill multiplied in place, clip by clip) are bit for bit the copies built
    row by row, x * keep + fill * (1 - keep), as the committed rows were (inputs of both signs, as a log-mel)."""
    from audiobench.methods.surrogate import perturbed_scores

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, target = torch.randn(5, 1, 40, 33), torch.tensor([0, 1, 2, 0, 1])
    z, fill = torch.randint(0, 2, (5, 30, 6)).float(), torch.full((5, 1, 1, 1), fill_value)
    if per_clip:
        regions = torch.rand(5, 6, 40, 33)
        regions = regions / regions.sum(1, keepdim=True)
    else:
        regions = torch.zeros(6, 40, 33)
        for i in range(6):
            regions[i, :, i * 6 : (i + 1) * 6] = 1
    with torch.no_grad():
        got = perturbed_scores(model, x, target, regions, z, fill, 16)  # passes of 16 rows straddle clips
        copies = []
        for b in range(5):
            reg = (regions[b] if per_clip else regions).flatten(-2)
            for s in range(30):
                keep = torch.bmm(z[b, s][None, None], reg[None])[0, 0].view(1, 40, 33)
                copies.append(x[b] * keep + fill[b] * (1 - keep))
        copies = torch.stack(copies)  # the model sees the same passes of 16 rows
        want = torch.cat([model(copies[i : i + 16]) for i in range(0, 150, 16)]).gather(
            1, target.repeat_interleave(30)[:, None])[:, 0].view(5, 30)
    assert torch.equal(got, want)
