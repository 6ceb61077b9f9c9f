"""``audiobench report RUN_DIR``: a static HTML report of a finished run, from its stored files only.

Reads ``manifest.json``, ``per_sample.parquet``, ``masks/<cell>.npz`` and ``audio/``; never runs a
model. Writes ``RUN_DIR/report/index.html`` (every script and style inline, no network) and
``RUN_DIR/report/img/`` (one small PNG per kept mask and per input spectrogram). Audio is linked
relatively (``../audio/...``), so the folder opens from disk. Each (domain, condition, clip, target)
is one record of a JSON block the page's script draws lazily, a page of rows at a time
(``loading="lazy"`` images, ``preload="none"`` audio), so a run of any size opens quickly.

Escaping: the JSON is embedded with ``<``, ``>`` and ``&`` as ``\\u003c``... escapes and the script
sets every text through ``textContent``; the tables are built with :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from tqdm.auto import tqdm

from audiobench.report.images import IMAGE_SIZE, MASK_CMAP, SPEC_CMAP, colorbar_png, to_grid, write_pngs
from audiobench.store.records import Manifest, read_manifest

TEMPLATE = Path(__file__).with_name("template.html")
CLIP_COLUMNS = ("p_orig", "pred_orig", "y_true")  # per-clip facts the rows repeat for every method
SPEC_RANGE_DB = 80.0  # spectrogram images span this many dB below each clip's maximum
HIDDEN_METRICS = {"p_in", "p_out", "pred_in", "target_true", *CLIP_COLUMNS}


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>``, no ``<!--``, no ``&`` entity."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def markdown_table_html(text: str) -> str:
    """A pipe table as audiobench renders it (``Table: caption``, ``**bold**`` best values, ``\\|`` escapes)
    -> an escaped HTML ``<table>``. Whatever columns the renderer prints (e.g. confidence intervals) are kept."""
    caption, lines = "", []
    for line in text.splitlines():
        if line.startswith("Table: "):
            caption = line[len("Table: "):]
        elif line.startswith("|"):
            lines.append(line)
    if not lines:
        return ""

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        return [p.strip().replace(r"\|", "|") for p in parts]

    def cell(tag: str, value: str) -> str:
        bold = value.startswith("**") and value.endswith("**") and len(value) > 4
        inner = html.escape(value[2:-2] if bold else value)
        return f"<{tag}>{'<strong>' + inner + '</strong>' if bold else inner}</{tag}>"

    head = "".join(cell("th", c) for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(cell("td", c) for c in cells(line)) + "</tr>" for line in lines[2:])
    return (f"<table class='results'><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _round(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(f"{value:.4g}")


def interpretation_name(folder: Path, sample_id: str, target: int, classes: list[str]) -> str | None:
    """The name (before :func:`audiobench.store.ids.file_stem`) of the WAV of a (clip, target) row's interpretation
    in a method's audio ``folder``, or None when the run did not write it: ``<clip>__<class>`` when a clip has
    several targets (multi-label models, ``targets: all``), else ``<clip>`` (:func:`audiobench.harness.cells.audio_name`)."""
    from audiobench.store.audio import audio_name
    from audiobench.store.ids import file_stem

    for one_per_clip in (False, True):
        if one_per_clip or 0 <= target < len(classes):
            name = audio_name(sample_id, target, classes, one_per_clip)
            if (folder / f"{file_stem(name)}.wav").exists():
                return name
    return None


def domain_of(manifest: Manifest | None, key: str) -> Any:
    """The domain instance a run's domain ``key`` (``stft2mel``, ``stft2mel_log1p``, ``mel``) names, built
    from the manifest's resolved suite; a run recorded before keys existed named its domains by registered
    name. None when this install lacks the domain (a plugin that is not installed here)."""
    from audiobench.contracts.registry import DOMAINS

    for record in (getattr(manifest.suite, "domains", None) or []) if manifest is not None else []:
        entry = record if isinstance(record, dict) else getattr(record, "__dict__", {})
        try:
            dom = DOMAINS.get(entry["name"])(entry.get("params") or {})
        except Exception:  # noqa: BLE001 - not installed here, or parameters this version does not know
            continue
        if dom.key() == key:
            return dom
    try:
        return DOMAINS.get(key)()
    except Exception:  # noqa: BLE001 - a plugin domain that is not installed here
        return None


def is_listenable(domain: str, manifest: Manifest | None = None) -> bool:
    """Whether the run's domain key ``domain`` (resolved through ``manifest`` when given) is listenable."""
    dom = domain_of(manifest, domain)
    return bool(dom is not None and dom.listenable)


