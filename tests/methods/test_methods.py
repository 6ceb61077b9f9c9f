"""Tests of the explanation methods: known answers on hand-built models, Captum oracles, mask contract.

Each mistake of the reference code (see shared/notes/reference_implementation.md) has a test here
that fails if it comes back: SmoothGrad noise drawn once, IG's step count ignored, GradientShap
without multiplication by the inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum import attr as captum_attr
from torch import nn

from audiobench.contracts.domains import Domain, Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, to_mask
from audiobench.methods.cam import gradcam_pp_weights
from audiobench.models.base import AudioClassifier
from audiobench.models.cnn14 import Cnn14

SR = 16000
N_MELS = 16
GRID = (8, N_MELS)  # (T, F) of the hand-built models' inputs, on the mel grid
POST_HOC = (
    "saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "shap",
    "gradcam", "gradcam_pp", "guided_gradcam", "random",
)


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend(FrontendParams(n_fft=128, win_length=128, hop_length=64, n_mels=N_MELS))


@pytest.fixture(scope="module")
def cnn() -> Cnn14:
    torch.manual_seed(0)
    model = Cnn14(n_classes=3, n_mels=N_MELS, width=4, depth=2)
    with torch.no_grad():  # non-trivial batch-norm statistics, so bn0 is not the identity
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
        model.fc1.bias.fill_(0.5)  # keep every hidden unit alive, so guided maps of every class are non-zero
    return model.eval().requires_grad_(False)  # frozen, as the runner hands it to the methods


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    """Two 0.25 s clips: noise plus a tone each (different tones)."""
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(SR // 4) / SR
    tones = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 2500 * t)])
    return 0.5 * tones + 0.1 * torch.randn(2, SR // 4, generator=gen)


def make_ctx(classifier: nn.Module, domain: Domain, frontend: Frontend, **kw) -> ExplainContext:
    return ExplainContext(DomainModel(classifier, domain, frontend).eval(), **kw)


def method(name: str, **params) -> Explainer:
    return METHODS.get(name)(params)


class RowCounter(AudioClassifier):
    """Wraps a classifier and records the batch size of every forward pass."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.rows = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.inner(x)


