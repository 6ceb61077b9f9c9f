"""Why L-MAC's fine-tuning gate (CCT) opens or not: similarity distributions on the training clips.

For every masking domain of a suite's ``lmac{finetune: ...}`` rows, with the stage-1 decoder the
suite trains (shipped artefacts are used, as ``audiobench run`` does), this prints, on the training
clips (clean, and each augmenting contamination the fine-tuning also draws from), the quantiles
(0/10/50/90/100 %) and the share above 0.6 and 0.7 of the similarity between the stage-1 mask M
and the clean target X, in four forms:

- ``cos(M, bin X)``: cosine of the mask and the binarised clean representation (the oracle,
  X >= ``oracle_threshold`` x its max), what the paper's text describes (sec. 2.1) and the gate
  audiobench used before ``LMAC_FT_CODE_VERSION`` 2;
- ``cos(X, M*X)``: cosine of the clean representation and the masked input, what the SpeechBrain
  recipe computes (``crosscor``, ``crosscortype: dotp``) and the gate audiobench uses
  (:func:`audiobench.methods.lmac_objective.gate_similarity`);
- ``pearson(M, bin X)`` and ``pearson(X, M*X)``: the same with the means removed (the recipe's
  ``crosscortype: conv``, whose template covers the whole spectrogram);

and the mean of M, of the oracle, and of M where the oracle is 1 and where it is 0.

    OMP_NUM_THREADS=1 .venv/bin/python tools/ft_gate.py suites/quickstart.yaml [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from audiobench.data.contaminations import NoContamination, with_augmentation
from audiobench.harness.session import prepare
from audiobench.methods.base import FitContext
from audiobench.methods.lmac import LMAC
from audiobench.methods.lmac_objective import gate_similarity, oracle_mask

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    return F.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True), dim=1)


def summary(values: torch.Tensor) -> dict[str, Any]:
    """Quantiles and the shares above the paper's two thresholds (0.6 default, 0.7 in its tables)."""
    v = values.double()
    return {
        "q": [round(float(v.quantile(q)), 3) for q in QUANTILES],
        "above_0.6": round(float((v > 0.6).double().mean()), 3),
        "above_0.7": round(float((v > 0.7).double().mean()), 3),
    }


class _Stage1Spec:
    """A method spec standing for an FT row's stage 1 (the same L-MAC without ``finetune``): what
    :meth:`Session.explainer` builds and fits, so the fit is the run's own (same context, cache key)."""

    name = "lmac"

    def __init__(self, params: Any, contexts: list[FitContext]):
        self.params, self.contexts = params, contexts

    def build(self) -> LMAC:
        stage1, contexts = LMAC(self.params), self.contexts

        def fit(ctx: FitContext) -> dict[str, Any]:
            contexts.append(ctx)  # the augmentations the fine-tuning draws from
            return LMAC.fit(stage1, ctx)

        stage1.fit = fit  # type: ignore[method-assign]
        return stage1


def gate_report(suite: str | Path, output: Path, batch: int = 64) -> list[dict[str, Any]]:
    """One record per (domain, stage-1 fit, training version) of the suite's fine-tuned L-MAC rows."""
    session = prepare(suite, output=output, progress=False)
    records = []
    seen: set[str] = set()
    for cell in session.cells:
        params = cell.method.build().params if cell.method.name == "lmac" else None
        ft = getattr(params, "finetune", None)
        base = params.model_copy(update={"finetune": None}) if ft is not None else None
        domain = cell.domain.build()
        ident = json.dumps([domain.key(), base.model_dump(mode="json") if base else None, getattr(ft, "oracle_threshold", 0)])
        if ft is None or ident in seen:
            continue
        seen.add(ident)
        contexts: list[FitContext] = []
        stage1_cell = replace(cell, id=f"{cell.id}#stage1", method=_Stage1Spec(base, contexts))
        stage1, _, _ = session.explainer(stage1_cell)  # type: ignore[arg-type]
        assert isinstance(stage1, LMAC) and stage1.decoder is not None and contexts
        ctx, model = contexts[0], session.model(cell)
        names = [NoContamination().key()] + [c.key() for c in ctx.augment]
        for name, version in zip(names, with_augmentation(ctx.train, ctx.augment, ctx.seed), strict=True):
            cols: dict[str, list[torch.Tensor]] = {}
            with torch.no_grad():
                for i in range(0, len(version), batch):
                    x = model.domain.represent(model.frontend, version.waveforms[i : i + batch].to(session.device)).x
                    xc = model.domain.represent(model.frontend, version.uncontaminated[i : i + batch].to(session.device)).x
                    m = stage1._mask(stage1.decoder, model, x)
                    o = oracle_mask(xc, ft.oracle_threshold)
                    on = (m * o).flatten(1).sum(1) / o.flatten(1).sum(1).clamp_min(1)
                    off = (m * (1 - o)).flatten(1).sum(1) / (1 - o).flatten(1).sum(1).clamp_min(1)
                    for k, v in {
                        "cos(M, bin X)": F.cosine_similarity(m.flatten(1), o.flatten(1), dim=1),
                        "cos(X, M*X)": gate_similarity(m, x, xc),
                        "pearson(M, bin X)": _pearson(m, o),
                        "pearson(X, M*X)": _pearson(xc, m * x),
                        "mask_mean": m.flatten(1).mean(1), "oracle_mean": o.flatten(1).mean(1),
                        "mask_on_oracle": on, "mask_off_oracle": off,
                    }.items():
                        cols.setdefault(k, []).append(v.cpu())
            data = {k: torch.cat(v) for k, v in cols.items()}
            records.append({
                "domain": domain.key(), "rows": list(dict.fromkeys(c.method.label for c in session.cells if c.domain.build().key() == domain.key()
                                                 and c.method.name == "lmac" and c.method.build().params.finetune is not None)),
                "version": name, "n": len(version), "oracle_threshold": ft.oracle_threshold,
                **{k: summary(v) for k, v in data.items() if "(" in k},
                **{k: round(float(v.mean()), 3) for k, v in data.items() if "(" not in k},
            })
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite", nargs="?", default="suites/quickstart.yaml")
    ap.add_argument("--output", type=Path, default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the records here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        records = gate_report(args.suite, args.output or Path(tmp) / "run")
    for r in records:
        print(f"\n[{r['domain']}] stage 1 of {', '.join(r['rows'])} - training clips, {r['version']} (n={r['n']}), oracle >= "
              f"{r['oracle_threshold']:g} x max; mask mean {r['mask_mean']}, oracle mean {r['oracle_mean']}, "
              f"mask on/off oracle {r['mask_on_oracle']}/{r['mask_off_oracle']}")
        for k, v in r.items():
            if isinstance(v, dict):
                print(f"  {k:18s} q0/10/50/90/100 {v['q']}  >0.6 {v['above_0.6']:.3f}  >0.7 {v['above_0.7']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