def listenable_keys(manifest: Manifest) -> list[str]:
    """The run's listenable domain keys in suite order (:func:`audiobench.store.audio.interpretation_dir`)."""
    keys = list(manifest.order.get("domain") or dict.fromkeys(c.domain for c in manifest.cells))
    return [k for k in keys if is_listenable(k, manifest)]


def _spectrograms(run_dir: Path, manifest: Manifest, domain: str, condition: str,
                  out: Path) -> tuple[dict[str, str], tuple[int, ...] | None]:
    """Sample id -> spectrogram PNG (relative to the report) for the clips whose input WAV the run kept,
    and the domain's grid [1, T, F] of those clips (what every kept mask of the condition is shaped;
    None when no input was kept or the domain cannot be built here)."""
    from audiobench.contracts.frontend import Frontend, FrontendParams
    from audiobench.store.ids import file_stem

    folder = run_dir / "audio" / condition / "input"
    ids = [s for s in manifest.evaluated_ids if (folder / f"{file_stem(s)}.wav").exists()]
    if not ids:
        return {}, None
    try:
        dom = domain_of(manifest, domain)
        frontend = Frontend(FrontendParams(**manifest.suite.frontend))
        waves = [sf.read(folder / f"{file_stem(s)}.wav", dtype="float32")[0] for s in ids]
        length = max(len(w) for w in waves)
        batch = torch.from_numpy(np.stack([np.pad(w, (0, length - len(w))) for w in waves]))
        with torch.no_grad():
            x = dom.represent(frontend, batch).x
            magnitude = dom.magnitude(x)
    except Exception:  # noqa: BLE001 - a domain this install lacks, or odd files: the report shows no spectrogram
        return {}, None
    # the magnitudes the domain's bins stand for (|STFT|, or its mel bands, whatever the grid holds: |X| or
    # log1p|X|): shown in dB, the top SPEC_RANGE_DB of each clip
    db = 20 * torch.log10(magnitude.clamp_min(1e-10))
    top = db.flatten(1).amax(1).view(-1, 1, 1, 1)
    paths = [out / "img" / "spec" / f"{domain}__{condition}" / f"{i}.png" for i in range(len(ids))]
    write_pngs(to_grid(((db - top) / SPEC_RANGE_DB + 1).clamp(0, 1)), paths, SPEC_CMAP)
    return {s: p.relative_to(out).as_posix() for s, p in zip(ids, paths, strict=True)}, tuple(x.shape[1:])


