"""``audiobench table RUN_DIR --mos``: mean opinion scores of a run's listening test.

Layout of the L-MAC paper's Table 3 (Paissan et al., ICML 2024): one row per method, one MOS column per
set of recordings (here: per condition of the run, e.g. in-domain and 3 dB mixtures), plus the hidden
reference and the anchor. A cell is the mean rating (0-100) over the kept listeners' ratings with its 95%
confidence interval, mean ± t(0.975, n−1)·s/√n (Student's t over the n ratings, as the MUSHRA
recommendation ITU-R BS.1534-3 sec. 9.1.2 computes it).

Post-screening (ITU-R BS.1534-3 sec. 4.1.2): a listener who rates the hidden reference below 90 on more
than 15 % of the trials they rated is excluded; the caption counts them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from audiobench.kernel.errors import AudiobenchError
from audiobench.listen.trials import ANCHOR, REFERENCE

SCREEN_SCORE = 90  # the hidden reference should be rated at least this...
SCREEN_FRACTION = 0.15  # ...on all but this fraction of a listener's trials


def load_ratings(run_dir: str | Path) -> pd.DataFrame:
    """Every stored rating: ``listener, trial, condition, sample_id, stimulus, score, position, created``.
    Raises :class:`AudiobenchError` when the run has no listening database."""
    db = Path(run_dir) / "listening.sqlite"
    if not db.exists():
        raise AudiobenchError(f"no listening test results in {run_dir} (run `audiobench listen {run_dir}` first)")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return pd.read_sql_query("SELECT * FROM ratings", conn)
    except (sqlite3.Error, pd.errors.DatabaseError):
        # a WAL database in a read-only directory cannot create its -shm file: read the file as it is
        # (immutable: no locking, no journal), which is what a finished, copied test is
        try:
            with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as conn:
                return pd.read_sql_query("SELECT * FROM ratings", conn)
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise AudiobenchError(f"cannot read the listening test results {db}: {exc}") from None


def screen(ratings: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """MUSHRA post-screening: (the ratings of the kept listeners, the excluded listeners' names)."""
    ref = ratings[ratings["stimulus"] == REFERENCE]
    low = (ref["score"] < SCREEN_SCORE).groupby(ref["listener"]).mean()
    excluded = sorted(low[low > SCREEN_FRACTION].index)
    return ratings[~ratings["listener"].isin(excluded)], excluded


def mos_frame(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per (stimulus, condition): ``n``, ``mean``, ``ci_low``, ``ci_high`` (95%, Student's t; NaN for n < 2)."""
    g = ratings.groupby(["stimulus", "condition"])["score"]
    out = g.agg(n="count", mean="mean", sd="std").reset_index()
    half = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
    half = half.where(out["n"] > 1)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out.drop(columns="sd")


def render_mos(run_dir: str | Path, fmt: str | None = None) -> str:
    """The MOS table of ``run_dir``'s listening test as Markdown (default), CSV or LaTeX."""
    from audiobench.store.records import read_manifest

    manifest = read_manifest(run_dir)
    ratings = load_ratings(run_dir)
    if ratings.empty:
        raise AudiobenchError(f"the listening test of {run_dir} has no ratings yet")
    kept, excluded = screen(ratings)
    n_listeners = ratings["listener"].nunique()
    frame = mos_frame(kept) if not kept.empty else pd.DataFrame(columns=["stimulus", "condition", "n", "mean",
                                                                          "ci_low", "ci_high"])
    conditions = [c for c in dict.fromkeys(c.contamination for c in manifest.cells) if c in set(ratings["condition"])]
    order = list(manifest.order.get("row") or [])
    anchor_row = next((c.row for c in manifest.cells if c.method == "random"), "Random")
    methods = [m for m in order if m in set(ratings["stimulus"])] + sorted(
        set(ratings["stimulus"]) - set(order) - {REFERENCE, ANCHOR})
    stimuli = [*methods, REFERENCE, ANCHOR]
    names = {REFERENCE: "Hidden reference", ANCHOR: f"Anchor ({anchor_row})"}
    caption = (f"Mean opinion scores (0-100) with 95% confidence intervals, {kept['listener'].nunique()} listeners "
               f"of {n_listeners} kept; {len(excluded)} excluded by MUSHRA post-screening (hidden reference rated "
               f"below {SCREEN_SCORE} in more than {SCREEN_FRACTION:.0%} of their trials).")
    cell = frame.set_index(["stimulus", "condition"])
    fmt = fmt or "markdown"
    if fmt == "csv":
        rows = []
        for s in stimuli:
            for c in conditions:
                v = cell.loc[(s, c)] if (s, c) in cell.index else None
                rows.append({"method": names.get(s, s), "condition": c,
                             **({k: v[k] for k in ("n", "mean", "ci_low", "ci_high")} if v is not None else {})})
        return pd.DataFrame(rows).to_csv(index=False)

    def text(s: str, c: str) -> str:
        if (s, c) not in cell.index:
            return "–"
        v = cell.loc[(s, c)]
        return f"{v['mean']:.1f}" + ("" if np.isnan(v["ci_low"]) else f" ± {(v['ci_high'] - v['ci_low']) / 2:.1f}")

    headers = ["Method", *(f"MOS ({manifest.display_name('contamination', c)})" for c in conditions)]
    body = [[names.get(s, s), *(text(s, c) for c in conditions)] for s in stimuli]
    if fmt == "latex":
        from audiobench.tables import latex_escape

        lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
                 r"\begin{tabular}{l" + "r" * len(conditions) + "}", r"\toprule",
                 " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(x).replace("±", r"$\pm$").replace("–", "--") for x in row) + r" \\"
                  for row in body]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    table = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True,
                     colalign=("left",) + ("right",) * len(conditions))
    return f"Table: {caption}\n\n{table}\n"
