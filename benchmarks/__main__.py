"""audiobench's speed and memory benchmark: one entry, six measurements, ratios within one run.

    python -m benchmarks [--device cpu|cuda] [--quick] [--only 1,2,3,4,5,6,7,8,9] [--output benchmarks/results.md]

On the same synthetic clips and the quickstart's classifier architecture (CNN14, width 8, depth 4,
2 s clips, the stft2mel domain), it measures:

1. the metric engine (AI AD AG FF Fid-In on N clips) against its floor, the three batched forward
   passes p(X), p(M X), p((1-M) X) it needs;
2. SPS + COMP, ours against Quantus 0.6 on identical arrays at N = 10, 100, 1000 masks (values
   compared to 1e-6);
3. each method's explanation time per clip, and our wrapper's overhead over calling Captum
   directly with the same arguments (methods built on Captum);
4. one cell end to end (explain + score every clip): the reference code's per-clip loop against
   our batches, per method;
5. peak memory (RSS; on a GPU also allocated) of a cell against the number of clips N, each N in a
   fresh process;
6. the quickstart's wall time, cold (empty cache: the shipped artefacts are used) with 1 and 2
   workers, and warm (every cell stored: only the join);
7. the budget-matched family (insertion and deletion at the default budgets, the fill-only input and
   each row's own mask mean) against its floor: that many batched forward passes of N clips;
8. the perturbation methods (occlusion: time windows, frequency bands, patches; LIME and Kernel SHAP
   on segments and NMF parts) against their floor: as many rows (clips x perturbations, plus the
   unperturbed clips for occlusion) in full batched forward passes;
9. the trained decoders (PIQ, L-MAC) against their floor: one batched pass of the classifier's blocks (the
   features the decoder reads: one model evaluation per clip).

Absolute times depend on the machine; the ratios are measured in one run and are comparable. The
targets (on a 2-core CPU) are printed beside each ratio. Results go to ``--output`` with a
description of the machine, including its load average (other processes disturb timings).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
METHOD_PARAMS = {  # the quickstart's parameters
    "smoothgrad": {"n_samples": 25, "stdev": 0.15},
    "integrated_gradients": {"n_steps": 50},
    "gradcam": {"layer": "last"},
    "gradcam_pp": {"layer": "last"},
    "guided_gradcam": {"layer": "last"},
    "shap": {"n_samples": 20},
    "lmac": {"epochs": 1, "blocks": 3, "hidden": 16, "batch_size": 32},  # a minimal fit: what is timed is explaining
    "l2i": {"epochs": 1, "k": 32, "nmf_iter": 10, "channels": 32, "batch_size": 32},
    "piq": {"epochs": 1, "dim": 32, "lr": 0.002},  # the quickstart's D; a minimal fit: what is timed is explaining
    # the CPU size of docs/lmac_td.md (not the recipe's 256-wide, 8+2-layer SepFormer); a minimal fit
    "lmac_td": {"epochs": 1, "kernel_size": 32, "n_filters": 32, "channels": 32, "chunk": 100, "layers": 1,
                "intra_layers": 1, "inter_layers": 1, "heads": 4, "ffn": 64, "blocks": 3, "hidden": 16, "batch_size": 16},
}
ENGINE_METRICS = ["ai", "ad", "ag", "ff", "fid_in"]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed_pair(a: Callable[[], Any], b: Callable[[], Any], dev: torch.device, repeat: int = 5) -> tuple[float, float]:
    """Best wall times of ``a`` and of ``b``, called alternately ``repeat`` times each, so a ratio of the
    two is not moved by the machine's load drifting between two blocks of calls."""
    best = [math.inf, math.inf]
    for _ in range(repeat):
        for i, fn in enumerate((a, b)):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], best[1]


