"""Geometry a suite implies, checked before anything runs: clip samples, STFT frames, mel filters, pooling.

A run dies deep inside torch when the shapes cannot work: a clip no longer than the STFT's
reflect padding (``n_fft // 2`` samples), fewer frames or mel bands than the classifier's poolings
need, mel filters that fall between two linear-frequency bins (all zero: dead input bands), an
``f_min`` at or above ``f_max``, or an inverse STFT whose windows do not overlap (the listenable
audio of ``stft2mel``). :func:`check_geometry` computes these numbers from the suite alone and
reports each problem at the line of the key that causes it, with the numbers.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from audiobench.contracts.frontend import FrontendParams
from audiobench.kernel.errors import AudiobenchError
from audiobench.suite.lines import LocatedErrors
from audiobench.suite.schema import AudioParams, ComponentSpec


def mel_range(frontend: FrontendParams) -> tuple[float, float]:
    """(f_min, f_max) of the mel filterbank in Hz, ``f_max`` defaulting to the Nyquist frequency."""
    return frontend.f_min, frontend.f_max if frontend.f_max is not None else frontend.sample_rate / 2


def empty_mel_filters(frontend: FrontendParams) -> int:
    """Number of mel filters (of ``n_mels``) that are zero on every one of the ``n_fft // 2 + 1`` bins.

    Uses the filterbank the front end builds (its `mel_scale` and `mel_norm`). Raises
    ``ValueError`` when ``f_min >= f_max`` (no filterbank exists).
    """
    return _empty_filters(frontend.n_fft, frontend.f_min, mel_range(frontend)[1], frontend.n_mels, frontend.sample_rate,
                          frontend.mel_scale, frontend.mel_norm)


@functools.lru_cache(maxsize=64)
def _empty_filters(n_fft: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                   mel_scale: str = "htk", mel_norm: str | None = None) -> int:
    if f_min >= f_max:
        raise ValueError(f"f_min {f_min:g} Hz is not below f_max {f_max:g} Hz")
    from audiobench.kernel.torchaudio_shim import AF

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio warns about empty filters: we count them instead
        fb = AF.melscale_fbanks(
            n_freqs=n_fft // 2 + 1, f_min=f_min, f_max=f_max, n_mels=n_mels,
            sample_rate=sample_rate, norm=mel_norm, mel_scale=mel_scale,
        )
    return int((fb.sum(dim=0) <= 0).sum())


def inverse_stft_problem(frontend: FrontendParams, samples: int) -> str | None:
    """Why ``torch.istft`` cannot invert this front end's STFT for clips of ``samples``, or None.

    The inverse needs ``hop_length <= win_length`` and windows whose squares, overlap-added, never
    vanish over the clip (NOLA): computed as torch does, with the window centred in ``n_fft``
    samples and the first ``n_fft // 2`` samples of padding left out.
    """
    if frontend.hop_length > frontend.win_length:
        return f"hop_length {frontend.hop_length} exceeds win_length {frontend.win_length}"
    if _envelope_min(frontend.n_fft, frontend.win_length, frontend.hop_length, frontend.window, samples) < 1e-11:
        return (f"hop_length {frontend.hop_length} with a {frontend.window} window of {frontend.win_length} "
                f"samples leaves samples no window covers (overlap-add is 0)")
    return None


@functools.lru_cache(maxsize=64)
def _envelope_min(n_fft: int, win_length: int, hop_length: int, window: str, samples: int) -> float:
    """Smallest overlap-added squared window over the clip's samples (torch.istft's NOLA test).

    The envelope is periodic (period ``hop_length``) away from the clip's ends, so a long clip is
    shortened by whole hops to a few windows' length: same start, same end, same minimum.
    """
    bound = 4 * (n_fft + hop_length)
    if samples > bound:
        samples -= hop_length * ((samples - bound) // hop_length)
    win = (torch.hamming_window if window == "hamming" else torch.hann_window)(win_length, dtype=torch.float64)
    sq = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    sq[left:left + win_length] = win.numpy() ** 2
    frames = 1 + samples // hop_length
    env = np.zeros(n_fft + hop_length * (frames - 1))
    for t in range(frames):
        env[t * hop_length:t * hop_length + n_fft] += sq
    start = n_fft // 2
    return float(np.abs(env[start:start + samples]).min())


def dataset_seconds(dataset: ComponentSpec) -> float | None:
    """Clip length (s) a dataset fits every clip to (``Dataset.clip_seconds``), or None when it does not say."""
    return dataset.build().clip_seconds()


def model_min_input(model: ComponentSpec) -> tuple[int, int, str] | None:
    """(frames, mel bands, description) the model needs at least, or None when it does not say.

    Asks the model spec's ``ModelSpec.min_input()`` (cnn14: ``2 ** (depth - 1)`` along both axes, one
    2x2 average pooling per block but the last). None also when the model cannot be built (a
    missing checkpoint, reported by its own check).
    """
    try:
        return model.build().min_input()
    except AudiobenchError:  # an unreadable checkpoint: the model's check() reports it at its line
        return None


def check_geometry(
    errors: LocatedErrors,
    frontend: FrontendParams | None,
    dataset: ComponentSpec | None,
    model: ComponentSpec | None,
    domains: list[ComponentSpec],
    audio: AudioParams,
    methods: list[ComponentSpec],
) -> None:
    """Add every geometry problem of the suite to ``errors``, at the key that causes it.

    ``frontend`` None: the front end itself is invalid (already reported); nothing is checked.
    Front-end problems (``f_min >= f_max``, empty mel filters, an inverse STFT that cannot work
    when ``stft2mel`` audio is written) go to the line of ``f_min``/``f_max``, ``n_mels`` or
    ``hop_length`` (the ``frontend`` line when written inline or not at all); a clip too short for the
    STFT padding or the classifier's time poolings to ``dataset.seconds``; too few mel bands for
    the classifier's poolings to the model line; a method that cannot work on a domain's grid of
    ``1 + samples // hop_length`` frames (``Explainer.grid_problem``) to its parameter.
    """
    if frontend is None:
        return
    f_min, f_max = mel_range(frontend)
    if f_min >= f_max:
        where = "f_min" if ("frontend", "f_min") in errors.lines else "f_max"
        errors.add(("frontend", where), f"frontend: f_min {f_min:g} Hz is not below f_max {f_max:g} Hz; "
                   f"the mel filterbank needs f_min < f_max")
        return
    empty = empty_mel_filters(frontend)
    if empty:
        errors.add(("frontend", "n_mels"), (
            f"frontend: n_mels {frontend.n_mels} with n_fft {frontend.n_fft} ({frontend.n_fft // 2 + 1} linear bins over "
            f"{f_min:g}-{f_max:g} Hz) leaves {empty} of {frontend.n_mels} mel filters empty; lower n_mels or raise n_fft"))
    need = model_min_input(model) if model is not None else None
    if need is not None and frontend.n_mels < need[1]:
        errors.add(("model", "depth"), (
            f"model: {need[2]} needs at least {need[1]} mel bands, frontend.n_mels is {frontend.n_mels}; "
            f"raise n_mels or lower depth"))
    seconds = dataset_seconds(dataset) if dataset is not None else None
    if seconds is None:
        return
    samples = int(round(seconds * frontend.sample_rate))
    frames = 1 + samples // frontend.hop_length
    pad = frontend.n_fft // 2
    if samples <= pad:
        errors.add(("dataset", "seconds"), (
            f"dataset.seconds: {seconds:g} s is {samples} samples at {frontend.sample_rate} Hz, not more than "
            f"n_fft/2 = {pad} (the STFT's padding); raise seconds or lower n_fft"))
        return
    _method_grids(errors, frontend, frames, domains, methods)
    if need is not None and frames < need[0]:
        errors.add(("dataset", "seconds"), (
            f"dataset.seconds: {seconds:g} s gives {frames} frames at hop {frontend.hop_length}; "
            f"{need[2]} needs at least {need[0]} (about {math.ceil(100 * (need[0] - 1) * frontend.hop_length / frontend.sample_rate) / 100:g} s)"))
    if audio.n > 0 and any(d.cls().listenable for d in domains):
        problem = inverse_stft_problem(frontend, samples)
        if problem:
            errors.add(("frontend", "hop_length"), (
                f"frontend: {problem}, so stft2mel audio cannot be written; lower hop_length or set audio: {{n: 0}}"))


def _method_grids(errors: LocatedErrors, frontend: FrontendParams, frames: int, domains: list[ComponentSpec],
                  methods: list[ComponentSpec]) -> None:
    """A method whose parameters cannot work on a domain's ``frames`` x ``Domain.grid_bins`` grid
    (``Explainer.grid_problem``: e.g. a LIME window covering every frame), at the parameter, once per method."""
    grids = [(d.build().title(), bins) for d in domains if (bins := d.build().grid_bins(frontend.n_fft, frontend.n_mels))]
    for i, m in enumerate(methods):
        explainer = m.build()
        for title, bins in grids:  # the first domain it fails on: one line per method
            if (problem := explainer.grid_problem(frames, bins)) is not None:
                errors.add(("methods", i, problem[0]), f"method '{m.name}' on {title}: {problem[1]}")
                break
