"""Budget-matched faithfulness (audiobench.metrics.budget): Quantus as the oracle, a hand-built model
whose exact attribution is known, the controls' values derived by hand, fills, ties and the run path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audiobench.contracts.registry import METHODS, METRICS
from audiobench.metrics.base import compute_inputs
from audiobench.metrics.budget import Budget, budget_curves, fill_values, ranks, share_count

T, F = 4, 4
N = T * F


class Linear(nn.Module):
    """A fixed linear softmax classifier on [B, 1, T, F] inputs."""

    def __init__(self, classes: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(classes, N, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w.T


def _batch(b: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, T, F, generator=g)
    x[:, 0, 0, 0] = 0.0  # min 0: Quantus's "black" baseline (the array's minimum) is then our zero fill
    a = torch.rand(b, 1, T, F, generator=g)  # distinct values: no ties, so both orders are the same
    return x, a


def _curves(model: nn.Module, x: torch.Tensor, a: torch.Tensor, fractions, fill: str = "zero", max_rows=None):
    scores = model(x)
    target = scores.argmax(1)
    p = scores.softmax(1).gather(1, target[:, None]).squeeze(1)
    return budget_curves(model, x, a, target, p, torch.ones_like(target, dtype=torch.bool), "softmax", 0.5,
                         Budget(tuple(fractions), fill, 0), max_rows), target


def _quantus_pixel_flipping(model: nn.Module, x: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    quantus = pytest.importorskip("quantus")
    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline="black", normalise=False, abs=False,
                                   disable_warnings=True)
    out = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), softmax=True, device="cpu",
                 channel_first=True)
    return np.asarray(out, dtype=np.float64)  # [B, N]: p_y after removing the top 1..N bins


def test_deletion_curve_equals_quantus_pixel_flipping():
    model = Linear().eval()
    x, a = _batch()
    fractions = [i / N for i in range(1, N + 1)]
    curves, y = _curves(model, x, a, fractions)
    ours = np.stack([curves.dele[:, curves.at(k)].numpy() for k in fractions], axis=1)
    np.testing.assert_allclose(ours, _quantus_pixel_flipping(model, x, a, y), atol=1e-5)


def test_insertion_curve_equals_quantus_least_relevant_first():
    # keeping the top k bins = removing the N - k least relevant ones: PixelFlipping on the negated map
    model = Linear().eval()
    x, a = _batch()
    fractions = [i / N for i in range(1, N + 1)]
    curves, y = _curves(model, x, a, fractions)
    lerf = _quantus_pixel_flipping(model, x, 1 - a, y)  # reversed order; column j: the j + 1 least relevant removed
    ours = np.stack([curves.ins[:, curves.at(k / N)].numpy() for k in range(N - 1, -1, -1)], axis=1)
    np.testing.assert_allclose(ours, lerf, atol=1e-5)


def test_the_curves_ends_and_areas():
    model = Linear().eval()
    x, a = _batch()
    curves, y = _curves(model, x, a, [0.25, 0.5])
    assert curves.points.tolist() == [0.0, 0.1, 0.25, 0.5, 1.0]  # 0, 10 % and 1 are always points
    p_fill = model(torch.zeros_like(x)).softmax(1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(curves.ins[:, 0], p_fill)  # insertion at 0 = the fill alone
    torch.testing.assert_close(curves.dele[:, -1], p_fill)  # deletion at 1 = the fill alone
    torch.testing.assert_close(curves.ins[:, -1], curves.dele[:, 0])  # both are p_t(X)
    ins, dele = curves.areas()
    pts = curves.points.numpy()
    np.testing.assert_allclose(ins.numpy(), np.trapezoid(curves.ins.numpy(), pts, axis=1), rtol=1e-6)
    np.testing.assert_allclose(dele.numpy(), np.trapezoid(curves.dele.numpy(), pts, axis=1), rtol=1e-6)


def test_budgets_are_batched_into_max_rows_passes():
    calls = []
    model = Linear().eval()

    def forward(z: torch.Tensor) -> torch.Tensor:
        calls.append(len(z))
        return model(z)

    x, a = _batch(b=5)
    one, _ = _curves(forward, x, a, [0.1, 0.5])  # all at once
    n_all = len(calls)
    calls.clear()
    chunked, _ = _curves(forward, x, a, [0.1, 0.5], max_rows=10)
    assert n_all == 2  # the original scores, then every budget in one pass
    assert max(calls) <= 10 and len(calls) > 2
    torch.testing.assert_close(one.ins, chunked.ins)
    torch.testing.assert_close(one.dele, chunked.dele)


class Planted(nn.Module):
    """Hand-built: the logit of class 0 is w times the energy in region R0 (rows 0-1, columns 0-1),
    of class 1 the energy in R1 (rows 2-3, columns 2-3) times w, class 2 a constant 0. For target 0
    the exact attribution is X on R0 and 0 elsewhere."""

    w = 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0 = x[:, 0, :2, :2].flatten(1).sum(1)
        r1 = x[:, 0, 2:, 2:].flatten(1).sum(1)
        return self.w * torch.stack([r0, r1, torch.zeros_like(r0)], dim=1)


def _planted_inputs(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = 0.2 * torch.rand(b, 1, T, F, generator=g)
    x[:, 0, :2, :2] += 0.5 + torch.rand(b, 2, 2, generator=g)  # class 0's region is loud
    x[:, 0, 1, 3] += 2.0  # a loud bin the model ignores: energy ranks it first
    return x, torch.zeros(b, dtype=torch.long)


def _planted_maps(x: torch.Tensor) -> dict[str, torch.Tensor]:
    region = torch.zeros_like(x)
    region[:, 0, :2, :2] = 1
    wrong = torch.zeros_like(x)
    wrong[:, 0, 2:, 2:] = 1
    g = torch.Generator().manual_seed(9)
    return {"exact": x * region, "energy": x / x.flatten(1).amax(1).view(-1, 1, 1, 1), "random": torch.rand(x.shape, generator=g),
            "ones": torch.ones_like(x), "zeros": torch.zeros_like(x), "wrong": wrong}


def _planted_metrics(mask: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs = compute_inputs(Planted(), x, mask, target=target, budget=Budget(tuple(k / N for k in range(1, N + 1))))
    names = ["ins_auc", "del_auc", "ins_del", "ad", "ai", "ff", "ad_at_mean", "ff_at_mean", "ad_at_10"]
    return {n: METRICS.get(n)(inputs) for n in names} | {"p_orig": inputs.p_orig}


def test_the_exact_attribution_has_the_best_areas_on_the_hand_built_model():
    x, target = _planted_inputs()
    scores = {name: _planted_metrics(m, x, target) for name, m in _planted_maps(x).items()}
    exact = scores.pop("exact")
    for name, s in scores.items():
        assert (exact["ins_auc"] >= s["ins_auc"] - 1e-9).all(), name
        assert (exact["del_auc"] <= s["del_auc"] + 1e-9).all(), name
        assert exact["ins_del"].mean() > s["ins_del"].mean() + 0.05, name


def test_the_controls_take_the_values_derived_by_hand():
    x, target = _planted_inputs()
    maps = _planted_maps(x)
    ones, zeros = _planted_metrics(maps["ones"], x, target), _planted_metrics(maps["zeros"], x, target)
    p_x = ones["p_orig"]
    uniform = torch.full_like(p_x, 1 / 3)  # every logit is 0 on silence
    # ones: M*X = X, (1 - M)*X = silence; its own-mean budget is every bin
    torch.testing.assert_close(ones["ad"], torch.zeros_like(p_x))
    torch.testing.assert_close(ones["ai"], torch.zeros_like(p_x))
    torch.testing.assert_close(ones["ff"], p_x - uniform)
    torch.testing.assert_close(ones["ad_at_mean"], torch.zeros_like(p_x))
    torch.testing.assert_close(ones["ff_at_mean"], p_x - uniform)
    # zeros: M*X is silence; its own-mean budget is no bin at all
    torch.testing.assert_close(zeros["ad"], 100 * (p_x - uniform) / p_x)
    torch.testing.assert_close(zeros["ff"], torch.zeros_like(p_x))
    torch.testing.assert_close(zeros["ad_at_mean"], 100 * (p_x - uniform) / p_x)
    torch.testing.assert_close(zeros["ff_at_mean"], torch.zeros_like(p_x))
    # both rank their bins in the same seeded order: the same curves
    torch.testing.assert_close(ones["ins_auc"], zeros["ins_auc"])


def test_ties_follow_one_seeded_order_and_ranks_are_permutations():
    flat = torch.zeros(3, 1, T, F)
    r0, r0b, r1 = ranks(flat, 0), ranks(flat, 0), ranks(flat, 1)
    assert torch.equal(r0, r0b) and not torch.equal(r0, r1)
    assert torch.equal(r0[0], r0[1])  # the order is the grid's, not the row's
    assert all(sorted(row.tolist()) == list(range(N)) for row in r1)
    a = torch.arange(N, dtype=torch.float32).view(1, 1, T, F)
    assert ranks(a, 5).view(-1).tolist() == list(range(N - 1, -1, -1))  # no ties: by value, highest first


def test_share_count_rounds_halves_up():
    assert share_count(0.5, 3).item() == 2 and share_count(0.1, 16).item() == 2 and share_count(0.0, 9).item() == 0
    assert share_count(torch.tensor([0.25, 1.0]), 8).tolist() == [2, 8]


def test_fills():
    x, _ = _batch(b=3)
    mean = fill_values(x, "mean", 0)
    torch.testing.assert_close(mean, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    noise = fill_values(x, "noise", 0)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    assert ((noise >= lo) & (noise <= hi)).all() and noise.std() > 0
    assert torch.equal(noise, fill_values(x, "noise", 0))
    model = Linear().eval()
    curves, target = _curves(model, x, torch.rand_like(x), [0.5], fill="mean")
    torch.testing.assert_close(curves.ins[:, 0], model(mean).softmax(1).gather(1, target[:, None]).squeeze(1))
    with pytest.raises(ValueError, match="unknown fill"):
        fill_values(x, "blur", 0)


@pytest.mark.parametrize("name", ["energy", "ones", "zeros"])
def test_the_controls_are_registered_model_free_methods(name):
    cls = METHODS.get(name)
    assert not cls.needs_gradients and not cls.trainable


@pytest.mark.slow
def test_a_run_stores_budget_metrics_and_curves_and_score_reproduces_them(write_suite, tmp_path):
    from audiobench.harness.runner import run_suite
    from audiobench.harness.scoring import score_run

    metrics = ["ad", "ins_auc", "del_auc", "ins_del", "ad_at_10", "ff_at_mean", "fid_in_at_mean"]
    path = write_suite({"domains": ["mel"], "contaminations": ["none"], "methods": ["saliency", "energy", "ones", "zeros"],
                        "metrics": metrics, "budget": {"fractions": [0.05, 0.5, 1.0], "fill": "mean"},
                        "masks": {"precision": "float32"}, "audio": {"n": 0},
                        "tables": [{"name": "main", "rows": "row", "group": "domain", "per": ["dataset", "contamination"],
                                    "metrics": ["ad", "ins_del"]}]})
    out = tmp_path / "run"
    result = run_suite(path, out, progress=False)
    assert (out / "plots" / "curves__none.png").stat().st_size > 1000
    table = next(iter(result.tables.values()))
    assert "at a matched budget" in table and "Energy" in table  # the caption compares every method with energy
    frame = pd.read_parquet(out / "per_sample.parquet")
    assert set(metrics) <= set(frame.metric)
    assert {"p_ins@0", "p_ins@0.05", "p_ins@0.1", "p_ins@0.5", "p_del@1"} <= set(frame.metric)
    assert result.manifest["suite"]["budget"] == {"fractions": [0.05, 0.5, 1.0], "fill": "mean"}
    ones = frame[(frame.method == "ones")].pivot_table(index="sample_id", columns="metric", values="value")
    assert np.allclose(ones["ff_at_mean"], ones["p_orig"] - ones["p_del@1"])  # own mean of ones = every bin
    before = frame.set_index(["method", "sample_id", "target", "metric"]).value.sort_index()
    score_run(out, metrics=metrics, progress=False, replace=True)
    after = pd.read_parquet(out / "per_sample.parquet").set_index(["method", "sample_id", "target", "metric"]).value
    common = before.index.intersection(after.index)
    assert len(common) == len(before)
    np.testing.assert_allclose(after.loc[common].sort_index().to_numpy(), before.to_numpy(), atol=1e-6)


def test_validate_refuses_a_bad_budget_section(write_suite):
    from audiobench.suite import SuiteErrors, load_suite

    for bad, words in [({"fractions": [0.5, 0.2]}, "increase"), ({"fractions": [0, 0.5]}, "(0, 1]"),
                       ({"fill": "blur"}, "fill")]:
        with pytest.raises(SuiteErrors, match="budget") as err:
            load_suite(write_suite({"metrics": ["ins_auc"], "budget": bad}))
        assert words in str(err.value)


def test_kendall_tau_b_equals_scipy_and_knows_its_ends():
    from scipy.stats import kendalltau

    from audiobench.kernel.stats import kendall_tau_b

    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(3, 12))
        a, b = rng.integers(0, 4, n).astype(float), rng.normal(size=n).round(1)
        ours, theirs = kendall_tau_b(a, b), kendalltau(a, b).statistic
        assert (np.isnan(ours) and np.isnan(theirs)) or abs(ours - theirs) < 1e-12
    x = rng.normal(size=(7, 9))
    np.testing.assert_allclose(kendall_tau_b(x, x), 1.0)  # batched over the first axis
    np.testing.assert_allclose(kendall_tau_b(x, -x), -1.0)
    assert np.isnan(kendall_tau_b(np.ones(5), np.arange(5)))


def _trust_frame(sign: float, noise: float, rows: int = 5, clips: int = 40) -> pd.DataFrame:
    """Long rows of one block: gt_auc increasing with the row index; metric 'ff' = sign * that + noise."""
    rng = np.random.default_rng(1)
    parts = []
    for r in range(rows):
        truth = r + 0.1 * rng.normal(size=clips)
        for metric, values in (("gt_auc", truth), ("ff", sign * truth + noise * rng.normal(size=clips))):
            parts.append(pd.DataFrame({"contamination": "none", "domain": "mel", "row": f"m{r}", "sample_id": [f"c{i}" for i in range(clips)],
                                       "target": 0, "metric": metric, "value": values}))
    return pd.concat(parts, ignore_index=True)


def test_the_meta_evaluation_reads_agreement_and_stability():
    from audiobench.tables.meta import metric_trust

    info = {"ff": {"higher_is_better": True}, "gt_auc": {"higher_is_better": True}}
    agree = metric_trust(_trust_frame(1.0, 0.0), info).iloc[0]
    assert agree.vs_truth == 1.0 and agree.stability == 1.0 and agree.rows == 5 and agree.clips == 40
    reverse = metric_trust(_trust_frame(-1.0, 0.0), info).iloc[0]
    assert reverse.vs_truth == -1.0
    noisy = metric_trust(_trust_frame(1.0, 30.0), info).iloc[0]  # noise far above the rows' spread
    assert noisy.stability < 0.8 and noisy.stability_lo < noisy.stability < noisy.stability_hi
    lower_better = metric_trust(_trust_frame(-1.0, 0.0), {"ff": {"higher_is_better": False}, "gt_auc": {}}).iloc[0]
    assert lower_better.vs_truth == 1.0  # the direction is applied before ranking


@pytest.mark.parametrize("kind", ["sigmoid", "similarity"])
def test_budget_curves_follow_the_output_kind(kind):
    """Sigmoid: p_t is the label's own sigmoid and "kept" means p_t > threshold; similarity: softmax over prompts."""
    model = Linear().eval()
    x, a = _batch()
    scores = model(x)
    target = torch.tensor([0, 1, 2, 0, 1])
    probs = scores.sigmoid() if kind == "sigmoid" else scores.softmax(1)
    p = probs.gather(1, target[:, None]).squeeze(1)
    decided = p > 0.5 if kind == "sigmoid" else probs.argmax(1) == target
    curves = budget_curves(model, x, a, target, p, decided, kind, 0.5, Budget((0.5,), "zero", 0))
    j = curves.at(0.5)
    rank = ranks(a, 0).view_as(x)
    kept_in = torch.where(rank < share_count(0.5, N), x, torch.zeros_like(x))
    s_in = model(kept_in)
    p_in = (s_in.sigmoid() if kind == "sigmoid" else s_in.softmax(1)).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(curves.ins[:, j], p_in)
    expected_kept = p_in > 0.5 if kind == "sigmoid" else s_in.argmax(1) == target
    assert torch.equal(curves.ins_kept[:, j], expected_kept)


def test_a_budget_section_that_acts_on_nothing_or_holds_booleans_is_refused(write_suite):
    from audiobench.suite import SuiteErrors, load_suite

    with pytest.raises(SuiteErrors, match="no metric of the suite uses it"):
        load_suite(write_suite({"metrics": ["ai", "ad"], "budget": {"fill": "mean"}}))
    with pytest.raises(SuiteErrors, match="not booleans"):
        load_suite(write_suite({"metrics": ["ins_auc"], "budget": {"fractions": [0.5, True]}}))
