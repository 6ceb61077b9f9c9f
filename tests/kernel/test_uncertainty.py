"""Bootstrap intervals and the paired test behind the bold mark, on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from audiobench.kernel.stats import bootstrap_ci, half_width, paired_wilcoxon
from audiobench.tables import TableSpec, build_tables, to_csv, to_latex, to_markdown

INFO = {"AI": {"display": "AI", "higher_is_better": True, "aggregation": "mean"},
        "AD": {"display": "AD", "higher_is_better": False, "aggregation": "median"}}


def test_bootstrap_half_width_of_a_mean_is_1_96_sigma_over_sqrt_n():
    # 400 values, half 0 and half 1: plug-in sigma 0.5, so the 95 % half-width tends to 1.96 * 0.5 / 20 = 0.049
    v = np.tile([0.0, 1.0], 200)
    lo, hi = bootstrap_ci(v, seed=3)
    assert (hi - lo) / 2 == pytest.approx(1.96 * 0.5 / 20, rel=0.1)
    assert lo < 0.5 < hi
    # scipy's percentile bootstrap as the oracle: the same interval up to resampling noise
    ref = sps.bootstrap((v,), np.mean, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)


def test_bootstrap_degenerate_cases_and_errors():
    assert bootstrap_ci([0.3] * 50) == pytest.approx((0.3, 0.3), abs=1e-12)  # a constant has no spread
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert all(np.isnan(bootstrap_ci([])))
    assert half_width([1.0, np.nan, 1.0]) == 0.0  # NaN dropped
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci([1, 2], "mode")
    # the median's interval: for 0..100 the middle values are 50 +- a few ranks
    lo, hi = bootstrap_ci(np.arange(101.0), "median")
    assert 38 < lo < 50 < hi < 62


def test_paired_wilcoxon_matches_scipy_and_handles_ties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    b = a - 0.3 + 0.05 * rng.normal(size=40)
    assert paired_wilcoxon(a, b) == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert paired_wilcoxon(a, b) < 1e-6
    assert paired_wilcoxon(a, a) == 1.0
    with pytest.raises(ValueError, match="length"):
        paired_wilcoxon(a, b[:3])


def _frame(rows: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    parts = []
    for row, metrics in rows.items():
        for metric, values in metrics.items():
            parts.append(pd.DataFrame({"dataset": "synth", "contamination": "none", "domain": "mel", "row": row,
                                       "sample_id": [f"c{i:02d}" for i in range(len(values))], "target": 0,
                                       "metric": metric, "value": values}))
    return pd.concat(parts, ignore_index=True)


def test_table_intervals_and_bold_only_where_the_paired_test_separates():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)  # a large spread between clips, shared by the rows
    eps = np.where(np.arange(30) % 2 == 0, 0.01, -0.01)
    df = _frame({
        # AI: A is B + 0.3 on every clip. Their intervals overlap (half-width ~ 1.96 / sqrt(30) ~ 0.35),
        # but the paired test separates them: A is bold.
        "A": {"AI": x + 0.3, "AD": x + eps},
        "B": {"AI": x, "AD": x - eps},
    })
    # AD: A and B differ by +-0.02 alternating: no paired difference, nothing bold
    table = build_tables(df, INFO, TableSpec(ci="bootstrap95", rows="row", group="domain"))[0]
    hw = table.ci
    expected = half_width((x + 0.3)[np.argsort([f"c{i:02d}" for i in range(30)])])
    assert hw.loc[("mel", "A"), "AI"] == pytest.approx(expected)
    assert 0.25 < hw.loc[("mel", "A"), "AI"] < 0.5
    assert table.separated[("mel", "AI")][0] and not table.separated[("mel", "AD")][0]
    md = to_markdown(table)
    a_line = next(ln for ln in md.splitlines() if "| A " in ln)
    b_line = next(ln for ln in md.splitlines() if "| B " in ln)
    assert f"**{(x + 0.3).mean():.2f} ± {hw.loc[('mel', 'A'), 'AI']:.2f}**" in a_line
    assert "**" not in b_line and a_line.count("**") == 2  # AD: not separated, not bold
    assert r"$\pm$" in to_latex(table)
    csv = pd.read_csv(__import__("io").StringIO(to_csv(table)))
    assert csv.loc[csv.row == "A", "AI__ci95"].iloc[0] == pytest.approx(hw.loc[("mel", "A"), "AI"])
    # without intervals: the old rule (best printed value bold, ties all bold)
    plain = to_markdown(build_tables(df, INFO, TableSpec(rows="row", group="domain"))[0])
    assert "±" not in plain and plain.count("**") >= 4


def test_intervals_do_not_depend_on_row_order():
    rng = np.random.default_rng(2)
    df = _frame({"A": {"AI": rng.normal(size=25)}, "B": {"AI": rng.normal(size=25)}})
    spec = TableSpec(ci="bootstrap95")
    a = build_tables(df, INFO, spec)[0].ci
    b = build_tables(df.sample(frac=1.0, random_state=5), INFO, spec)[0].ci
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())


@pytest.mark.parametrize("where", ["per", "rows", "group"])
def test_intervals_render_with_target_as_a_table_key(where):
    """Issue 27: `target` is a key of the table and a pairing column of the bootstrap (it crashed with
    'cannot reindex on an axis with duplicate labels' after every cell had run)."""
    rng = np.random.default_rng(4)
    df = pd.concat([_frame({"A": {"AI": rng.normal(size=20)}, "B": {"AI": rng.normal(size=20)}}).assign(target=t)
                    for t in (0, 1)], ignore_index=True)
    spec = {"per": TableSpec(ci="bootstrap95", rows="row", group="domain", per=["target"]),
            "rows": TableSpec(ci="bootstrap95", rows="target", group="row"),
            "group": TableSpec(ci="bootstrap95", rows="row", group="target")}[where]
    tables = build_tables(df, INFO, spec)
    assert tables and all("±" in to_markdown(t) for t in tables)
    per_target = df[(df.row == "A") & (df.target == 1)].value
    assert f"{per_target.mean():.2f} ±" in "".join(to_markdown(t) for t in tables)
