"""Tests of the metric engine: known answers for the faithfulness metrics, Quantus as the oracle for
SPS / COMP, the shared forward pass, and the registry (directions, duplicate names).

Each mistake listed in the reference notes that touches metrics is made impossible here: a second
softmax in AD, Fid-In against class 0, 0/0 in AG when p_c(X) = 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import torch

from audiobench.contracts.registry import METRICS
from audiobench.kernel.errors import AudiobenchError
from audiobench.metrics import MetricInputs, compute_inputs, register_metric
from audiobench.metrics import complexity as cx
from audiobench.metrics import faithfulness as fa
from audiobench.metrics.complexity import complexity, sparseness


def _inputs(
    probs_orig: list[list[float]],
    probs_in: list[list[float]],
    probs_out: list[list[float]] | None = None,
    mask: torch.Tensor | None = None,
) -> MetricInputs:
    """MetricInputs whose softmax probabilities are exactly the given ones (logits = log p)."""
    lo = torch.tensor(probs_orig, dtype=torch.float32).log()
    li = torch.tensor(probs_in, dtype=torch.float32).log()
    lout = lo.clone() if probs_out is None else torch.tensor(probs_out, dtype=torch.float32).log()
    b = lo.shape[0]
    if mask is None:
        mask = torch.full((b, 1, 2, 3), 0.5)
    return MetricInputs(torch.ones_like(mask), mask, lo, li, lout)


def _mask_inputs(mask: torch.Tensor) -> MetricInputs:
    b = mask.shape[0]
    logits = torch.zeros(b, 3)
    return MetricInputs(torch.ones_like(mask), mask, logits, logits, logits)


def _approx(values: list[float]):
    return pytest.approx(values, rel=1e-5, abs=1e-5)


# -- faithfulness: known answers -------------------------------------------------------------------

# Four samples, three classes; predicted classes c = 1, 0, 2, 0.
P_ORIG = [[0.2, 0.5, 0.3], [0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2]]
P_IN = [[0.1, 0.8, 0.1], [0.4, 0.5, 0.1], [0.3, 0.1, 0.6], [0.75, 0.05, 0.2]]
P_OUT = [[0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.1, 0.5, 0.4], [0.1, 0.6, 0.3]]


def test_faithfulness_known_answers() -> None:
    m = _inputs(P_ORIG, P_IN, P_OUT)
    assert m.pred.tolist() == [1, 0, 2, 0]
    assert m.pred_in.tolist() == [1, 1, 2, 0]
    assert m.p_orig.tolist() == _approx([0.5, 0.8, 0.6, 0.5])
    assert m.p_in.tolist() == _approx([0.8, 0.4, 0.6, 0.75])
    assert m.p_out.tolist() == _approx([0.2, 0.5, 0.4, 0.1])
    # sample 2: p_in == p_orig exactly (same logits, permuted off-class) -> no increase, drop or gain
    assert m.p_in[2] == m.p_orig[2]

    # AI = 100 [p_in > p_orig]
    assert fa.ai(m).tolist() == [100.0, 0.0, 0.0, 100.0]
    # AD = 100 relu(p_orig - p_in) / p_orig: sample 1: 100 * 0.4 / 0.8
    assert fa.ad(m).tolist() == _approx([0.0, 50.0, 0.0, 0.0])
    # AG = 100 relu(p_in - p_orig) / (1 - p_orig): 100 * 0.3 / 0.5 and 100 * 0.25 / 0.5
    assert fa.ag(m).tolist() == _approx([60.0, 0.0, 0.0, 50.0])
    # FF = p_orig - p_out
    assert fa.ff(m).tolist() == _approx([0.3, 0.3, 0.2, 0.4])
    # Fid-In = [argmax p(MX) == argmax p(X)]
    assert fa.fid_in(m).tolist() == [1.0, 0.0, 1.0, 1.0]

    means = {name: float(METRICS.get(name)(m).mean()) for name in ("ai", "ad", "ag", "ff", "fid_in")}
    assert means == {
        "ai": pytest.approx(50.0),
        "ad": pytest.approx(12.5, rel=1e-5),
        "ag": pytest.approx(27.5, rel=1e-5),
        "ff": pytest.approx(0.3, rel=1e-5),
        "fid_in": pytest.approx(0.75),
    }


def test_ad_uses_probabilities_once_not_a_second_softmax() -> None:
    m = _inputs([[0.8, 0.1, 0.1]], [[0.4, 0.5, 0.1]])
    # the probabilities are the chosen ones, not softmax applied to them again
    assert m.probs_orig[0].tolist() == _approx([0.8, 0.1, 0.1])
    assert m.probs_in[0].tolist() == _approx([0.4, 0.5, 0.1])
    ad = float(fa.ad(m)[0])
    assert ad == pytest.approx(50.0, rel=1e-5)  # 100 * (0.8 - 0.4) / 0.8
    # The reference code's double softmax: softmax([.8,.1,.1])_0 = 0.50171, softmax([.4,.5,.1])_0 = 0.35137,
    # AD = 100 * (0.50171 - 0.35137) / 0.50171 = 29.97.
    twice_orig = m.probs_orig.softmax(-1)[0, 0]
    twice_in = m.probs_in.softmax(-1)[0, 0]
    double = float(100 * (twice_orig - twice_in) / twice_orig)
    assert double == pytest.approx(29.97, abs=0.01)
    assert abs(ad - double) > 20


def test_fid_in_compares_with_each_samples_own_prediction() -> None:
    # predictions 2, 0, 1; masked-in predictions 2, 1, 1
    orig = [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]
    masked_in = [[0.2, 0.1, 0.7], [0.3, 0.6, 0.1], [0.1, 0.5, 0.4]]
    m = _inputs(orig, masked_in)
    assert m.pred.tolist() == [2, 0, 1] and m.pred_in.tolist() == [2, 1, 1]
    assert fa.fid_in(m).tolist() == [1.0, 0.0, 1.0]
    # the L2I reference compared with class 0, which would give [0, 0, 0] here
    assert fa.fid_in(m).tolist() != (m.pred_in == 0).float().tolist()


def test_ag_is_zero_not_nan_when_the_original_confidence_is_one() -> None:
    lo = torch.tensor([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    li = torch.tensor([[5.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    mask = torch.full((2, 1, 2, 2), 0.5)
    m = MetricInputs(torch.ones_like(mask), mask, lo, li, li)
    assert m.p_orig.tolist() == [1.0, 1.0]  # float32 softmax saturates exactly
    ag = fa.ag(m)
    assert not torch.isnan(ag).any()
    assert ag.tolist() == [0.0, 0.0]
    assert fa.ai(m).tolist() == [0.0, 0.0]
    assert fa.ad(m)[1] == 0.0 and 0.0 < float(fa.ad(m)[0]) < 2.0  # 100 * (1 - 0.98670)


def test_clamping_directions_of_ad_ai_ag_and_signed_ff() -> None:
    # sample 0: confidence rises (p_in > p_orig): AD 0 not negative, AI 100, AG > 0
    # sample 1: confidence falls: AG 0 not negative, AI 0, AD > 0
    orig = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]
    masked_in = [[0.9, 0.05, 0.05], [0.3, 0.4, 0.3]]
    masked_out = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]  # removing the masked-in part raises p_c: FF < 0
    m = _inputs(orig, masked_in, masked_out)
    assert fa.ad(m).tolist() == _approx([0.0, 50.0])  # 100 * 0.3 / 0.6
    assert fa.ai(m).tolist() == [100.0, 0.0]
    assert fa.ag(m).tolist() == _approx([75.0, 0.0])  # 100 * 0.3 / 0.4
    assert fa.ff(m).tolist() == _approx([-0.1, -0.2])


# -- shared forward pass ----------------------------------------------------------------------------


class _CountingForward:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.model(x)


def _model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 5, 3)).double()
    x = torch.rand(3, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 1, 4, 5, dtype=torch.float64)
    return model, x, mask


def test_compute_inputs_runs_one_forward_without_gradients() -> None:
    model, x, mask = _model_and_batch()
    forward = _CountingForward(model)
    assert torch.is_grad_enabled()
    m = compute_inputs(forward, x, mask)
    assert forward.calls == [(9, False)]  # masked-in + masked-out + original, one call, no_grad
    assert torch.is_grad_enabled()  # restored afterwards
    assert (
        not m.scores_in.requires_grad and not m.scores_out.requires_grad and not m.scores_orig.requires_grad
    )

    with torch.no_grad():
        sep_in, sep_out, sep_orig = model(mask * x), model((1 - mask) * x), model(x)
    torch.testing.assert_close(m.scores_in, sep_in, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.scores_out, sep_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.scores_orig, sep_orig, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(m.scores_in, m.scores_out)  # the two halves are not interchangeable

    # with p(X) given, only the masked passes run, and the given logits are the ones used
    forward.calls.clear()
    given = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    m2 = compute_inputs(forward, x, mask, scores_orig=given, labels=labels)
    assert forward.calls == [(6, False)]
    assert torch.equal(m2.scores_orig, given) and m2.pred.tolist() == [0, 1, 2]
    assert m2.labels is labels
    torch.testing.assert_close(m2.scores_in, sep_in, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m2.scores_out, sep_out, rtol=1e-12, atol=1e-12)


# -- SPS and COMP against Quantus -------------------------------------------------------------------


def _quantus(metric: type, a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # a copy: Quantus modifies its input in place
    x = np.ones_like(a)
    y = np.zeros(a.shape[0], dtype=np.int64)
    scores = metric(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a, channel_first=True)
    return np.asarray(scores, dtype=np.float64)


def _quantus_per_sample(metric: type, a: np.ndarray) -> np.ndarray:
    return np.concatenate([_quantus(metric, a[i : i + 1]) for i in range(a.shape[0])])


@pytest.mark.parametrize("signed", [False, True])
def test_sps_and_comp_equal_quantus_per_sample_at_any_scale(signed: bool) -> None:
    rng = np.random.default_rng(7)
    a = rng.random((6, 1, 8, 10))
    a[rng.random(a.shape) < 0.3] = 0.0  # ties at zero
    if signed:
        a *= rng.choice([-1.0, 1.0], size=a.shape)
    a *= (10.0 ** rng.uniform(-3, 3, size=6))[:, None, None, None]
    ours_sps = sparseness(torch.from_numpy(a)).numpy()
    ours_comp = complexity(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(ours_sps, _quantus_per_sample(quantus.Sparseness, a), rtol=1e-6)
    np.testing.assert_allclose(ours_comp, _quantus_per_sample(quantus.Complexity, a), rtol=1e-6)
    assert np.ptp(ours_sps) > 0.01 and np.ptp(ours_comp) > 0.01  # the samples really differ


def test_sps_and_comp_equal_quantus_on_a_batch_of_max_normalised_masks() -> None:
    torch.manual_seed(3)
    logits = torch.randn(5, 1, 12, 9) * torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]).view(5, 1, 1, 1)
    masks = torch.sigmoid(logits)
    masks = masks / masks.flatten(1).amax(dim=1).view(5, 1, 1, 1)  # float32, like real masks
    a = masks.double().numpy()
    m = _mask_inputs(masks)
    np.testing.assert_allclose(cx.sps(m).numpy(), _quantus(quantus.Sparseness, a), rtol=1e-6)
    np.testing.assert_allclose(cx.comp(m).numpy(), _quantus(quantus.Complexity, a), rtol=1e-6)


def test_per_sample_normalisation_differs_from_quantus_batch_wide_max() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((2, 1, 4, 5))
    a[0] /= a[0].max()
    a[1] = a[1] / a[1].max() * 1e-5  # a much quieter map in the same batch
    per_sample = _quantus_per_sample(quantus.Sparseness, a)
    batch_wide = _quantus(quantus.Sparseness, a)
    assert batch_wide[0] == pytest.approx(per_sample[0], rel=1e-12)  # the loudest sample is unaffected
    assert abs(batch_wide[1] - per_sample[1]) > 1e-3  # Quantus: the 1e-7 epsilon swamps the quiet map
    ours = sparseness(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(ours, per_sample, rtol=1e-6)
    assert abs(ours[1] - batch_wide[1]) > 1e-3
    # A batch-mate changes nothing in ours: the quiet map alone gives the same value.
    assert sparseness(torch.from_numpy(a[1:])).item() == pytest.approx(ours[1], rel=1e-12)
    # The entropy is scale invariant, so COMP agrees either way.
    np.testing.assert_allclose(
        complexity(torch.from_numpy(a)).numpy(), _quantus(quantus.Complexity, a), rtol=1e-6
    )


def test_degenerate_masks() -> None:
    n = 4 * 5
    zero = torch.zeros(1, 1, 4, 5)
    const = torch.full((1, 1, 4, 5), 0.3)
    one_hot = torch.zeros(1, 1, 4, 5)
    one_hot[0, 0, 2, 3] = 0.7
    m = _mask_inputs(torch.cat([zero, const, one_hot]))
    sps, comp = cx.sps(m), cx.comp(m)

    # all-zero: undefined (NaN, recorded as a skip), and Quantus refuses such a batch outright
    assert math.isnan(sps[0]) and math.isnan(comp[0])
    assert cx.sps.undefined and cx.comp.undefined
    with pytest.raises(AssertionError):
        _quantus(quantus.Sparseness, zero.double().numpy())
    with pytest.raises(AssertionError):
        _quantus(quantus.Complexity, zero.double().numpy())

    # constant: Gini of equal values is 0, entropy of the uniform distribution is ln N
    # (exactly -ln(1/N + 1e-12) with the 1e-12 inside the log, as in Quantus: ln N - 2e-11 here)
    assert float(sps[1]) == pytest.approx(0.0, abs=1e-12)
    assert float(comp[1]) == pytest.approx(-math.log(1 / n + 1e-12), rel=1e-14)
    assert float(comp[1]) == pytest.approx(math.log(n), abs=1e-10)

    # one-hot: after max-normalisation and + eps, N - 1 values eps and one 1 + eps, so
    # Gini = [(N - 1)(1 + eps) + eps * sum_{k<N}(2k - N - 1)] / [N (1 + N eps)] = (N - 1) / (N (1 + N eps))
    eps = 1e-7
    assert float(sps[2]) == pytest.approx((n - 1) / (n * (1 + n * eps)), rel=1e-12)
    assert float(sps[2]) < 1 - 1 / n
    assert float(comp[2]) == pytest.approx(0.0, abs=1e-9)
    one_hot_np = one_hot.double().numpy()
    assert float(sps[2]) == pytest.approx(_quantus(quantus.Sparseness, one_hot_np)[0], rel=1e-12)
    assert float(comp[2]) == pytest.approx(_quantus(quantus.Complexity, one_hot_np)[0], abs=1e-12)
    # Quantus refuses a constant map as well ("uniformly distributed"); ours keeps its defined values.
    with pytest.raises(AssertionError, match="uniformly"):
        _quantus(quantus.Sparseness, const.double().numpy())

    # a non-finite map is undefined too
    bad = const.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert math.isnan(sparseness(bad)[0]) and math.isnan(complexity(bad)[0])


# -- MM and the registry ----------------------------------------------------------------------------


def test_mm_is_the_mask_mean() -> None:
    mask = torch.tensor([[[[0.0, 0.5], [1.0, 0.5]]], [[[0.1, 0.2], [0.3, 0.2]]]])
    assert cx.mm(_mask_inputs(mask)).tolist() == _approx([0.5, 0.2])


@pytest.mark.parametrize(
    ("name", "higher", "module"),
    [
        ("ai", True, fa),
        ("ad", False, fa),
        ("ag", True, fa),
        ("ff", True, fa),
        ("fid_in", True, fa),
        ("sps", True, cx),
        ("comp", False, cx),
        ("mm", None, cx),
    ],
)
def test_metric_registered_with_its_direction(name: str, higher: bool | None, module) -> None:
    metric = METRICS.get(name)
    assert metric is getattr(module, name)
    assert metric.name == name
    assert metric.higher_is_better is higher
    assert metric.info()["higher_is_better"] is higher
    assert metric.description and "\n" not in metric.description


def _dup_a(m: MetricInputs) -> torch.Tensor:
    return m.p_orig


def _dup_b(m: MetricInputs) -> torch.Tensor:
    return m.p_in


def test_registering_a_metric_name_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))  # leave the global registry as it was
    METRICS.get("ai")
    with pytest.raises(AudiobenchError, match="duplicate metric name 'ai'"):
        register_metric("ai", "AI", higher_is_better=True)(_dup_a)
    assert METRICS.get("ai") is fa.ai

    first = register_metric("test_dup_metric", "Dup", higher_is_better=True)(_dup_a)
    assert METRICS.get("test_dup_metric") is first
    with pytest.raises(AudiobenchError, match="duplicate metric name 'test_dup_metric'"):
        register_metric("test_dup_metric", "Dup", higher_is_better=True)(_dup_b)
    assert METRICS.get("test_dup_metric") is first


# -- degenerate maps and masks outside [0, 1] (cases degenerate-maps, nonneg-none) --------------------

DEGENERATE = """
import torch
from audiobench.methods import Explainer
from audiobench.contracts.registry import METHODS