class RegionReluSum(AudioClassifier):
    """logit_0 = sum over a region of relu(x); logit_1 = its negative. d logit_0 / dx = R * 1[x > 0]."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (torch.relu(x) * self.region).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


class SmoothNet(AudioClassifier):
    """A smooth non-linear two-class model (for IG completeness)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(2)
        self.register_buffer("w", torch.randn(2, 1, *GRID, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = (torch.tanh(x)[:, None] * self.w).flatten(2).sum(2)
        b = nn.functional.softplus(x).flatten(1).mean(1, keepdim=True)
        return a * b + 0.3 * a.pow(2)


class Linear(AudioClassifier):
    """f_c(x) = <w_c, x>."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bitf,citf->bc", x, self.w)


def region_box(t0: int, t1: int, f0: int, f1: int, grid: tuple[int, int] = GRID) -> torch.Tensor:
    r = torch.zeros(1, 1, *grid)
    r[..., t0:t1, f0:f1] = 1
    return r


# --------------------------------------------------------------------------- 1. SmoothGrad
def test_smoothgrad_draws_noise_per_copy(frontend: Frontend) -> None:
    region = region_box(2, 6, 3, 11)
    inside = region.bool().expand(2, 1, *GRID)
    ctx = make_ctx(RegionReluSum(region), Mel(), frontend, max_rows=16)  # 8 copies per pass: 50 passes
    x, target = torch.zeros(2, 1, *GRID), torch.zeros(2, dtype=torch.long)

    torch.manual_seed(0)  # a zero input has no range: the noise is absolute here
    many = method("smoothgrad", n_samples=400, stdev=1.0, noise="absolute").attribute(x, target, ctx)
    # the gradient of copy n is 1[noise_n > 0] inside the region: its average is ~Binomial(400, 0.5) / 400
    assert 0.45 <= float(many[inside].mean()) <= 0.55
    assert bool(((many[inside] > 0.3) & (many[inside] < 0.7)).all())  # 8 sigma; one shared draw gives 0 or 1
    assert not bool(torch.isin(many[inside], torch.tensor([0.0, 1.0])).any())
    assert bool((many[~inside] == 0).all())

    torch.manual_seed(0)
    one = method("smoothgrad", n_samples=1, stdev=1.0, noise="absolute").attribute(x, target, ctx)
    assert bool(torch.isin(one, torch.tensor([0.0, 1.0])).all())
    assert 0 < float(one[inside].mean()) < 1  # a genuine draw: both signs of noise occur
    assert bool((one[~inside] == 0).all())


def test_smoothgrad_noise_is_a_share_of_each_clips_range(frontend: Frontend) -> None:
    """noise: range (default): sigma_b = stdev x (max - min of clip b), so a clip 100 times louder (a
    linear |STFT| grid beside a log one) gets 100 times the noise and, through a scale-free model, the
    same map from the same draw; absolute noise does not."""
    region = region_box(2, 6, 3, 11)
    ctx = make_ctx(RegionReluSum(region), Mel(), frontend, max_rows=16)
    base = torch.rand(1, 1, *GRID, generator=torch.Generator().manual_seed(3)) - 0.3
    x, target = torch.cat([base, 2 * base]), torch.zeros(2, dtype=torch.long)
    assert method("smoothgrad").params.noise == "range"
    torch.manual_seed(0)
    one = method("smoothgrad", n_samples=16, stdev=0.15).attribute(x, target, ctx)
    torch.manual_seed(0)
    hundred = method("smoothgrad", n_samples=16, stdev=0.15).attribute(100 * x, target, ctx)
    assert torch.equal(one, hundred)  # the same draw z: sign(c u + c sigma z) = sign(u + sigma z)
    assert bool(((one > 0) & (one < 1)).any())  # the noise flips some bins: a genuine smoothing
    torch.manual_seed(0)
    absolute = method("smoothgrad", n_samples=16, stdev=0.15, noise="absolute").attribute(100 * x, target, ctx)
    assert not torch.equal(absolute, one)  # 0.15 is nothing beside values of ~30: (nearly) the plain gradient


# --------------------------------------------------------------------------- 2. Integrated gradients
def test_integrated_gradients_honours_n_steps(frontend: Frontend) -> None:
    counter = RowCounter(SmoothNet())
    x, target = torch.randn(3, 1, *GRID), torch.tensor([0, 1, 0])
    totals = {}
    for n_steps in (7, 13):
        for max_rows in (64, 10):
            counter.rows.clear()
            method("integrated_gradients", n_steps=n_steps).attribute(
                x, target, make_ctx(counter, Mel(), frontend, max_rows=max_rows)
            )
            totals[n_steps, max_rows] = sum(counter.rows)
            assert max(counter.rows) <= max(max_rows, x.shape[0])
    # Captum's IG makes no forward pass besides the scaled inputs: exactly n_steps * B rows
    assert totals[13, 64] - totals[7, 64] == 6 * x.shape[0]
    assert totals == {(7, 64): 21, (7, 10): 21, (13, 64): 39, (13, 10): 39}


def test_integrated_gradients_completeness(frontend: Frontend) -> None:
    model = SmoothNet()
    torch.manual_seed(3)
    x, target = 0.7 * torch.randn(4, 1, *GRID), torch.tensor([0, 1, 1, 0])
    ig = method("integrated_gradients", n_steps=64)  # default Gauss-Legendre
    a = ig.attribute(x, target, make_ctx(model, Mel(), frontend))  # the raw, signed attribution
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    assert gap.abs().min() > 0.1  # the check below is not vacuous
    torch.testing.assert_close(a.flatten(1).sum(1), gap, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- 3. SHAP
def test_gradient_shap_multiplies_by_inputs_on_linear_model(frontend: Frontend) -> None:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(3, 1, *GRID, generator=gen)
    x = torch.randn(5, 1, *GRID, generator=gen)
    target = torch.tensor([0, 2, 1, 2, 0])
    # max_rows 12 with 6 samples: two clips per Captum call, so chunks of 2, 2, 1 with their own targets
    ctx = make_ctx(Linear(w), Mel(), frontend, max_rows=12)
    torch.manual_seed(0)
    a = method("shap", n_samples=6, stdev=0.0).attribute(x, target, ctx)
    torch.testing.assert_close(a, w[target] * x, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, w[target], atol=1e-2)  # not the bare gradient


# --------------------------------------------------------------------------- 4. GradCAM++
def _gradcam_pp_weights_numpy(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq. 19 of Chattopadhay et al. (2018), written out element by element."""
    out = np.zeros(a.shape[:2])
    for b in range(a.shape[0]):
        for k in range(a.shape[1]):
            total = a[b, k].sum()
            for i in range(a.shape[2]):
                for j in range(a.shape[3]):
                    gij = g[b, k, i, j]
                    alpha = gij**2 / (2 * gij**2 + total * gij**3)
                    out[b, k] += alpha * max(gij, 0.0)
    return out


def test_gradcam_pp_weights_known_answer() -> None:
    a = np.array([[[[0.5, 1.0, 0.0], [2.0, 0.25, 1.5]], [[1.0, 0.0, 3.0], [0.5, 0.5, 0.0]]]])  # [1, 2, 2, 3]
    g = np.array([[[[0.3, -0.2, 0.1], [0.05, 0.4, -0.6]], [[-0.1, 0.2, 0.7], [0.3, -0.05, 0.15]]]])
    expected = _gradcam_pp_weights_numpy(a, g)
    got = gradcam_pp_weights(torch.from_numpy(a), torch.from_numpy(g))
    assert got.shape == (1, 2, 1, 1)
    np.testing.assert_allclose(got[:, :, 0, 0].numpy(), expected, rtol=1e-12)
    # hand value of channel 0: sum A = 5.25; relu keeps (0.3, 0.1, 0.05, 0.4)
    hand = sum(gv**2 * gv / (2 * gv**2 + 5.25 * gv**3) for gv in (0.3, 0.1, 0.05, 0.4))
    assert got[0, 0, 0, 0].item() == pytest.approx(hand, rel=1e-12)
    # the test tells the paper's formula from sum_ab(A_ab g_ab^3) in the denominator
    t_a, t_g = torch.from_numpy(a), torch.from_numpy(g)
    denom = 2 * t_g**2 + (t_a * t_g**3).sum(dim=(2, 3), keepdim=True)
    wrong = (t_g**2 / denom * t_g.clamp_min(0)).sum(dim=(2, 3))
    assert not np.allclose(wrong.numpy(), expected, rtol=1e-3)


class LinearCamNet(AudioClassifier):
    """A 1x1 conv block A_k = a_k x + b_k, then score_c = sum_k V_ck sum_ij A_kij (linear in A)."""

    def __init__(self, a: list[float], b: list[float], v: list[list[float]]):
        super().__init__()
        self.conv = nn.Conv2d(1, len(a), 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(a).view(-1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor(b))
        self.register_buffer("v", torch.tensor(v))

    def blocks(self) -> list[nn.Module]:
        return [self.conv]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ck,bkij->bc", self.v, self.conv(x))


def test_gradcam_pp_map_known_answer(frontend: Frontend) -> None:
    a, b = [1.0, -0.5, 2.0], [0.2, 1.0, -0.3]
    v = [[0.8, -1.0, 0.3], [-0.4, 0.6, 0.5]]
    net = LinearCamNet(a, b, v)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 1, *GRID, generator=gen, dtype=torch.float64).float()
    target = torch.tensor([0, 1])
    got = method("gradcam_pp").attribute(x, target, make_ctx(net, Mel(), frontend))

    xs = x.double().numpy()[:, 0]
    expected = np.zeros_like(xs)
    for n, c in enumerate(target.tolist()):
        cam = np.zeros(GRID)
        for k in range(3):
            act = a[k] * xs[n] + b[k]  # A_k on the input grid; dscore/dA_kij = V_ck everywhere
            g = v[c][k]
            alpha = g**2 / (2 * g**2 + act.sum() * g**3)
            cam += act.size * alpha * max(g, 0.0) * act
        expected[n] = np.maximum(cam, 0)
    assert (expected > 0).any() and (expected == 0).any()  # relu and signs both matter
    np.testing.assert_allclose(got[:, 0].numpy(), expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- 5-6. CAM oracles
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_guided_gradcam_mel_matches_captum(cnn: Cnn14, frontend: Frontend, waves: torch.Tensor, mode: str) -> None:
    domain = Mel()
    x = domain.represent(frontend, waves).x
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([2, 0])
    ours = method("guided_gradcam", interpolate=mode).attribute(x, target, ctx).detach()
    oracle = captum_attr.GuidedGradCam(ctx.model, cnn.block("last")).attribute(
        x, target=target, interpolate_mode=mode
    ).detach()
    assert ours.shape == x.shape and float(ours.abs().max()) > 0
    torch.testing.assert_close(ours, oracle, atol=1e-6 * float(oracle.abs().max()), rtol=1e-5)


@pytest.mark.parametrize("layer", ["last", "1", "conv_block2"])
def test_gradcam_mel_matches_captum(cnn: Cnn14, frontend: Frontend, waves: torch.Tensor, layer) -> None:
    domain = Mel()
    x = domain.represent(frontend, waves).x
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([1, 2])
    ours = method("gradcam", layer=layer).attribute(x, target, ctx)
    cam = captum_attr.LayerGradCam(ctx.model, cnn.block(layer)).attribute(x, target=target, relu_attributions=True)
    oracle = captum_attr.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    assert float(oracle.max()) > 0
    torch.testing.assert_close(ours, oracle, atol=1e-6 * float(oracle.max()), rtol=1e-5)


def test_gradcam_stft2mel_is_the_mel_map_spread_by_the_filterbank(
    cnn: Cnn14, frontend: Frontend, waves: torch.Tensor
) -> None:
    domain = Stft2Mel()
    x = domain.represent(frontend, waves).x
    assert x.shape[-1] == frontend.n_freqs
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([0, 1])
    lin = method("gradcam").attribute(x, target, ctx)
    assert lin.shape == x.shape

    cam = captum_attr.LayerGradCam(ctx.model, cnn.block("last")).attribute(x, target=target, relu_attributions=True)
    mel_map = captum_attr.LayerAttribution.interpolate(cam, (x.shape[2], N_MELS), interpolate_mode="bilinear")
    fb = frontend.mel_fb
    covered = fb.sum(1) > 0
    weight = fb / fb.sum(1, keepdim=True).clamp_min(1e-12)
    torch.testing.assert_close(lin[..., covered], (mel_map @ weight.T)[..., covered], atol=1e-6, rtol=1e-5)
    # every linear bin lies between the values of the mel filters that cover it
    for f in covered.nonzero().flatten().tolist():
        vals = mel_map[..., fb[f] > 0]
        assert bool((lin[..., f] >= vals.amin(-1) - 1e-6).all() and (lin[..., f] <= vals.amax(-1) + 1e-6).all())

    # a map constant across mel bins stays constant across the linear bins
    per_frame = torch.rand(2, 1, x.shape[2], 1)
    spread = domain.from_mel_grid(frontend, per_frame.expand(-1, -1, -1, N_MELS))
    torch.testing.assert_close(spread, per_frame.expand_as(spread), atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- 7. known region
class TwoRegionNet(AudioClassifier):
    """Class c's logit depends only on x inside region c (smooth, non-linear)."""

    def __init__(self, regions: torch.Tensor):
        super().__init__()
        self.register_buffer("regions", regions)  # [C, 1, T, F]
        gen = torch.Generator().manual_seed(6)
        self.register_buffer("w", torch.rand(regions.shape, generator=gen) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = x[:, None] * self.regions
        return (nn.functional.softplus(inside * self.w) + 0.5 * torch.tanh(inside)).flatten(2).sum(2)


GRADIENT_METHODS = {
    "saliency": {},
    "smoothgrad": {"n_samples": 16, "stdev": 0.3},
    "integrated_gradients": {"n_steps": 16},
    "shap": {"n_samples": 16},
    "guided_backprop": {},
}


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
@pytest.mark.parametrize("domain", [Mel(), Stft2Mel()], ids=["mel", "stft2mel"])
def test_gradient_methods_find_the_known_region(
    name: str, domain: Domain, frontend: Frontend, waves: torch.Tensor
) -> None:
    x = domain.represent(frontend, waves).x
    n_frames = x.shape[2]
    # class 0: early frames, low mel bins; class 1: late frames, high mel bins
    regions = torch.cat([region_box(5, 25, 1, 6, (n_frames, N_MELS)), region_box(35, 60, 9, 15, (n_frames, N_MELS))])
    ctx = make_ctx(TwoRegionNet(regions), domain, frontend)
    # where each class's region lands on the domain's grid (linear bins covered by those mel filters)
    on_grid = (domain.from_mel_grid(frontend, regions) > 0).float()
    target = torch.tensor([0, 1])
    torch.manual_seed(0)
    mask = method(name, **GRADIENT_METHODS[name]).explain(x, target, ctx).mask
    total = mask.flatten(1).sum(1)
    assert bool((total > 0).all())
    inside = (mask * on_grid[target]).flatten(1).sum(1) / total
    assert bool((inside >= 0.9).all()), inside


# --------------------------------------------------------------------------- 8. guided backprop, contract
class ReluNet(AudioClassifier):
    """y_c = sum(V_c * relu(x)): saliency V_c 1[x>0], guided backprop relu(V_c) 1[x>0]."""

    def __init__(self, v: torch.Tensor):
        super().__init__()
        self.relu = nn.ReLU()
        self.register_buffer("v", v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bitf,citf->bc", self.relu(x), self.v)


def test_guided_backprop_stops_negative_gradients(frontend: Frontend) -> None:
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(2, 1, *GRID, generator=gen)
    x = torch.randn(3, 1, *GRID, generator=gen)
    target = torch.tensor([1, 0, 1])
    ctx = make_ctx(ReluNet(v), Mel(), frontend)
    sal = method("saliency").attribute(x, target, ctx)
    gbp = method("guided_backprop").attribute(x, target, ctx)
    torch.testing.assert_close(sal, v[target] * (x > 0))
    torch.testing.assert_close(gbp, v[target].clamp_min(0) * (x > 0))


def test_guided_backprop_on_cnn14_differs_from_saliency(cnn: Cnn14, frontend: Frontend, waves: torch.Tensor) -> None:
    assert sum(isinstance(m, nn.ReLU) for m in cnn.modules()) == 2 * cnn.depth + 1
    domain = Mel()
    x = domain.represent(frontend, waves).x
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([0, 2])
    sal = method("saliency").attribute(x, target, ctx)
    gbp = method("guided_backprop").attribute(x, target, ctx)
    assert gbp.shape == x.shape and bool(gbp.isfinite().all()) and float(gbp.abs().max()) > 0
    assert not torch.allclose(gbp, sal, atol=1e-3 * float(sal.abs().max()))
    # the hooks are removed afterwards: saliency is unchanged by having run guided backprop
    torch.testing.assert_close(method("saliency").attribute(x, target, ctx), sal)


@pytest.mark.parametrize("name", POST_HOC)
@pytest.mark.parametrize("domain", [Mel(), Stft2Mel()], ids=["mel", "stft2mel"])
def test_every_method_returns_a_valid_deterministic_mask(
    name: str, domain: Domain, cnn: Cnn14, frontend: Frontend, waves: torch.Tensor
) -> None:
    assert name in METHODS.names()
    x = domain.represent(frontend, waves).x
    ctx = make_ctx(cnn, domain, frontend, seed=11)
    with torch.no_grad():
        target = ctx.model(x).argmax(1)
    x_before = x.clone()
    explainer = method(name)

    torch.manual_seed(11)
    mask = explainer.explain(x, target, ctx).mask
    assert torch.equal(x, x_before)
    assert mask.shape == x.shape and mask.dtype == x.dtype
    assert bool(mask.isfinite().all())
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    peak = mask.flatten(1).amax(1)
    assert bool(((peak == 1) | (peak == 0)).all())
    assert bool((peak == 1).any())  # at least one clip gets a non-trivial map

    torch.manual_seed(11)
    again = explainer.explain(x, target, ctx).mask
    assert torch.equal(mask, again)


def test_random_control_follows_ctx_seed(cnn: Cnn14, frontend: Frontend, waves: torch.Tensor) -> None:
    x = Mel().represent(frontend, waves).x
    target = torch.zeros(2, dtype=torch.long)
    rnd = method("random")

    def run(seed: int, global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        return rnd.explain(x, target, make_ctx(cnn, Mel(), frontend, seed=seed)).mask

    a = run(3, 0)
    torch.testing.assert_close(a, run(3, 99), rtol=0, atol=0)  # the context's seed alone decides
    assert not torch.allclose(a, run(4, 0))
    assert not torch.allclose(a[0], a[1])  # clips of a batch get different maps


def test_sampling_methods_bound_rows_per_pass(frontend: Frontend) -> None:
    counter = RowCounter(SmoothNet())
    x, target = torch.randn(3, 1, *GRID), torch.tensor([0, 1, 0])
    for name, params in [("smoothgrad", {"n_samples": 9}), ("shap", {"n_samples": 5}),
                         ("integrated_gradients", {"n_steps": 9})]:
        counter.rows.clear()
        torch.manual_seed(0)
        method(name, **params).attribute(x, target, make_ctx(counter, Mel(), frontend, max_rows=10))
        assert max(counter.rows) <= 10, (name, counter.rows)
        assert sum(counter.rows) == 27 if name != "shap" else sum(counter.rows) == 15, (name, counter.rows)


# --------------------------------------------------------------------------- 9. to_mask
def test_to_mask_nonneg_and_normalisation() -> None:
    raw = torch.tensor([[[-2.0, 1.0], [0.5, -0.5]], [[0.25, -1.0], [0.0, 0.5]]])  # [2, 2, 2]
    torch.testing.assert_close(to_mask(raw, "abs", "none"), raw.abs())
    torch.testing.assert_close(to_mask(raw, "relu", "none"), raw.clamp_min(0))
    torch.testing.assert_close(to_mask(raw, "none", "none"), raw)
    torch.testing.assert_close(
        to_mask(raw, "abs", "max"), torch.tensor([[[1.0, 0.5], [0.25, 0.25]], [[0.25, 1.0], [0.0, 0.5]]])
    )
    torch.testing.assert_close(  # per-sample max of the relu'd map: 1.0 and 0.5
        to_mask(raw, "relu", "max"), torch.tensor([[[0.0, 1.0], [0.5, 0.0]], [[0.5, 0.0], [0.0, 1.0]]])
    )


def test_to_mask_all_zero_and_nan() -> None:
    raw = torch.zeros(3, 1, 4, 5)
    raw[1] = -torch.arange(20.0).view(1, 4, 5)  # relu makes this sample all zero too
    raw[2, 0, 1, 1] = 4.0
    for nonneg in ("abs", "relu"):
        m = to_mask(raw, nonneg, "max")
        assert bool(m.isfinite().all())
        assert bool((m[0] == 0).all()) and m[2].max() == 1 and m[2].sum() == 1
    assert bool((to_mask(raw, "relu", "max")[1] == 0).all())
    assert to_mask(raw, "abs", "max")[1].max() == 1

    nan = raw.clone()
    nan[2, 0, 0, 0] = float("nan")
    m = to_mask(nan, "abs", "max")
    assert bool(m[2].isnan().any())  # passed through for the engine to record as a skip
    torch.testing.assert_close(m[:2], to_mask(raw, "abs", "max")[:2])  # other samples unaffected