def timed(fn: Callable[[], Any], dev: torch.device, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, seconds (device work included)."""
    best = math.inf
    for _ in range(repeat):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict[str, Any]:
    """Platform, CPU model, cores, threads, torch version, GPU and the load average now."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Bench:
    """The shared setup: a classifier of the quickstart's shape, a domain model, N synthetic clips."""

    def __init__(self, device: str, clips: int, seed: int = 0):
        from audiobench.contracts.domains import Stft2Mel
        from audiobench.contracts.frontend import Frontend
        from audiobench.harness.cells import explain_rows
        from audiobench.kernel.malloc import tune_allocator
        from audiobench.methods.base import DomainModel
        from audiobench.models.cnn14 import Cnn14

        tune_allocator()
        self.dev = torch.device(device)
        torch.manual_seed(seed)
        self.frontend = Frontend().to(self.dev)
        self.classifier = Cnn14(10, 80, width=8, depth=4).to(self.dev).eval().requires_grad_(False)
        self.model = DomainModel(self.classifier, Stft2Mel(), self.frontend).eval()
        self.max_rows = explain_rows(self.dev)
        self.waves = synth_waves(clips)
        self.rep = self.model.domain.represent(self.frontend, self.waves.to(self.dev))
        self.x = self.rep.x
        with torch.no_grad():
            self.target = self.model(self.x).argmax(-1)

    def method(self, name: str) -> Any:
        """The method ``name`` with the quickstart's parameters (trainable ones: a one-epoch fit)."""
        from audiobench.contracts.registry import METHODS
        from audiobench.data.base import ClipSet
        from audiobench.methods.base import FitContext

        method = METHODS.get(name)(METHOD_PARAMS.get(name, {}))
        if method.trainable:
            n = len(self.waves)
            clips = ClipSet(self.waves, torch.arange(n) % 10, [f"b{i}" for i in range(n)], [str(c) for c in range(10)], 16000)
            with tempfile.TemporaryDirectory() as tmp:
                old = os.environ.get("AUDIOBENCH_CACHE")
                os.environ["AUDIOBENCH_CACHE"] = tmp
                try:
                    method.fit(FitContext(self.model, clips, clips, [], 0, self.dev, {"benchmark": name}, Path(tmp) / "logs",
                                          progress=False, max_rows=self.max_rows))
                finally:
                    if old is None:
                        os.environ.pop("AUDIOBENCH_CACHE")
                    else:
                        os.environ["AUDIOBENCH_CACHE"] = old
        return method

    def ctx(self, seed: int = 0) -> Any:
        from audiobench.methods.base import ExplainContext

        return ExplainContext(self.model, seed=seed, max_rows=self.max_rows)


def synth_waves(n: int, seconds: float = 2.0, per_class: int | None = None) -> torch.Tensor:
    """``n`` clips of the synthetic dataset (10 classes), its test split repeated when n exceeds it
    (``per_class``: clips per class generated, by default enough for ``n`` up to 100)."""
    from audiobench.contracts.registry import DATASETS

    per_class = per_class or max(5, min(50, math.ceil(n / 2)))
    clips = DATASETS.get("synth")({"classes": 10, "clips_per_class": per_class, "seconds": seconds}).load("test", 16000)
    reps = math.ceil(n / len(clips))
    return clips.waveforms.repeat(reps, 1)[:n].contiguous()


# 1 ---------------------------------------------------------------------------------------------
def engine_vs_floor(b: Bench) -> dict[str, Any]:
    """Scoring N clips with AI AD AG FF Fid-In (p(X) included) against the three batched passes."""
    from audiobench.contracts.explanation import Explanation
    from audiobench.contracts.registry import METRICS
    from audiobench.contracts.targets import TargetParams
    from audiobench.harness.engine import score_rows

    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(b.x.shape, generator=g) ** 2).to(b.dev)
    metrics = [METRICS.get(m) for m in ENGINE_METRICS]
    step = b.max_rows

    def engine() -> None:
        with torch.no_grad():
            scores = torch.cat([b.model(b.x[i : i + step]) for i in range(0, len(b.x), step)])
        values, _, _ = score_rows(b.model, b.x, Explanation(mask), scores, b.target, metrics, None, TargetParams(), step)
        for v in values.values():
            v.cpu()

    def floor() -> None:
        with torch.no_grad():
            for part in (b.x, mask * b.x, (1 - mask) * b.x):
                for i in range(0, len(part), step):
                    b.model(part[i : i + step])

    engine()
    floor()
    t_engine, t_floor = timed(engine, b.dev), timed(floor, b.dev)
    return {"clips": len(b.x), "engine_s": t_engine, "floor_s": t_floor, "ratio": t_engine / t_floor, "target": "<= 1.3"}