@METHODS.register("ones_map")
class OnesMap(Explainer):
    display_name = "Ones map"
    needs_gradients = False
    def attribute(self, x, target, ctx):
        return torch.full_like(x, 0.7)


@METHODS.register("nan_map")
class NanMap(Explainer):
    display_name = "NaN map"
    needs_gradients = False
    def attribute(self, x, target, ctx):
        return torch.full_like(x, float("nan"))


@METHODS.register("overshoot_map")
class Overshoot(Explainer):
    display_name = "Overshoot"
    needs_gradients = False
    signed_maps = False  # claims masks, returns values in [-0.5, 1.5]
    def explain(self, x, target, ctx):
        from audiobench.contracts.explanation import Explanation
        return Explanation(torch.linspace(-0.5, 1.5, x[0].numel()).view_as(x[0]).expand_as(x).clone())
"""


def test_identity_mask_scores_no_increase_at_any_batch_size_and_nan_rows_stay(write_suite, tmp_path) -> None:
    import pandas as pd

    from audiobench.cli import main
    from audiobench.store.run_dir import load_manifest, load_run

    (tmp_path / "maps.py").write_text(DEGENERATE)
    results = {}
    for bs in (1, 8):
        suite = write_suite({"plugins": ["maps.py"], "domains": ["mel"], "contaminations": ["none"], "batch_size": bs,
                             "methods": ["ones_map", "nan_map", "saliency", "overshoot_map"],
                             "metrics": ["ai", "ad", "ag", "ff", "fid_in", "mm"]}, name=f"bs{bs}.yaml")
        assert main(["run", str(suite), "-o", str(tmp_path / f"bs{bs}"), "--limit", "8", "-q"]) == 0
        frame = load_run(tmp_path / f"bs{bs}")
        ones = frame[frame.row == "Ones map"].pivot_table(index="sample_id", columns="metric", values="value")
        assert (ones.ai == 0).all() and (ones.fid_in == 1).all()  # M = 1: M*X = X, no increase whatever the batch
        assert ones.ag.max() < 1e-3 and ones.ad.max() < 1e-3
        results[bs] = ones
        table = (tmp_path / f"bs{bs}" / "tables" / "main__synth__none.md").read_text()
        nan_row = next(line for line in table.splitlines() if "NaN map" in line)  # the row is kept...
        assert set(c.strip() for c in nan_row.strip("|").split("|")[2:]) == {"–"}  # ...with – in every column
        assert "every clip of that method was skipped" in table
        manifest = load_manifest(tmp_path / f"bs{bs}")
        over = next(c for c in manifest["cells"] if c["method"] == "overshoot_map")
        n = over["n"]  # every evaluated clip
        assert n >= 4 and sum(s["reason"] == "non-finite map (NaN or Inf)" for s in manifest["skips"]) == n
        assert over["notes"] == [f"{n} mask(s) had values outside [0, 1] and were clipped to it before scoring"]
        mm = frame[(frame.row == "Overshoot") & (frame.metric == "mm")].value
        assert mm.between(0, 1).all()
    pd.testing.assert_frame_equal(results[1][["ai", "fid_in"]], results[8][["ai", "fid_in"]])


def test_nonneg_none_is_refused_for_signed_maps_and_acts_for_cams(write_suite, capsys) -> None:
    import torch

    from audiobench.cli import main
    from audiobench.methods.cam import GradCAM

    suite = write_suite({"methods": [{"name": "gradcam", "nonneg": "none"}, {"name": "saliency", "nonneg": "none"},
                                     {"name": "lmac", "nonneg": "none"}]})
    assert main(["validate", str(suite)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("nonneg none would pass signed maps" in e for e in err)  # lmac's masks are masks
    assert err[0].startswith(f"{suite}:") and "gradcam" in err[0] and "saliency" in err[1]
    # abs and relu give different GradCAM maps where the class activation map is negative
    cam = torch.tensor([[[[-2.0, 1.0], [0.5, -0.5]]]])
    relu, absolute = GradCAM({"nonneg": "relu"}), GradCAM({"nonneg": "abs"})
    relu.cam = absolute.cam = lambda x, target, ctx: cam  # the block's map, known
    grid = lambda c, x, ctx: c  # noqa: E731
    relu.to_domain_grid = absolute.to_domain_grid = grid
    assert relu.attribute(None, None, None).tolist() == [[[[0.0, 1.0], [0.5, 0.0]]]]
    assert absolute.attribute(None, None, None).tolist() == [[[[2.0, 1.0], [0.5, 0.5]]]]
