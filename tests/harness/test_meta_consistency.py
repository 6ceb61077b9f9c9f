"""Meta-consistency (MetaQuantus, Hedström et al. 2023): the criteria on known answers, the score
direction its public code got wrong, the perturbations, and the sanity stage end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from audiobench.sanity.meta_consistency import (
    PerturbationScores,
    iac,
    iec_adversary,
    iec_resilience,
    meta_consistency,
    noisy_waveforms,
    perturbed_model,
)
from audiobench.testing import TINY_SUITE

ALL = np.ones(10, dtype=bool)


def test_iac_is_wilcoxon_p_for_resilience_and_one_minus_p_for_adversary() -> None:
    q = np.arange(10.0)
    assert iac(q, q.copy(), ALL, adversary=False) == 1.0  # nothing moved: indistinguishable
    assert iac(q, q.copy(), ALL, adversary=True) == 0.0
    # every one of 10 rows moved the same way: the exact two-sided p is 2 / 2^10
    assert iac(q, q + 1, ALL, adversary=False) == pytest.approx(2 / 2**10)
    assert iac(q, q + 1, ALL, adversary=True) == pytest.approx(1 - 2 / 2**10)
    rows = np.zeros(10, dtype=bool)
    rows[3] = True
    assert np.isnan(iac(q, q + 1, rows, adversary=False))  # one row: no test
    q_nan = q.copy()
    q_nan[:9] = np.nan
    assert np.isnan(iac(q_nan, q + 1, ALL, adversary=False))


def test_iec_resilience_counts_ranking_places_kept() -> None:
    q = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # 3 methods x 2 rows
    assert iec_resilience(q, q + 5, np.ones(2, bool)) == 1.0  # a shift keeps every place
    # reversed on every row: only the middle method keeps its place
    assert iec_resilience(q, q[::-1].copy(), np.ones(2, bool)) == pytest.approx(1 / 3)
    swapped = q.copy()
    swapped[:, 1] = [3.0, 2.0, 1.0]  # reversed on row 1 only
    assert iec_resilience(q, swapped, np.array([True, False])) == 1.0
    assert iec_resilience(q, swapped, np.ones(2, bool)) == pytest.approx((1 + 1 / 3) / 2)
    assert np.isnan(iec_resilience(q, swapped, np.zeros(2, bool)))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_iec_adversary_reads_the_metric_direction(higher_is_better: bool) -> None:
    """The public MetaQuantus code read every estimator as lower-is-better (PR #10): a higher-is-better
    metric whose scores fell under disruption scored 0 there. Here worse is by the metric's own direction."""
    q = np.array([[0.9, 0.8], [0.7, 0.6]])
    lower = q - 0.5
    assert iec_adversary(q, lower, np.ones(2, bool), higher_is_better) == (1.0 if higher_is_better else 0.0)
    assert iec_adversary(q, q + 0.5, np.ones(2, bool), higher_is_better) == (0.0 if higher_is_better else 1.0)
    assert iec_adversary(q, q.copy(), np.ones(2, bool), higher_is_better) == 0.0  # unchanged is not worse
    mixed = q.copy()
    mixed[0, 0] -= 0.5 if higher_is_better else -0.5  # one of four pairs worse
    assert iec_adversary(q, mixed, np.ones(2, bool), higher_is_better) == 0.25


def test_meta_consistency_of_an_ideal_and_of_a_blind_metric() -> None:
    rng = np.random.default_rng(0)
    m, n, k = 4, 12, 3
    q = rng.uniform(0.5, 1.0, (m, n)) + np.arange(m)[:, None]  # distinct methods, distinct rows
    kept, changed = np.ones((k, n), bool), np.ones((k, n), bool)
    # ideal (higher is better): untouched by minor perturbations, every score worse under disruptive ones
    ideal = meta_consistency(PerturbationScores(q, np.stack([q] * k), np.stack([q - 10] * k), kept, changed), True)
    assert ideal["IAC_NR"] == 1.0 and ideal["IEC_NR"] == 1.0 and ideal["IEC_AR"] == 1.0
    assert ideal["IAC_AR"] == pytest.approx(1 - 2 / 2**n)
    assert ideal["MC"] == pytest.approx((3 + 1 - 2 / 2**n) / 4)
    # blind: the same scores whatever happens: resilient, never reactive
    blind = meta_consistency(PerturbationScores(q, np.stack([q] * k), np.stack([q] * k), kept, changed), True)
    assert blind["IAC_NR"] == 1.0 and blind["IAC_AR"] == 0.0 and blind["IEC_AR"] == 0.0
    assert blind["MC"] == pytest.approx(0.5)
    # no disruptive perturbation changed a decision: the adversary criteria have no rows
    none = meta_consistency(PerturbationScores(q, np.stack([q] * k), np.stack([q - 1] * k), kept, ~changed), True)
    assert np.isnan(none["IAC_AR"]) and np.isnan(none["IEC_AR"]) and np.isnan(none["MC"])


def test_perturbed_model_multiplies_weights_by_seeded_noise() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(200, 300), torch.nn.BatchNorm1d(300))
    net[1].running_mean.fill_(0.5)
    before = net[0].weight.detach().clone()
    a, b = perturbed_model(net, 0.1, seed=3), perturbed_model(net, 0.1, seed=3)
    assert torch.equal(net[0].weight, before)  # a copy is perturbed, the model is kept
    assert torch.equal(a[0].weight, b[0].weight)  # the same seed, the same draw
    assert not torch.equal(perturbed_model(net, 0.1, seed=4)[0].weight, a[0].weight)
    ratio = (a[0].weight / net[0].weight).flatten()
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.002)  # N(1, 0.1²): 60 000 draws
    assert ratio.std().item() == pytest.approx(0.1, rel=0.02)
    assert torch.equal(a[1].running_mean, net[1].running_mean)  # buffers are not perturbed
    assert not a.training


