"""Class-wise faithfulness of a multi-label run's L2I rows (the L2I journal's Fig. 2-3, SONYC-UST and
OpenMIC-2018): per explained class, the median drop in that class's probability when the interpreter's
relevant components are removed (``ff_l2i``) and when as many random non-relevant ones are (the
random baseline, ``ff_l2i_random``). "For most classes, interpretations can be considered faithful,
with a significantly positive median compared to random baseline results, which are very close to 0"
(journal sec. V-A.2).

Read from the stored rows only: ``RUN_DIR/tables/classwise.csv`` (row, domain, condition, class, clips,
both medians) and one figure per condition, ``RUN_DIR/plots/classwise__<condition>.png|.pdf``: a panel
per (domain, L2I row), paired bars per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audiobench.kernel.figures import pyplot, save
from audiobench.store.records import Manifest

METRICS = ("ff_l2i", "ff_l2i_random")


def classwise_medians(frame: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Median of ``ff_l2i`` and ``ff_l2i_random`` per (contamination, domain, row, target class) of the
    long rows ``frame``, with the number of (clip, class) rows; the class as its name. Empty when the
    run has neither metric."""
    sub = frame[frame.metric.isin(METRICS)]
    if sub.empty:
        return pd.DataFrame(columns=["contamination", "domain", "row", "class", "clips", *METRICS])
    wide = sub.pivot_table(index=["contamination", "domain", "row", "target"], columns="metric", values="value",
                           aggfunc="median", sort=False)
    counts = sub[sub.metric == METRICS[0]].groupby(["contamination", "domain", "row", "target"], sort=False).size()
    out = wide.reindex(columns=list(METRICS)).assign(clips=counts).reset_index()
    names = np.asarray(classes, dtype=object)
    out["class"] = [names[int(t)] if 0 <= int(t) < len(names) else str(t) for t in out.target]
    return out[["contamination", "domain", "row", "class", "clips", *METRICS]]


def write_classwise(frame: pd.DataFrame, manifest: Manifest, tables: Path, plots: Path) -> list[Path]:
    """For a sigmoid (multi-label) run with L2I rows: the class-wise medians as ``tables/classwise.csv``
    and a figure per condition under ``plots``; the files written (none otherwise)."""
    if manifest.output_kind != "sigmoid":
        return []
    medians = classwise_medians(frame, [str(c) for c in manifest.classes])
    if medians.empty:
        return []
    tables.mkdir(parents=True, exist_ok=True)
    written = [tables / "classwise.csv"]
    medians.to_csv(written[0], index=False, lineterminator="\n", float_format="%.6g")
    plt = pyplot()
    for condition, part in medians.groupby("contamination", sort=False):
        panels = list(dict.fromkeys(zip(part.domain, part.row, strict=True)))
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), squeeze=False, constrained_layout=True)
        for ax, (domain, row) in zip(axes[:, 0], panels, strict=True):
            one = part[(part.domain == domain) & (part.row == row)]
            x = np.arange(len(one))
            ax.bar(x - 0.2, one.ff_l2i, 0.4, label="relevant components removed (FF median)")
            ax.bar(x + 0.2, one.ff_l2i_random, 0.4, label="as many random ones removed (random baseline)")
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xticks(x, [f"{c}\n(n={n})" for c, n in zip(one["class"], one.clips, strict=True)], fontsize=7)
            ax.set_title(f"{manifest.display_name('domain', domain)}: {row}", fontsize=9)
            ax.set_ylabel("median drop in p_c", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
        axes[0, 0].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"Class-wise faithfulness, {manifest.display_name('contamination', condition)}", fontsize=10)
        written += save(fig, plots / f"classwise__{condition}")
    return written
