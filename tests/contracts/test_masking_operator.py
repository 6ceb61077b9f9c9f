"""The ``stft2mel`` masking operator (issue 21, point 3 "Score what is heard").

``operator: linear`` (default, the L-MAC paper's sec. 2): the grid is |X|, the classifier reads
log1p(mel(M ⊙ |X|)), and the written WAV ISTFT(M ⊙ |X| e^{j phi}) is that signal. ``operator: log1p``
(the recipe's, key ``stft2mel_log1p``): the grid is log1p|X|, the classifier reads
log1p(mel(expm1(M ⊙ log1p|X|))). Both can sit in one suite as separate table groups.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.suite import load_suite
from audiobench.suite.lines import SuiteErrors

SR = 16000
FRONTENDS = {
    "recipe": FrontendParams(),  # HTK filters on |X| (mel_power 1)
    "power": FrontendParams(mel_scale="slaney", mel_norm="slaney", mel_power=2),  # PANNs/CLAP-style |X|^2
}


def _clips() -> torch.Tensor:
    """Two peak-normalised 1 s clips: noise plus two tones, and a chirp-like sum of tones plus noise."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(SR) / SR
    a = 0.3 * torch.randn(SR, generator=g) + torch.sin(2 * math.pi * 440 * t) + 0.5 * torch.sin(2 * math.pi * 3000 * t)
    b = 0.2 * torch.randn(SR, generator=g) + sum(torch.sin(2 * math.pi * f * t) / k for k, f in enumerate((200, 900, 5000), 1))
    wave = torch.stack([a, b])
    return wave / wave.abs().amax(dim=1, keepdim=True)


@pytest.fixture(params=sorted(FRONTENDS))
def frontend(request: pytest.FixtureRequest) -> Frontend:
    return Frontend(FRONTENDS[request.param])


def test_operator_parameter_keys_and_titles() -> None:
    assert Stft2Mel().params.operator == "linear"  # the paper's is the default
    variants = [Stft2Mel(), Stft2Mel({"operator": "log1p"}), Stft2Mel({"operator": "linear"}), Mel()]
    assert [d.key() for d in variants] == ["stft2mel", "stft2mel_log1p", "stft2mel", "mel"]
    assert [d.title() for d in variants] == ["STFT→Mel", "STFT→Mel (log1p)", "STFT→Mel", "Mel"]
    with pytest.raises(ValueError):
        Stft2Mel({"operator": "log"})
    # the LMAC-ZS paper's log power-STFT (sec. 3.2): its own key and title (tests/contracts/test_domain_departures.py)
    log_power = Stft2Mel({"operator": "log1p_power"})
    assert (log_power.key(), log_power.title()) == ("stft2mel_log1p_power", "STFT→Mel (log1p power)")


# --------------------------------------------------------------------------- (a) known answers
def test_linear_operator_is_log1p_mel_of_the_masked_magnitude(frontend: Frontend) -> None:
    wave = _clips()
    domain = Stft2Mel()
    rep = domain.represent(frontend, wave)
    magnitude = frontend.stft(wave).abs()
    assert torch.equal(rep.x, magnitude)  # the grid is |X| itself
    mask = torch.rand(rep.x.shape, generator=torch.Generator().manual_seed(1))
    power = frontend.params.mel_power
    expected = torch.log1p((mask * magnitude).pow(power) @ frontend.mel_fb)  # log1p(mel(M ⊙ |X|)), written out
    torch.testing.assert_close(domain.to_logmel(frontend, mask * rep.x), expected, rtol=1e-6, atol=0)
    if power == 1:  # the same operations as the front end's: bit-equal
        assert torch.equal(domain.to_logmel(frontend, mask * rep.x), torch.log1p((mask * magnitude) @ frontend.mel_fb))
    # unmasked: exactly the classifier's input from the waveform
    assert torch.equal(domain.to_logmel(frontend, rep.x), frontend.logmel(wave))
    assert domain.magnitude(rep.x) is not rep.x and torch.equal(domain.magnitude(rep.x), magnitude)