def test_noisy_waveforms_hit_the_snr() -> None:
    torch.manual_seed(0)
    waves = torch.randn(3, 16000) * torch.tensor([[0.1], [1.0], [0.0]])
    for snr in (60.0, 0.0, -10.0):
        noisy = noisy_waveforms(waves, snr, seed=1)
        noise = noisy - waves
        measured = 10 * torch.log10(waves[:2].pow(2).mean(1) / noise[:2].pow(2).mean(1))
        assert measured.tolist() == pytest.approx([snr, snr], abs=1e-3)
        assert torch.equal(noisy[2], waves[2])  # a silent clip stays silent
    assert torch.equal(noisy_waveforms(waves, 0.0, 5), noisy_waveforms(waves, 0.0, 5))


META = {
    "contaminations": ["none"],
    "methods": ["saliency", {"name": "smoothgrad", "n_samples": 4}, "gradcam", "random", "energy"],
    "metrics": ["ai", "ad", "ff", "mm", "ins_del", "del_auc"],
    "sanity": {"meta_consistency": {"clips": 8, "perturbations": 2, "seeds": 3}},
}


@pytest.mark.slow
def test_stage_writes_the_table_and_resumes(tmp_path) -> None:
    from audiobench.harness.runner import run_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, **META}, sort_keys=False))
    first = run_suite(path, tmp_path / "run", progress=False)
    rec = first.manifest["sanity"]["meta_consistency"]
    summary = pd.DataFrame(rec["summary"])
    # every metric with a direction (mm has none), in the suite's order
    assert summary.metric.tolist() == ["ai", "ad", "ff", "ins_del", "del_auc"]
    assert rec["decisions"]["model minor"]["kept"] == 1.0  # σ = 0.001 keeps every decision
    assert rec["decisions"]["model disruptive"]["kept"] < 0.5  # σ = 2 changes most
    values = summary.drop(columns=["metric", "higher_is_better", "methods"]).to_numpy(float)
    assert np.nanmin(values) >= -1 and np.nanmax(values) <= 1
    # a model-free control cannot react to the model: the energy map and the random draws are the same
    # under every model perturbation, so the ranking changes only through the scores
    assert (summary["model IEC_NR"] > 0.5).all()
    # seed study: smoothgrad and random are stochastic, the ranking over 5 methods is a real tau
    assert summary.tau_seeds_mean.between(-1, 1).all()
    table = (tmp_path / "run" / "tables" / "meta_consistency.md").read_text()
    assert "IAC_NR" in table and "Ins.-Del. ↑" in table and "Del. AUC ↓" in table
    stored = sorted((tmp_path / "run" / "sanity" / "meta_consistency").glob("*.parquet"))
    assert len(stored) == 3 + 4 * 2  # seeds + (model, input) x (minor, disruptive) x K
    # deterministic methods are explained once: their seed-1 rows equal their seed-0 rows
    seed0 = pd.read_parquet(next(p for p in stored if p.name.startswith("seed_seed_0")))
    seed1 = pd.read_parquet(next(p for p in stored if p.name.startswith("seed_seed_1")))
    sal0, sal1 = (f[f.method == "Saliency"].reset_index(drop=True) for f in (seed0, seed1))
    pd.testing.assert_frame_equal(sal0, sal1)
    rnd0, rnd1 = (f[(f.method == "Random") & (f.metric == "ins_del")].value.to_numpy() for f in (seed0, seed1))
    assert not np.array_equal(rnd0, rnd1)
    # a second run resumes: nothing is recomputed and the table is the same
    mtimes = {p: p.stat().st_mtime_ns for p in stored}
    again = run_suite(path, tmp_path / "run", progress=False)
    assert {p: p.stat().st_mtime_ns for p in stored} == mtimes
    assert json.dumps(again.manifest["sanity"]["meta_consistency"]["summary"]) == json.dumps(rec["summary"])
    # status says when the stage after the cells did not finish (the manifest is written before it runs)
    from audiobench.store.status import run_status

    assert run_status(tmp_path / "run").stages_pending == []
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    del manifest["sanity"]
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    lines = run_status(tmp_path / "run").lines()
    assert lines[1].startswith("not finished: the sanity stage(s) after the cells") and "re-run the suite" in lines[1]