# 7 ---------------------------------------------------------------------------------------------
def budget_vs_floor(b: Bench, maps: str = "continuous") -> dict[str, Any]:
    """The budget passes of N clips (default budgets, zero fill) against as many plain batched passes.
    ``maps``: ``continuous`` (distinct values, as gradient maps) or ``relu`` (30 % exact zeros, as ReLU'd
    CAMs: the zeros tie)."""
    from audiobench.metrics.budget import Budget, budget_curves

    g = torch.Generator().manual_seed(1)
    u = torch.rand(b.x.shape, generator=g)
    mask = (u**2 if maps == "continuous" else ((u - 0.3).clamp_min(0) / 0.7) ** 2).to(b.dev)
    step = b.max_rows
    budget = Budget()
    with torch.no_grad():
        p = torch.cat([b.model(b.x[i : i + step]) for i in range(0, len(b.x), step)]).softmax(-1)
    p_t = p.gather(1, b.target.view(-1, 1)).squeeze(1)
    decided = p.argmax(-1) == b.target
    inner = [k for k in budget.points() if 0 < k < 1]
    passes = 2 * len(inner) + 3  # insertion and deletion per inner budget, the fill alone, own mean (both)

    def family() -> None:
        c = budget_curves(b.model, b.x, mask, b.target, p_t, decided, "softmax", 0.5, budget, step)
        c.ins.cpu()

    def floor() -> None:
        with torch.no_grad():
            for _ in range(passes):
                for i in range(0, len(b.x), step):
                    b.model(b.x[i : i + step])

    family()
    floor()
    t_family, t_floor = timed_pair(family, floor, b.dev)
    return {"maps": maps, "clips": len(b.x), "passes": passes, "family_s": t_family, "floor_s": t_floor,
            "ratio": t_family / t_floor, "target": "<= 1.3"}


# 8 ---------------------------------------------------------------------------------------------
PERTURBATION_ROWS = {  # the quickstart's perturbation rows
    "occlusion (time)": ("occlusion", {"shape": "time", "window": 8}),
    "occlusion (frequency)": ("occlusion", {"shape": "frequency", "band": 32}),
    "occlusion (patch)": ("occlusion", {"shape": "patch", "window": 16, "band": 64}),
    "lime (time)": ("lime", {"components": "time", "window": 16, "n_samples": 200}),
    "kernel_shap (patch)": ("kernel_shap", {"components": "patch", "window": 32, "band": 128, "n_samples": 200}),
    "lime (nmf)": ("lime", {"components": "nmf", "n_components": 8, "n_samples": 200}),
}


def _perturbations(method: Any, t: int, f: int) -> int:
    """Model evaluations per clip besides the unperturbed one: windows (occlusion) or samples (LIME, Kernel SHAP)."""
    return int(method.windows(t, f).shape[0]) if hasattr(method, "windows") else int(method.params.n_samples)


