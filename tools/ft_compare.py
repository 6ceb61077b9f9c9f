"""How far each fine-tuned L-MAC row moved from the base L-MAC row, read from a finished run.

    python tools/ft_compare.py results/quickstart

Per (domain, condition, FT row): the gated share of its fit (train, over all epochs), the mean
absolute difference between its kept masks and the base row's on the same clips, and both rows'
mask mean (MM) and SPS from the stored per-sample values. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from audiobench.store.masks import read_masks
from audiobench.store.records import read_manifest
from audiobench.store.run_dir import load_run


def compare(run_dir: Path) -> pd.DataFrame:
    """One row per fine-tuned L-MAC cell: gated share, |M_FT - M_base| and MM / SPS of both rows."""
    manifest = read_manifest(run_dir)
    frame = load_run(run_dir)
    means = frame[frame.metric.isin(["mm", "sps"])].groupby(["domain", "contamination", "row", "metric"]).value.mean()
    # the base row of an FT row is the L-MAC cell whose fit is the FT fit's stage 1 (same key)
    base = {(c.domain, c.contamination, c.fit.get("key")): c for c in manifest.cells if c.method == "lmac" and "base" not in c.fit}
    rows = []
    for c in manifest.cells:
        if c.method != "lmac" or "base" not in c.fit:
            continue
        b = base[(c.domain, c.contamination, c.fit["base"].get("key"))]
        ft_masks = read_masks(run_dir / "masks" / f"{c.id}.npz").explanation.mask
        base_masks = read_masks(run_dir / "masks" / f"{b.id}.npz").explanation.mask
        rows.append({
            "domain": c.domain, "condition": c.contamination, "row": c.row,
            "gated_share": c.fit.get("gated_share"),
            "mean |M_FT - M_base|": float((ft_masks - base_masks).abs().mean()),
            "MM base": means.get((c.domain, c.contamination, b.row, "mm")),
            "MM FT": means.get((c.domain, c.contamination, c.row, "mm")),
            "SPS base": means.get((c.domain, c.contamination, b.row, "sps")),
            "SPS FT": means.get((c.domain, c.contamination, c.row, "sps")),
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory with kept masks (RUN_DIR/masks)")
    args = parser.parse_args()
    print(compare(args.run_dir).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