@pytest.mark.parametrize(("section", "message"), [
    ({"metrics": ["mm"]}, "'mm' has no direction"),
    ({"metrics": ["gt_auc"]}, "'gt_auc' is not a metric of this suite"),
    ({"methods": ["Saliency"]}, "at least two"),
    ({"contamination": "mixture_3db"}, "meta_consistency needs the condition 'mixture_3db'"),
    ({"methods": ["Random", "Random"]}, "at least two different ones"),
    ({"methods": ["Random", "Saliency", "Random"]}, "a method is named twice"),
    ({"model_minor": 3.0, "model_disruptive": 0.001}, r"model_minor \(3\) must be below model_disruptive"),
    ({"input_minor_db": -20, "input_disruptive_db": 60}, "the minor noise is the quieter one"),
])
def test_validate_refuses_a_bad_section(tmp_path, section, message) -> None:
    from audiobench.suite import SuiteErrors, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, **META, "sanity": {"meta_consistency": section}}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=message):
        load_suite(path)


def test_validate_refuses_a_suite_without_a_metric_to_meta_evaluate(tmp_path) -> None:
    from audiobench.suite import SuiteErrors, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, **META, "metrics": ["mm"]}, sort_keys=False))
    with pytest.raises(SuiteErrors, match="no metric of the suite has a direction"):
        load_suite(path)


@pytest.mark.slow
def test_a_model_without_weights_has_no_model_test(tmp_path) -> None:
    """The hand-built model has nothing to perturb: its model columns are left out (—), not scored perfect."""
    from audiobench.harness.runner import run_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "contaminations": ["none"], "model": {"name": "band_energy"},
                                    "methods": ["saliency", "random"], "metrics": ["ff", "ins_del"],
                                    "sanity": {"meta_consistency": {"clips": 4, "perturbations": 1, "seeds": 1}}},
                                   sort_keys=False))
    rec = run_suite(path, tmp_path / "run", progress=False).manifest["sanity"]["meta_consistency"]
    assert set(rec["decisions"]) == {"input minor", "input disruptive"}
    summary = pd.DataFrame(rec["summary"])
    assert summary["model MC"].isna().all() and summary["input IEC_NR"].notna().all()
    assert len(list((tmp_path / "run" / "sanity" / "meta_consistency").glob("*.parquet"))) == 1 + 2
    assert "The model has no weights" in (tmp_path / "run" / "tables" / "meta_consistency.md").read_text()

