"""What LMAC-ZS's loss (eq. 6-7) prefers for an unrelated prompt: the learnt mask or an empty one.

The LMAC-ZS paper's Fig. 4 shows empty masks for prompts unrelated to the clip. A decoder trained
with eq. 6 can only learn that where an empty mask costs less than the mask it gives. For every
clip i of the suite's evaluated split (clean) and every prompt j other than the predicted one p,
with the trained decoder's masks M_j = M(t_j, h_i) and the empty mask::

    keep_ij  = |C_ij - t_j . f(M_j X_i)|  + lambda_l1 * mean(M_j) + lambda_div * |t_p . t_j - f(M_p X_i) . f(M_j X_i)|
    empty_ij = |C_ij - t_j . f(0)|        + 0                     + lambda_div * |t_p . t_j - f(M_p X_i) . f(0)|

(f: unit-norm audio embedding, C_ij = t_j . f(X_i), the lambdas the suite's). Prints, per domain,
the mean of each term, of keep and empty, and the share of (clip, prompt) pairs where the empty
mask costs less. Reads the run's cache like ``audiobench run`` (shipped artefacts are used).

    .venv/bin/python tools/lmac_zs_tradeoff.py suites/synth_zs.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

from audiobench.harness.session import prepare
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import ExplainContext
from audiobench.methods.lmac_zs import LMACZS, zero_shot_model
from audiobench.suite import Suite, load_suite


def tradeoff(suite: Suite | str, output: Path, limit: int | None = None) -> list[dict[str, float | str | bool]]:
    """One record per masking domain of ``suite`` (see the module docstring); ``limit`` clips at most."""
    session = prepare(suite, output=output, limit=limit, progress=False)
    rows = []
    for cell in session.cells:
        if cell.method.name != "lmac_zs" or cell.contamination.name != "none":
            continue
        explainer, _, _ = session.explainer(cell)
        assert isinstance(explainer, LMACZS)
        p = explainer.params
        model = session.model(cell)
        clf = zero_shot_model(model, "lmac_zs")
        prompts = clf.prompt_embeddings()
        x = model.domain.represent(model.frontend, session.evaluated.waveforms.to(session.device)).x
        n, k = x.shape[0], prompts.shape[0]

        def embed(z: torch.Tensor, clf=clf, model=model) -> torch.Tensor:
            return F.normalize(clf.audio_embedding(model.network_input(z)), dim=-1)

        with torch.no_grad():
            sim = embed(x) @ prompts.T  # C [n, k]
            pred = sim.argmax(1)
            masks = torch.stack([explainer.explain_prompts(x, prompts[j].expand(n, -1), ExplainContext(model))
                                 for j in range(k)], dim=1)  # [n, k, 1, T, F]
            masked = torch.stack([embed(masks[:, j] * x) for j in range(k)], dim=1)  # [n, k, d]
            silent = embed(torch.zeros_like(x[:1]))[0]  # f(0)
            own = masked[torch.arange(n), pred]  # f(M_p X_i)
            tt = prompts[pred] @ prompts.T  # t_p . t_j
            keep_sim = (sim - torch.einsum("nkd,kd->nk", masked, prompts)).abs()
            empty_sim = (sim - (silent @ prompts.T)[None]).abs()
            keep_l1 = masks.flatten(2).mean(-1)
            keep_div = (tt - torch.einsum("nd,nkd->nk", own, masked)).abs()
            empty_div = (tt - (own @ silent)[:, None]).abs()
        keep = keep_sim + p.lambda_l1 * keep_l1 + p.lambda_div * keep_div
        empty = empty_sim + p.lambda_div * empty_div
        off = torch.ones(n, k, dtype=torch.bool)
        off[torch.arange(n), pred] = False
        rows.append({
            "domain": cell.domain.name, "lambda_l1": p.lambda_l1, "lambda_div": p.lambda_div, "gate": p.gate,
            "mm_unrelated": float(keep_l1[off].mean()),
            "sim_err_keep": float(keep_sim[off].mean()), "sim_err_empty": float(empty_sim[off].mean()),
            "div_keep": float(keep_div[off].mean()), "div_empty": float(empty_div[off].mean()),
            "loss_keep": float(keep[off].mean()), "loss_empty": float(empty[off].mean()),
            "share_empty_cheaper": float((empty < keep)[off].float().mean()),
            "predicted_sim_err_empty": float(empty_sim[~off].mean()),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", help="a zero-shot suite with an lmac_zs method, e.g. suites/synth_zs.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a suite key, as `audiobench run --set` (e.g. dataset.root=/data/ESC-50)")
    ap.add_argument("--limit", type=int, default=None, help="explain only this many clips (stratified)")
    args = ap.parse_args(argv)
    try:
        suite = load_suite(args.suite, args.overrides)
        if not any(m.name == "lmac_zs" for m in suite.methods):
            raise AudiobenchError(f"{args.suite} has no lmac_zs method")
        with tempfile.TemporaryDirectory() as tmp:
            rows = tradeoff(suite, Path(tmp), args.limit)
    except AudiobenchError as exc:
        print(f"lmac_zs_tradeoff: error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"lmac_zs_tradeoff: error: {args.suite} has no lmac_zs method with a clean ('none') condition", file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