def _disagreement(grids: np.ndarray) -> np.ndarray:
    """Grids [R, M, D] (NaN where a method has no mask) -> [R]: 1 − the mean Pearson correlation over pairs
    of methods' masks of a row (NaN with fewer than two comparable masks). Constant masks are left out."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a method without a mask there
        x = grids - np.nanmean(grids, axis=2, keepdims=True)
        sd = np.sqrt(np.nanmean(x**2, axis=2, keepdims=True))
        z = np.where(sd > 1e-12, x / sd, np.nan)
    ok = ~np.isnan(z).any(axis=2)  # [R, M]
    z = np.nan_to_num(z)
    corr = np.einsum("rmd,rnd->rmn", z, z) / grids.shape[2]
    pair = ok[:, :, None] & ok[:, None, :] & ~np.eye(grids.shape[1], dtype=bool)[None]
    n = pair.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_r = np.where(n > 0, (corr * pair).sum(axis=(1, 2)) / np.maximum(n, 1), np.nan)
    return 1.0 - mean_r


def build_report(run_dir: str | Path) -> Path:
    """Write the HTML report of the finished run ``run_dir`` to ``RUN_DIR/report/``; returns the path of
    its ``index.html``. Raises :class:`AudiobenchError` when ``run_dir`` is not a finished run."""
    from audiobench.store.audio import interpretation_dir
    from audiobench.store.ids import file_stem
    from audiobench.store.masks import check_kept_rows, read_masks
    from audiobench.store.run_dir import load_run
    from audiobench.tables import render_run

    run = Path(run_dir)
    manifest = read_manifest(run)
    frame = load_run(run).rename(columns={"label": "row"})
    out = run / "report"
    shutil.rmtree(out / "img", ignore_errors=True)  # no image of an earlier report survives
    out.mkdir(parents=True, exist_ok=True)
    audio_base = Path("..")  # index.html is in RUN_DIR/report/

    suite = manifest.suite
    classes = [str(c) for c in manifest.classes]
    prompts = manifest.class_prompts
    prompts = [str(p) for p in prompts] if isinstance(prompts, list) and len(prompts) == len(classes) else None
    order_rows = manifest.row_order
    labels = [c.row for c in manifest.cells]
    methods = [r for r in order_rows if r in labels] + [r for r in dict.fromkeys(labels) if r not in order_rows]
    folders = suite.method_folders()
    metric_info = manifest.metrics
    metric_names = [m for m in metric_info if m in set(frame["metric"])]

    listening = listenable_keys(manifest)
    conditions: list[tuple[str, str]] = []
    for c in manifest.cells:
        if (c.domain, c.contamination) not in conditions:
            conditions.append((c.domain, c.contamination))
    selection = {s: i for i, s in enumerate(manifest.evaluated_ids)}

    # per (domain, contamination, row, sample, target): metric values; per clip: p_orig, pred, truth
    key = ["domain", "contamination", "row", "sample_id", "target"]
    wide = frame.pivot_table(index=key, columns="metric", values="value", aggfunc="first")
    clip_cols = [c for c in CLIP_COLUMNS if c in wide.columns]
    clip_info = wide[clip_cols].groupby(level=["domain", "contamination", "sample_id", "target"]).first()
    shown = [m for m in metric_names if m not in HIDDEN_METRICS]

    colorbar_png(out / "img" / "mask_scale.png", MASK_CMAP)
    colorbar_png(out / "img" / "spec_scale.png", SPEC_CMAP)
    records: list[dict[str, Any]] = []
    for ci, (domain, condition) in enumerate(conditions):
        listen = is_listenable(domain, manifest)
        interpretations = interpretation_dir(Path("audio") / condition, domain, listening)  # relative to the run
        specs, shape = _spectrograms(run, manifest, domain, condition, out)
        cells = {c.row: (i, c) for i, c in enumerate(manifest.cells) if (c.domain, c.contamination) == (domain, condition)}
        per_method: dict[str, tuple[dict[tuple[str, int], int], np.ndarray, list[str], dict[int, list[str]]]] = {}
        bar = tqdm(cells.items(), desc=f"report {domain} | {condition}", unit="cell", leave=False, disable=None)
        kept = {row: (run / "masks" / f"{cell.id}.npz") for row, (_, cell) in cells.items()}
        kept = {row: (path, read_masks(path)) for row, path in kept.items() if path.exists()}
        # what every kept mask of this domain and condition must be shaped: the grid of the kept input
        # WAVs (their spectrograms above), else the shape of a strict majority of the cells (unchecked
        # with neither); a misshapen (or foreign) file is an error naming it and the remedy, never drawn
        if shape is None:
            counts = Counter(tuple(st.explanation.mask.shape[1:]) for _, st in kept.values()).most_common(1)
            shape = counts[0][0] if counts and 2 * counts[0][1] > len(kept) else None
        for row, (folder_index, _) in bar:  # the index: short image paths keep the page's data small
            if row not in kept:
                continue
            path, stored = kept[row]
            try:  # the cell's scored (clip, target) rows
                scored = {(str(sid), int(t)) for sid, t in wide.xs((domain, condition, row), level=["domain", "contamination", "row"]).index}
            except KeyError:  # none: every kept row is foreign
                scored = set()
            check_kept_rows(path, stored, scored, shape)
            grid = to_grid(stored.explanation.mask)
            paths = [out / "img" / str(folder_index) / f"{i}.png" for i in range(len(grid))]
            write_pngs(grid, paths, MASK_CMAP)
            index = {(s, int(t)): i for i, (s, t) in enumerate(zip(stored.sample_ids, stored.targets, strict=True))}
            parts: dict[int, list[str]] = {}
            if stored.explanation.parts is not None:
                for r, pname in zip(stored.explanation.parts.rows.tolist(), stored.explanation.parts.names, strict=True):
                    parts.setdefault(int(r), []).append(pname)
            per_method[row] = (index, grid, [p.relative_to(out).as_posix() for p in paths], parts)
        block = clip_info.xs((domain, condition), level=["domain", "contamination"]) if len(clip_info) else clip_info
        keys = sorted(block.index.tolist(), key=lambda k: (selection.get(k[0], len(selection)), k[0], k[1]))
        grids = np.full((len(keys), len(methods), IMAGE_SIZE[0] * IMAGE_SIZE[1]), np.nan, dtype=np.float32)
        for mi, m in enumerate(methods):
            if m in per_method:
                index, grid = per_method[m][:2]
                for ri, k in enumerate(keys):
                    if (k[0], int(k[1])) in index:
                        grids[ri, mi] = grid[index[(k[0], int(k[1]))]].reshape(-1)
        dis = _disagreement(grids) if len(keys) else np.zeros(0)
        input_dir = run / "audio" / condition / "input"
        for ri, (sid, target) in enumerate(keys):
            info = block.loc[(sid, target)]
            stem = file_stem(sid)
            rec: dict[str, Any] = {
                "c": ci, "sid": sid, "t": int(target),
                "y": None if "y_true" not in info or pd.isna(info["y_true"]) else int(info["y_true"]),
                "pred": None if "pred_orig" not in info or pd.isna(info["pred_orig"]) else int(info["pred_orig"]),
                "conf": _round(info.get("p_orig", np.nan)),
                "dis": _round(float(dis[ri])),
                "spec": specs.get(sid),
                "input": (audio_base / "audio" / condition / "input" / f"{stem}.wav").as_posix()
                if (input_dir / f"{stem}.wav").exists() else None,
                "m": [],
            }
            for m in methods:
                entry: dict[str, Any] | None = None
                if m in per_method and (sid, int(target)) in per_method[m][0]:
                    i = per_method[m][0][(sid, int(target))]
                    entry = {"img": per_method[m][2][i]}
                    try:
                        values = wide.loc[(domain, condition, m, sid, target)]
                        entry["v"] = [_round(float(values[k])) if k in values and pd.notna(values[k]) else None
                                      for k in shown]  # aligned with data["metrics"]
                    except KeyError:
                        entry["v"] = [None] * len(shown)
                    folder = run / interpretations / folders.get(m, "")
                    name = interpretation_name(folder, sid, int(target), classes)
                    if listen and m in folders and name is not None:
                        rel = audio_base / interpretations / folders[m]
                        entry["wav"] = (rel / f"{file_stem(name)}.wav").as_posix()
                        entry["parts"] = [[p, (rel / f"{file_stem(f'{name}__{p}')}.wav").as_posix()]
                                          for p in per_method[m][3].get(i, [])
                                          if (folder / f"{file_stem(f'{name}__{p}')}.wav").exists()]
                rec["m"].append(entry)
            records.append(rec)

    data = {
        "run": str(suite.name or run.name),
        "methods": methods,
        "conditions": [{"domain": d, "contamination": c,
                        "label": f"{manifest.display_name('domain', d)} — {manifest.display_name('contamination', c)}"}
                       for d, c in conditions],
        "classes": classes,
        "prompts": prompts,
        "metrics": [{"name": m, "display": metric_info[m].display or m,
                     "hib": metric_info[m].higher_is_better} for m in shown],
        "rows": records,
    }
    for rec in records:  # audio links are URLs: percent-encode every path segment
        for k in ("input",):
            if rec[k]:
                rec[k] = quote(rec[k])
        for e in rec["m"]:
            if e and "wav" in e:
                e["wav"] = quote(e["wav"])
                e["parts"] = [[n, quote(p)] for n, p in e["parts"]]
    tables = "\n".join(markdown_table_html(t) for t in render_run(run, "markdown", write=False).values())
    acc = manifest.accuracy
    accuracy = []
    if acc.clean_test_macro_auprc is not None:  # multi-label
        accuracy.append(f"clean test macro-AUPRC {acc.clean_test_macro_auprc:.3f}")
    elif acc.clean_test is not None:
        accuracy.append(f"clean test accuracy {100 * acc.clean_test:.1f}%")
    for c, v in acc.evaluated.items():
        if v is not None:
            accuracy.append(f"{manifest.display_name('contamination', c)}: {100 * v:.1f}% on the evaluated clips")
    model_name = manifest.model_name
    values = {
        "title": html.escape(f"audiobench report — {data['run']}"),
        "heading": html.escape(f"{data['run']}: {suite.description or ''}".rstrip(": ")),
        "accuracy": html.escape(f"{model_name}: " + "; ".join(accuracy) if accuracy else ""),
        "audio_n": html.escape(str(suite.audio.get("n", 0))),
        "tables": tables,
        "data": _json_for_script(data),
    }
    # one pass, so a placeholder-like text inside a value is never substituted again
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
