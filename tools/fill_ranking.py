"""How much the budget-matched ranking of methods moves with what a removed bin becomes (``budget.fill``).

    python tools/fill_ranking.py results/quickstart [--metric ins_del] [--fills zero,mean,noise]

From a finished run's kept masks (nothing is explained again), recomputes ``--metric`` for every cell
under each fill (:mod:`audiobench.metrics.budget`), ranks the rows of each (domain, condition) block
by their mean, and prints per block each fill's mean values and Kendall's tau (scipy) between the
ranking under the first fill and under each other one. All fills are computed from the same kept
(rounded) masks, so they compare like with like; the first fill's numbers can differ from the run's
own in the last digits for that reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from audiobench.contracts.registry import METRICS
from audiobench.harness.scoring import in_domain_keys, score_cell, suite_from_resolved
from audiobench.harness.session import prepare
from audiobench.metrics.budget import BudgetParams
from audiobench.store.run_dir import load_manifest


def fill_means(run_dir: Path, metric: str, fills: list[str], device: str = "cpu") -> pd.DataFrame:
    """Mean ``metric`` per (domain, contamination, row, fill) of every cell of ``run_dir``."""
    manifest = load_manifest(run_dir)
    suite = suite_from_resolved(manifest["suite"], in_domain_keys(manifest))
    session = prepare(suite, run_dir, manifest.get("limit"), device, progress=False)
    chosen = [METRICS.get(metric)]
    rows = []
    for fill in fills:
        session.suite.budget = BudgetParams(fractions=suite.budget.fractions, fill=fill)
        for cell in tqdm(session.cells, desc=f"fill {fill}", unit="cell"):
            frame, _ = score_cell(session, cell, chosen)
            values = frame[frame.metric == metric].value
            rows.append({"domain": cell.domain.build().key(), "contamination": cell.contamination.build().key(),
                         "method": cell.method.name, "row": cell.method.label, "fill": fill, "mean": values.mean()})
    return pd.DataFrame(rows)


def rank_agreement(means: pd.DataFrame, fills: list[str]) -> pd.DataFrame:
    """Per (domain, contamination): Kendall's tau between the row ranking under ``fills[0]`` and each other fill."""
    out = []
    for (domain, condition), block in means.groupby(["domain", "contamination"], sort=False):
        wide = block.pivot_table(index="row", columns="fill", values="mean", sort=False)
        entry = {"domain": domain, "condition": condition, "rows": len(wide)}
        for fill in fills[1:]:
            entry[f"tau {fills[0]} vs {fill}"] = round(float(kendalltau(wide[fills[0]], wide[fill]).statistic), 3)
        top = {f: wide[f].idxmax() for f in fills}
        entry["best row per fill"] = "; ".join(f"{f}: {r}" for f, r in top.items())
        out.append(entry)
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a finished run directory with kept masks")
    ap.add_argument("--metric", default="ins_del", help="a budget-matched metric (default ins_del)")
    ap.add_argument("--fills", default="zero,mean,noise", help="comma-separated fills; the first is the reference")
    ap.add_argument("--means", type=Path, help="also write every block's means per fill to this CSV")
    args = ap.parse_args()
    fills = args.fills.split(",")
    means = fill_means(args.run_dir, args.metric, fills)
    if args.means:
        means.to_csv(args.means, index=False)
    print(rank_agreement(means, fills).to_markdown(index=False))
    wide = means.pivot_table(index=["domain", "contamination", "row"], columns="fill", values="mean", sort=False)
    print()
    print(wide[fills].round(3).to_markdown())


if __name__ == "__main__":
    main()