def test_log1p_operator_is_the_recipes_formula(frontend: Frontend) -> None:
    wave = _clips()
    domain = Stft2Mel({"operator": "log1p"})
    rep = domain.represent(frontend, wave)
    magnitude = frontend.stft(wave).abs()
    assert torch.equal(rep.x, torch.log1p(magnitude))
    mask = torch.rand(rep.x.shape, generator=torch.Generator().manual_seed(1))
    # the formula stft2mel had before the operator existed, bit for bit
    before = torch.log1p(frontend.mel(torch.expm1(mask * rep.x).clamp_min(0)))
    assert torch.equal(domain.to_logmel(frontend, mask * rep.x), before)
    # in magnitude: (1 + |X|)^M - 1
    torch.testing.assert_close(domain.to_logmel(frontend, mask * rep.x),
                               torch.log1p(frontend.mel((1 + magnitude).pow(mask) - 1)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(domain.to_logmel(frontend, rep.x), frontend.logmel(wave), rtol=0, atol=1e-4)


@pytest.mark.parametrize("operator", ["linear", "log1p", "log1p_power"])
def test_negative_grid_values_are_a_zero_magnitude(operator: str) -> None:
    frontend = Frontend()
    domain = Stft2Mel({"operator": operator})
    x = domain.represent(frontend, _clips()).x
    noisy = (x - 0.5 * x.amax()).requires_grad_(True)  # SmoothGrad/SHAP push bins below zero
    out = domain.to_logmel(frontend, noisy)
    assert bool(out.isfinite().all()) and float(out.detach().min()) >= 0
    (grad,) = torch.autograd.grad(out.sum(), noisy)
    assert bool(grad.isfinite().all())


def test_magnitude_and_log_views_agree_across_operators() -> None:
    """What the report draws and L2I factorises does not depend on the operator: |X| and log1p|X|."""
    frontend, wave = Frontend(), _clips()
    linear, log1p, mel = Stft2Mel(), Stft2Mel({"operator": "log1p"}), Mel()
    x_lin, x_log, x_mel = (d.represent(frontend, wave).x for d in (linear, log1p, mel))
    torch.testing.assert_close(linear.magnitude(x_lin), log1p.magnitude(x_log), rtol=1e-5, atol=1e-5)
    assert torch.equal(linear.log_magnitude(x_lin), x_log)  # log1p|X| either way
    assert log1p.log_magnitude(x_log) is x_log and mel.log_magnitude(x_mel) is x_mel  # log grids: themselves


# --------------------------------------------------------------------------- (b) what is scored is what is heard
def _block_mask(n_frames: int, n_freqs: int, levels: tuple[float, float], start: int, ramp: int) -> torch.Tensor:
    """``levels[0]`` on frames [0, start), a raised-cosine ramp over ``ramp`` frames, ``levels[1]`` after: [1, 1, T, F]."""
    t = torch.arange(n_frames, dtype=torch.float32)
    u = ((t - start) / ramp).clamp(0, 1)
    w = 0.5 - 0.5 * torch.cos(math.pi * u)
    m = levels[0] + (levels[1] - levels[0]) * w
    return m[:, None].expand(n_frames, n_freqs)[None, None].clone()


def test_linear_written_wav_is_the_scored_input(frontend: Frontend) -> None:
    """The issue's acceptance test: with ``linear``, the classifier input recomputed from the written WAV
    equals the scored input to the STFT round trip's tolerance; with ``log1p`` it is clearly off.

    The masks are ones a real STFT carries: per clip, a continuous level on a block of frames, another
    level on the rest, joined by a smooth (raised-cosine) edge. On the frames whose analysis window
    reaches no frame of the edge, the masked STFT is consistent (it is the STFT of the level times the
    signal), so ISTFT -> STFT -> log-mel gives back exactly what was scored, up to the round trip of
    the unmasked signal. Tolerance: 10 x the largest |logmel(ISTFT(STFT(x))) - logmel(x)| of the unmasked
    clips (float32: ~1e-6), floored at 1e-5.
    """
    wave = _clips()
    p = frontend.params
    linear, log1p = Stft2Mel(), Stft2Mel({"operator": "log1p"})
    rep_lin, rep_log = linear.represent(frontend, wave), log1p.represent(frontend, wave)
    n_frames, n_freqs = rep_lin.x.shape[-2:]
    round_trip = (frontend.logmel(linear.to_audio(frontend, torch.ones_like(rep_lin.x), rep_lin)) - frontend.logmel(wave))
    tol = max(10 * float(round_trip.abs().max()), 1e-5)

    start, ramp = n_frames // 2, 6
    mask = torch.cat([_block_mask(n_frames, n_freqs, (0.9, 0.3), start, ramp),  # continuous levels: not binary
                      _block_mask(n_frames, n_freqs, (0.25, 0.7), start, ramp)])
    reach = math.ceil(p.win_length / p.hop_length) + 1  # frames whose windows overlap a frame of the edge
    plateau = torch.zeros(n_frames, dtype=torch.bool)
    plateau[reach: start - reach] = True
    plateau[start + ramp + reach: n_frames - reach] = True
    assert int(plateau.sum()) > n_frames // 2

    heard = frontend.logmel(linear.to_audio(frontend, mask, rep_lin))  # the WAV's classifier input, recomputed
    scored_linear = linear.to_logmel(frontend, mask * rep_lin.x)
    scored_log1p = log1p.to_logmel(frontend, mask * rep_log.x)
    assert torch.equal(linear.to_audio(frontend, mask, rep_lin), log1p.to_audio(frontend, mask, rep_log))  # one WAV
    err_linear = (heard - scored_linear).abs()[..., plateau, :]
    err_log1p = (heard - scored_log1p).abs()[..., plateau, :]
    assert float(err_linear.max()) <= tol, (float(err_linear.max()), tol)
    # log1p scores (1 + |X|)^M - 1, not the M |X| that is heard: off by orders of magnitude more
    assert float(err_log1p.max()) > 1000 * tol and float(err_log1p.mean()) > 100 * tol


def test_linear_is_closer_to_the_wav_for_a_mask_constant_over_time(frontend: Frontend) -> None:
    """A per-frequency-bin gain constant over time (a smooth band weighting) is carried by the STFT only
    approximately (the filter's impulse response meets the window); still the WAV's log-mel is an order
    of magnitude nearer the scored input under ``linear`` than under ``log1p``."""
    wave = _clips()
    linear, log1p = Stft2Mel(), Stft2Mel({"operator": "log1p"})
    rep_lin, rep_log = linear.represent(frontend, wave), log1p.represent(frontend, wave)
    freqs = torch.arange(frontend.n_freqs) * frontend.params.sample_rate / frontend.params.n_fft
    mask = (0.2 + 0.6 * torch.sigmoid((freqs - 1500) / 300)).expand_as(rep_lin.x).clone()
    heard = frontend.logmel(linear.to_audio(frontend, mask, rep_lin))
    err_linear = float((heard - linear.to_logmel(frontend, mask * rep_lin.x)).abs().mean())
    err_log1p = float((heard - log1p.to_logmel(frontend, mask * rep_log.x)).abs().mean())
    assert err_log1p > 10 * err_linear, (err_linear, err_log1p)


# --------------------------------------------------------------------------- (c) both operators in one suite
BOTH = ["stft2mel", {"name": "stft2mel", "operator": "log1p"}, "mel"]


def test_a_domain_listed_twice_with_one_key_is_refused_in_one_line(write_suite, capsys) -> None:
    from audiobench.cli import main

    path = write_suite({"domains": ["stft2mel", {"name": "stft2mel", "operator": "linear"}, "mel"]})
    with pytest.raises(SuiteErrors) as info:
        load_suite(path)
    assert len(info.value.errors) == 1
    assert "'stft2mel' is listed twice" in str(info.value.errors[0])
    assert main(["validate", str(path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "'stft2mel' is listed twice" in err[0], err
    # the two operators are two instances: valid
    suite = load_suite(write_suite({"domains": BOTH}, name="both.yaml"))
    assert [d.build().key() for d in suite.domains] == ["stft2mel", "stft2mel_log1p", "mel"]


@pytest.mark.slow
def test_a_suite_with_both_operators_runs_into_two_stft_groups(write_suite, tmp_path: Path) -> None:
    import json

    from audiobench.harness.runner import run_suite
    from audiobench.report.build import build_report
    from audiobench.store.run_dir import load_run
    from audiobench.tables import render_run
    from audiobench.tables.compare import render_comparison

    path = write_suite({"domains": BOTH, "contaminations": ["none"], "methods": ["saliency", "random"],
                        "metrics": ["ai", "ad", "ff"], "audio": {"n": 1}})
    run = tmp_path / "run"
    run_suite(path, run, limit=3, progress=False)
    frame = load_run(run)
    assert list(dict.fromkeys(frame.domain)) == ["stft2mel", "stft2mel_log1p", "mel"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["display"]["domain"] == {"stft2mel": "STFT→Mel", "stft2mel_log1p": "STFT→Mel (log1p)", "mel": "Mel"}
    assert manifest["order"]["domain"] == ["stft2mel", "stft2mel_log1p", "mel"]
    assert {c["id"].split("__")[0] for c in manifest["cells"]} == {"stft2mel", "stft2mel_log1p", "mel"}
    # the operators score differently: Saliency's masked-in probabilities differ between the two groups
    p_in = frame[(frame.metric == "p_in") & (frame.row == "Saliency")].set_index(["domain", "sample_id", "target"]).value
    assert not p_in.xs("stft2mel").equals(p_in.xs("stft2mel_log1p"))

    (text,) = render_run(run, write=False).values()
    groups = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("|")]
    assert {"STFT→Mel", "STFT→Mel (log1p)", "Mel"} <= set(groups)

    # each listenable instance writes its own WAVs
    assert sorted(p.name for p in (run / "audio" / "none" / "saliency").glob("*.wav"))
    log1p_wavs = sorted((run / "audio" / "none" / "stft2mel_log1p" / "saliency").glob("*.wav"))
    assert log1p_wavs and not (run / "audio" / "none" / "mel").exists()

    # both STFT→Mel groups are compared with the paper's STFT→Mel rows
    (compared,) = render_comparison(run, "lmac_icml2024:1").values()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in compared.splitlines()[4:] if line.startswith("|")]
    leads = [r[0] for r in rows if r[0]]
    assert leads == ["STFT→Mel", "STFT→Mel (log1p)", "Mel"]  # no paper-only STFT→Mel block: both groups took it
    blocks: dict[str, list[list[str]]] = {}
    lead = ""
    for r in rows:
        lead = r[0] or lead
        blocks.setdefault(lead, []).append(r)
    for group in ("STFT→Mel", "STFT→Mel (log1p)"):
        rows_of = blocks[group]
        after = [rows_of[i + 1] for i in range(len(rows_of) - 1) if rows_of[i][1:3] == ["Saliency", "ours"]]
        assert after and after[0][2] == "paper" and after[0][3] == "0.00", (group, after)  # Table 1, STFT, Saliency AI

    index = build_report(run).read_text()
    assert "stft2mel_log1p/saliency/" in index