def perturbation_vs_floor(b: Bench, label: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A perturbation method explaining N clips against its floor: its rows (N x perturbations + N
    unperturbed) pushed through the model in full passes of ``max_rows``, nothing else."""
    from audiobench.contracts.registry import METHODS

    method = METHODS.get(name)(params)
    perturbations = _perturbations(method, b.x.shape[-2], b.x.shape[-1])
    rows = len(b.x) * (perturbations + (0 if hasattr(method, "draw") else 1))  # a surrogate's first sample is the clip
    step = b.max_rows
    block = b.x[:step].repeat(math.ceil(step / len(b.x[:step])), 1, 1, 1)[:step]
    ctx = b.ctx()

    def explain() -> None:
        method.explain(b.x, b.target, ctx).mask.cpu()

    def floor() -> None:
        with torch.no_grad():
            for i in range(0, rows, step):
                b.model(block[: min(step, rows - i)])

    explain()
    floor()
    t_method, t_floor = timed_pair(explain, floor, b.dev, repeat=3)
    return {"method": label, "clips": len(b.x), "perturbations": perturbations, "rows_per_pass": step,
            "method_s": t_method, "floor_s": t_floor, "ratio": t_method / t_floor, "target": "<= 1.3"}


# 9 ---------------------------------------------------------------------------------------------
# one pass of the classifier's blocks per clip, then the decoder (lmac_td: also its waveform network, the clip's
# ISTFT and the explanation's STFT for the re-analysis mask: its ratio is what the time-domain network costs)
DECODER_METHODS = ("piq", "lmac", "lmac_td")


def decoder_vs_floor(b: Bench, name: str) -> dict[str, Any]:
    """A trained decoder explaining N clips against its floor: the classifier's blocks on the N clips in passes of
    ``max_rows`` (the one model evaluation per clip it needs), nothing else."""
    method = b.method(name)
    step, ctx = b.max_rows, b.ctx()

    def explain() -> None:
        with b.model.reading(b.rep):  # as the engine: the clips read (lmac_td explains their waveforms)
            method.explain(b.x, b.target, ctx).mask.cpu()

    def floor() -> None:
        with torch.no_grad():
            for i in range(0, len(b.x), step):
                b.model.features(b.x[i : i + step])

    explain()
    floor()
    t_method, t_floor = timed_pair(explain, floor, b.dev, repeat=3)
    return {"method": name, "clips": len(b.x), "evaluations_per_clip": 1, "method_s": t_method, "floor_s": t_floor,
            "ratio": t_method / t_floor}


# 2 ---------------------------------------------------------------------------------------------
def sps_comp_vs_quantus(b: Bench, sizes: list[int]) -> list[dict[str, Any]]:
    """SPS + COMP on N masks shaped like the domain's X: ours (on the device) vs Quantus (NumPy)."""
    import quantus

    from audiobench.metrics.complexity import complexity, sparseness

    out = []
    shape = b.x.shape[1:]
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        masks = torch.rand((n, *shape), generator=g) ** 4
        masks = masks / masks.flatten(1).amax(1).view(-1, 1, 1, 1)  # max-normalised, as the engine's masks
        a = masks.numpy()
        dev_masks = masks.to(b.dev)

        def ours(m: torch.Tensor = dev_masks) -> tuple[np.ndarray, np.ndarray]:
            return sparseness(m).cpu().numpy(), complexity(m).cpu().numpy()

        kw = {"model": None, "x_batch": a, "y_batch": np.zeros(n, dtype=int), "a_batch": a, "channel_first": True}

        def theirs(kw: dict = kw) -> tuple[list, list]:
            return (quantus.Sparseness(disable_warnings=True)(**kw), quantus.Complexity(disable_warnings=True)(**kw))

        s_ours, c_ours = ours()
        s_q, c_q = theirs()
        t_ours = timed(ours, b.dev)
        t_q = timed(theirs, b.dev, repeat=1 if n >= 1000 else 3)
        d_sps = float(np.max(np.abs(s_ours - np.asarray(s_q))))
        rel_comp = float(np.max(np.abs(c_ours - np.asarray(c_q)) / np.abs(np.asarray(c_q))))  # Quantus: float32 sums
        out.append({"masks": n, "ours_s": t_ours, "quantus_s": t_q, "speedup": t_q / t_ours, "sps_abs_diff": d_sps,
                    "comp_rel_diff": rel_comp, "equal_1e-6": d_sps <= 1e-6 and rel_comp <= 1e-6, "target": ">= 20 at N >= 100"})
        del masks, a, dev_masks
    return out


# 3 ---------------------------------------------------------------------------------------------
def _captum_direct(name: str, method: Any, b: Bench, x: torch.Tensor, target: torch.Tensor) -> Callable[[], Any] | None:
    """Captum called directly with the arguments our wrapper passes; None for methods not built on Captum."""
    from captum import attr

    p, m, step = method.params, b.model, b.max_rows
    if name == "saliency":
        return lambda: attr.Saliency(m).attribute(x, target=target, abs=False)
    if name == "smoothgrad":
        chunk = max(1, min(p.n_samples, step // x.shape[0]))
        return lambda: attr.NoiseTunnel(attr.Saliency(m)).attribute(
            x, nt_type="smoothgrad", nt_samples=p.n_samples, nt_samples_batch_size=chunk, stdevs=p.stdev, target=target, abs=False)
    if name == "integrated_gradients":
        return lambda: attr.IntegratedGradients(m).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=p.n_steps, method=p.method,
            internal_batch_size=max(x.shape[0], step))
    if name == "guided_backprop":
        return lambda: attr.GuidedBackprop(m).attribute(x, target=target)
    if name == "gradcam":
        layer = b.classifier.block(p.layer)
        return lambda: attr.LayerGradCam(m, layer).attribute(x, target=target, relu_attributions=False)
    if name == "shap":
        k = max(1, step // p.n_samples)
        return lambda: [attr.GradientShap(m, multiply_by_inputs=True).attribute(
            x[i : i + k], baselines=torch.zeros_like(x[:1]), n_samples=p.n_samples, stdevs=p.stdev, target=target[i : i + k])
            for i in range(0, x.shape[0], k)]
    return None


def explain_cost(b: Bench, names: list[str], methods: dict[str, Any], clips: int) -> list[dict[str, Any]]:
    """Seconds per clip of ``explain`` on a batch of ``clips``, and over Captum's own call."""
    out = []
    x, target = b.x[:clips], b.target[:clips]
    for name in names:
        method = methods[name]
        ctx = b.ctx()

        def ours(method: Any = method, ctx: Any = ctx) -> None:
            with torch.set_grad_enabled(method.needs_gradients):
                method.explain(x, target, ctx).mask.cpu()

        ours()
        t = timed(ours, b.dev)
        row: dict[str, Any] = {"method": name, "s_per_clip": t / clips}
        direct = _captum_direct(name, method, b, x, target)
        if direct is not None:
            raw = direct()
            t_c = timed(direct, b.dev)
            row.update(captum_s_per_clip=t_c / clips, overhead=t / t_c - 1, target="< 10 %")
            if isinstance(raw, torch.Tensor):  # what the wrapper adds to Captum's map: abs, per-row max (to_mask)
                from audiobench.methods.base import to_mask

                row["to_mask_share"] = timed(lambda raw=raw: to_mask(raw.detach()), b.dev, repeat=10) / t_c
        out.append(row)
    return out


# 4 ---------------------------------------------------------------------------------------------
def cell_batched_vs_loop(b: Bench, names: list[str], methods: dict[str, Any], clips: int, batch_size: int,
                         loop_clips: int) -> list[dict[str, Any]]:
    """One cell end to end (represent, explain, score every metric) per clip: batches of ``batch_size``
    (ours) against one clip at a time (the reference code), per method."""
    from audiobench.contracts.registry import METRICS
    from audiobench.contracts.targets import TargetParams
    from audiobench.harness.engine import evaluate_batch

    metrics = [METRICS.get(m) for m in ["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"]]
    waves = b.waves[:clips].to(b.dev)
    labels = torch.arange(clips) % 10
    out = []

    def run(method: Any, size: int, n: int) -> None:
        for k, s in enumerate(range(0, n, size)):
            rep = b.model.domain.represent(b.frontend, waves[s : s + size])
            evaluate_batch(method, b.model, rep, [f"c{i}" for i in range(s, min(s + size, n))], labels[s : s + size],
                           metrics, TargetParams(), k, max(b.max_rows, size))

    for name in names:
        method = methods[name]
        run(method, batch_size, batch_size)  # warm-up
        batched = timed(lambda m=method: run(m, batch_size, clips), b.dev, repeat=1) / clips
        looped = timed(lambda m=method: run(m, 1, loop_clips), b.dev, repeat=1) / loop_clips
        out.append({"method": name, "batched_s_per_clip": batched, "loop_s_per_clip": looped, "speedup": looped / batched,
                    "target": ">= 1.5 (GPU: >= 5)"})
    return out


def rows_throughput(b: Bench, sizes: tuple[int, ...] = (1, 5, 25, 50, 64, 128)) -> list[dict[str, Any]]:
    """What bounds the methods that expand each clip into many rows (IG: n_steps, SmoothGrad and SHAP:
    n_samples): seconds per row of one forward + backward pass through the domain model, by rows per
    pass. Where it is flat from the per-clip loop's row count on, batching clips cannot gain more."""
    out = []
    x1 = b.x[:1]
    for n in sizes:
        x = x1.expand(n, *x1.shape[1:]).clone().requires_grad_(True)
        t = torch.zeros(n, dtype=torch.long, device=b.dev)

        def step(x: torch.Tensor = x, t: torch.Tensor = t) -> None:
            torch.autograd.grad(b.model(x).gather(1, t.view(-1, 1)).sum(), x)

        step()
        out.append({"rows_per_pass": n, "ms_per_row": timed(step, b.dev) / n * 1e3})
    base = out[0]["ms_per_row"]
    for r in out:
        r["vs_1_row"] = base / r["ms_per_row"]
    return out


# 5 ---------------------------------------------------------------------------------------------
def _memory_child(n: int, device: str, method: str) -> None:
    """In a fresh process: one cell of ``method`` on ``n`` clips, as the runner runs it; prints peak memory."""
    from audiobench.contracts.registry import METRICS
    from audiobench.contracts.targets import TargetParams
    from audiobench.data.base import ClipSet
    from audiobench.harness.cells import Cell, evaluate_cell
    from audiobench.store.masks import write_masks
    from audiobench.suite.schema import ComponentSpec

    b = Bench(device, 10)
    waves = synth_waves(n, per_class=10)  # the same 20 clips tiled: data generation costs the same for every n
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model, data: what the cell starts from
    clips = ClipSet(waves, torch.arange(n) % 10, [f"c{i}" for i in range(n)], [str(c) for c in range(10)], 16000)
    spec = ComponentSpec("methods", method, METHOD_PARAMS.get(method, {}))
    cell = Cell(ComponentSpec("domains", "stft2mel", {}), ComponentSpec("contaminations", "none", {}), spec, "0" * 16, "bench")
    metrics = [METRICS.get(m) for m in ["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"]]
    if b.dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.dev)
    keep = None if os.environ.get("AUDIOBENCH_BENCH_FLOAT_MASKS") else "log8"  # set: the cell as before per-batch encoding
    out = evaluate_cell(cell, b.method(method), b.model, clips, metrics, TargetParams(), 20, b.dev, progress=False,
                        keep_precision=keep)  # as the runner keeps them
    with tempfile.TemporaryDirectory() as tmp:  # and writes them
        write_masks(Path(tmp) / "masks.npz", out.explanations, "log8")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = torch.cuda.max_memory_allocated(b.dev) / 2**20 if b.dev.type == "cuda" else None
    print(json.dumps({"clips": n, "rows": len(out.frame), "rss_mb": peak / 1024, "rss_before_mb": base_rss / 1024,
                      "gpu_allocated_mb": gpu}))


def memory_vs_n(sizes: list[int], device: str, method: str = "saliency") -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        proc = subprocess.run([sys.executable, "-m", "benchmarks", "--memory-child", str(n), "--device", device,
                               "--memory-method", method], capture_output=True, text=True, cwd=ROOT, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# 6 ---------------------------------------------------------------------------------------------
def quickstart_times(limit: int | None, device: str) -> dict[str, Any]:
    """Cold (an empty cache; the shipped artefacts are used) with 1 and 2 workers, 1 worker with 1 thread
    (the bound on what 2 workers can gain), and warm."""
    base = [sys.executable, "-m", "audiobench", "run", str(ROOT / "suites" / "quickstart.yaml"), "-q", "--device", device]
    if limit:
        base += ["--limit", str(limit)]
    out: dict[str, Any] = {"limit": limit}
    with tempfile.TemporaryDirectory() as tmp:
        one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for label, extra, threads in (("cold_1_worker_s", [], {}), ("cold_2_workers_s", ["--workers", "2"], {}),
                                      ("cold_1_worker_1_thread_s", [], one_thread)):
            cache, run_dir = Path(tmp) / f"cache_{label}", Path(tmp) / f"run_{label}"
            env = {**os.environ, "AUDIOBENCH_CACHE": str(cache), **threads}
            t0 = time.perf_counter()
            subprocess.run(base + ["-o", str(run_dir)] + extra, check=True, env=env, cwd=ROOT, capture_output=True)
            out[label] = time.perf_counter() - t0
        env = {**os.environ, "AUDIOBENCH_CACHE": str(Path(tmp) / "cache_cold_1_worker_s")}
        t0 = time.perf_counter()
        subprocess.run(base + ["-o", str(Path(tmp) / "run_cold_1_worker_s")], check=True, env=env, cwd=ROOT, capture_output=True)
        out["warm_s"] = time.perf_counter() - t0
        a, b = (Path(tmp) / "run_cold_1_worker_s" / "tables"), (Path(tmp) / "run_cold_2_workers_s" / "tables")
        for ext in ("md", "tex", "csv"):  # the CSV holds full-precision means: last-bit differences show there
            names = sorted(p.name for p in a.glob(f"*.{ext}"))
            out[f"identical_{ext}"] = bool(names) and names == sorted(p.name for p in b.glob(f"*.{ext}")) and all(
                (a / n).read_text() == (b / n).read_text() for n in names)
        out["tables_identical"] = out["identical_md"] and out["identical_tex"]
    out["speedup_2_workers"] = out["cold_1_worker_s"] / out["cold_2_workers_s"]
    # what 2 threads give one process; two 1-thread workers can at best halve the 1-thread time
    # (perfect split, no start-up), so 2 x t(1 worker) / t(1 thread) bounds the 2-worker speedup
    out["thread_scaling"] = out["cold_1_worker_1_thread_s"] / out["cold_1_worker_s"]
    out["bound_2_workers"] = 2 * out["cold_1_worker_s"] / out["cold_1_worker_1_thread_s"]
    out["target"] = ">= 1.6 with identical tables"
    return out


# report ----------------------------------------------------------------------------------------
def _f(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "–" if v is None else str(v)


def table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_f(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes): N=20 clips, masks 10/100, memory 20/200")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9", help="which measurements, e.g. 1,2,3 (4b: only the rows-per-pass profile of 4)")
    ap.add_argument("--methods", help="comma-separated methods for 3 and 4 (default: every built-in)")
    ap.add_argument("--quickstart-limit", type=int, help="6: evaluate only N clips of the quickstart (default: all 100)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results.md"), help="Markdown report (- : none)")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--memory-method", default="saliency", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child is not None:
        _memory_child(args.memory_child, args.device, args.memory_method)
        return 0
    from audiobench.contracts.registry import METHODS

    only = {int(s) if s.isdigit() else s for s in args.only.split(",")}
    clips = 20 if args.quick else 100
    names = args.methods.split(",") if args.methods else list(METHODS.builtin_names())
    started = time.perf_counter()
    info = machine()
    print(json.dumps(info), flush=True)
    report = [f"# Benchmark results ({'quick' if args.quick else 'full'} sizes, device {args.device})", "",
              "Command: `" + " ".join(["python -m benchmarks"] + (argv if argv is not None else sys.argv[1:])) + "`", "",
              "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    b = Bench(args.device, clips)
    methods: dict[str, Any] = {}
    if only & {3, 4}:
        methods = {n: b.method(n) for n in names}
    sections: list[tuple[str, str]] = []
    if 1 in only:
        r = engine_vs_floor(b)
        sections.append(("1. Metric engine vs its floor (three batched forward passes)",
                         table([r], ["clips", "engine_s", "floor_s", "ratio", "target"])))
    if 7 in only:
        r7 = [budget_vs_floor(b, maps) for maps in ("continuous", "relu")]
        sections.append(("7. Budget-matched faithfulness vs its floor (as many batched forward passes)",
                         table(r7, ["maps", "clips", "passes", "family_s", "floor_s", "ratio", "target"])))
    if 8 in only:
        r8 = [perturbation_vs_floor(b, label, name, params) for label, (name, params) in PERTURBATION_ROWS.items()]
        sections.append(("8. Perturbation methods vs their floor (their rows in full batched forward passes)",
                         table(r8, ["method", "clips", "perturbations", "rows_per_pass", "method_s", "floor_s", "ratio",
                                    "target"])))
    if 9 in only:
        r9 = [decoder_vs_floor(b, name) for name in DECODER_METHODS]
        sections.append(("9. Trained decoders vs their floor (one batched pass of the classifier's blocks per clip)",
                         table(r9, ["method", "clips", "evaluations_per_clip", "method_s", "floor_s", "ratio"])))
    if 2 in only and importlib.util.find_spec("quantus") is None:
        sections.append(("2. SPS + COMP vs Quantus", "not measured: quantus is not installed (pip install quantus==0.6.0)"))
    elif 2 in only:
        r2 = sps_comp_vs_quantus(b, [10, 100] if args.quick else [10, 100, 1000])
        sections.append(("2. SPS + COMP: ours vs Quantus 0.6 on identical masks",
                         table(r2, ["masks", "ours_s", "quantus_s", "speedup", "sps_abs_diff", "comp_rel_diff", "equal_1e-6", "target"])))
    if 3 in only:
        r3 = explain_cost(b, names, methods, clips)
        sections.append((f"3. Explanation time per clip (batch of {clips}) and wrapper overhead over Captum",
                         table(r3, ["method", "s_per_clip", "captum_s_per_clip", "overhead", "to_mask_share", "target"])))
    if 4 in only:
        r4 = cell_batched_vs_loop(b, names, methods, clips, 20, 5 if args.quick else 10)
        sections.append((f"4. One cell end to end ({clips} clips, batches of 20) vs the per-clip loop",
                         table(r4, ["method", "batched_s_per_clip", "loop_s_per_clip", "speedup", "target"])))
    if only & {4, "4b"}:
        sections.append(("4b. Forward + backward cost per row by rows per pass (what bounds IG, SmoothGrad, SHAP)",
                         table(rows_throughput(b), ["rows_per_pass", "ms_per_row", "vs_1_row"])))
    if 5 in only:
        r5 = memory_vs_n([20, 200] if args.quick else [100, 1000], args.device)
        lo, hi = r5[0], r5[-1]
        per_clip = ((hi["rss_mb"] - hi["rss_before_mb"]) - (lo["rss_mb"] - lo["rss_before_mb"])) / (hi["clips"] - lo["clips"])
        note = (f"{hi['clips'] / lo['clips']:.0f}x the clips: {hi['rss_mb'] / lo['rss_mb']:.2f}x the peak RSS; the cell's own"
                f" growth {per_clip * 1024:.0f} KiB per clip (the clips' waveforms, 125 KiB each, are in rss_before_mb)")
        sections.append(("5. Peak memory of a cell (saliency, stft2mel) vs clips, each in a fresh process",
                         table(r5, ["clips", "rows", "rss_before_mb", "rss_mb", "gpu_allocated_mb"]) + "\n\n" + note))
    if 6 in only:
        r6 = quickstart_times(args.quickstart_limit or (20 if args.quick else None), args.device)
        sections.append(("6. Quickstart wall time (cold: empty cache, shipped artefacts; warm: every cell stored)",
                         table([r6], ["limit", "cold_1_worker_s", "cold_2_workers_s", "speedup_2_workers",
                                      "cold_1_worker_1_thread_s", "thread_scaling", "bound_2_workers", "warm_s",
                                      "identical_md", "identical_tex", "identical_csv", "target"])))
    for title, body in sections:
        report += [f"## {title}", "", body, ""]
    report.append(f"Load average at the end: {os.getloadavg() if hasattr(os, 'getloadavg') else '?'}; "
                  f"benchmark wall time {time.perf_counter() - started:.0f} s.")
    text = "\n".join(report) + "\n"
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
        print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
