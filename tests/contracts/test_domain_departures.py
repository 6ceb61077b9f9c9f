"""The LMAC-ZS paper's masking domains (docs/departures.md, items 5 and 6).

(a) ``stft2mel{operator: log1p_power}``: the "linear frequency-scale log power-STFT domain" (LMAC-ZS sec.
    3.2), x = log1p(|X|^2); the classifier reads the mel of (1 + |X|^2)^M - 1.
(b) ``mel{grid: db}``: CLAP's own feature, 10 log10(max(mel, 1e-10)) (torchlibrosa ``power_to_db``); the mask
    multiplies what ``msclap`` reads ("directly in the feature space on which CLAP operates", sec. 3.2).

Expected values are computed here independently: the STFT with ``torch.stft`` in float64, the filterbank
of the front end, and closed forms ((1 + P)^M - 1 for the masked power, 10^(x/10) for the dB inverse).
"""

from __future__ import annotations

import math

import pytest
import torch

from audiobench.contracts.domains import DB_AMIN, DB_FLOOR, Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.suite import load_suite
from audiobench.suite.lines import SuiteErrors

SR = 16000
FRONTENDS = {
    "recipe": FrontendParams(),  # HTK filters on |X| (mel_power 1)
    "power": FrontendParams(mel_scale="slaney", mel_norm="slaney", mel_power=2),  # PANNs/CLAP-style |X|^2
}
CLAP_FRONT = FrontendParams(sample_rate=44100, n_fft=1024, win_length=1024, hop_length=320, window="hann", n_mels=64,
                            f_min=50, f_max=14000, mel_scale="slaney", mel_norm="slaney", mel_power=2)


def _clips(sr: int = SR, seconds: float = 1.0, pad: float = 0.25) -> torch.Tensor:
    """Two peak-normalised clips of tones and noise, each followed by ``pad`` s of digital silence (zero padding)."""
    g = torch.Generator().manual_seed(0)
    n = int(sr * seconds)
    t = torch.arange(n) / sr
    a = 0.3 * torch.randn(n, generator=g) + torch.sin(2 * math.pi * 440 * t) + 0.5 * torch.sin(2 * math.pi * 3000 * t)
    b = 0.2 * torch.randn(n, generator=g) + sum(torch.sin(2 * math.pi * f * t) / k for k, f in enumerate((200, 900, 5000), 1))
    wave = torch.stack([a, b])
    wave = wave / wave.abs().amax(dim=1, keepdim=True)
    return torch.cat([wave, torch.zeros(2, int(sr * pad))], dim=1)


def _power64(frontend: Frontend, wave: torch.Tensor) -> torch.Tensor:
    """|STFT|^2 [B, 1, T, F] in float64, from ``torch.stft`` with the front end's settings (not its ``stft``)."""
    p = frontend.params
    win = (torch.hamming_window if p.window == "hamming" else torch.hann_window)(p.win_length, dtype=torch.float64)
    spec = torch.stft(wave.double(), p.n_fft, p.hop_length, p.win_length, win, center=True, return_complex=True)
    return spec.abs().square().transpose(1, 2).unsqueeze(1)


def _mask(shape: torch.Size, seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=sorted(FRONTENDS))
def frontend(request: pytest.FixtureRequest) -> Frontend:
    return Frontend(FRONTENDS[request.param])


# --------------------------------------------------------------------------- names, dumps, bad values
def test_new_values_have_their_own_keys_and_titles_and_leave_default_dumps_alone() -> None:
    log_power, db = Stft2Mel({"operator": "log1p_power"}), Mel({"grid": "db"})
    assert (log_power.key(), log_power.title()) == ("stft2mel_log1p_power", "STFT→Mel (log1p power)")
    assert (db.key(), db.title()) == ("mel_db", "Mel (dB)")
    assert (Mel().key(), Mel().title(), Mel({"grid": "log1p"}).key()) == ("mel", "Mel", "mel")
    keys = [d.key() for d in (Stft2Mel(), Stft2Mel({"operator": "log1p"}), log_power, Mel(), db)]
    assert len(set(keys)) == len(keys)  # five instances, five table groups
    # the default grid is left out of every dump (cell hashes, fit keys); another value enters it
    assert Mel().params.model_dump(mode="json") == {} == Mel({"grid": "log1p"}).params.model_dump()
    assert db.params.model_dump(mode="json") == {"grid": "db"} and Mel(db.params.model_dump()).key() == "mel_db"
    assert log_power.params.model_dump() == {"operator": "log1p_power"}
    assert Stft2Mel().params.model_dump() == {"operator": "linear"}  # as before


@pytest.mark.parametrize(("domain", "params", "field"), [(Stft2Mel, {"operator": "log_power"}, "operator"),
                                                         (Mel, {"grid": "dB"}, "grid"), (Mel, {"scale": "db"}, "scale")])
def test_bad_values_are_refused(domain: type, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        domain(params)


def test_validate_reads_the_new_values_and_refuses_a_bad_one_in_one_line(write_suite) -> None:
    suite = load_suite(write_suite({"domains": [{"name": "stft2mel", "operator": "log1p_power"}, "mel",
                                                {"name": "mel", "grid": "db"}]}))
    assert [d.build().key() for d in suite.domains] == ["stft2mel_log1p_power", "mel", "mel_db"]
    assert [d.resolved() for d in suite.domains][1:] == [{"name": "mel", "params": {}},
                                                         {"name": "mel", "params": {"grid": "db"}}]
    with pytest.raises(SuiteErrors) as info:
        load_suite(write_suite({"domains": ["stft2mel", {"name": "mel", "grid": "decibel"}]}, name="bad.yaml"))
    (error,) = info.value.errors
    assert "grid" in str(error) and "\n" not in str(error).strip()


# --------------------------------------------------------------------------- (a) log1p_power
def test_log1p_power_grid_and_masked_power_are_the_closed_form(frontend: Frontend) -> None:
    """x = log1p(|X|^2); a mask M on it stands for the power expm1(M x) = (1 + |X|^2)^M - 1, and the
    classifier reads log1p of its mel (of its square root on a magnitude front end)."""
    wave = _clips()
    domain = Stft2Mel({"operator": "log1p_power"})
    rep = domain.represent(frontend, wave)
    power = _power64(frontend, wave)
    torch.testing.assert_close(rep.x.double(), torch.log1p(power), rtol=1e-5, atol=1e-6)
    mask = _mask(rep.x.shape)
    masked_power = (1 + power).pow(mask.double()) - 1  # independent of expm1/log1p
    torch.testing.assert_close(domain.magnitude(mask * rep.x).double().square(), masked_power, rtol=2e-4, atol=1e-6)
    fb = frontend.mel_fb.double()
    lin = masked_power if frontend.params.mel_power == 2 else masked_power.sqrt()
    want = torch.log1p(lin @ fb)
    torch.testing.assert_close(domain.to_logmel(frontend, mask * rep.x).double(), want, rtol=2e-4, atol=2e-5)
    # the other operators give other inputs for the same mask: log1p_power is a distinct operator
    for other in ("linear", "log1p"):
        d = Stft2Mel({"operator": other})
        assert float((d.to_logmel(frontend, mask * d.represent(frontend, wave).x).double() - want).abs().max()) > 0.1


def test_log1p_power_ones_mask_is_the_unmasked_input_and_zero_mask_is_silence(frontend: Frontend) -> None:
    wave = _clips()
    domain = Stft2Mel({"operator": "log1p_power"})
    rep = domain.represent(frontend, wave)
    ones = torch.ones_like(rep.x)
    torch.testing.assert_close(domain.to_logmel(frontend, ones * rep.x), frontend.logmel(wave), rtol=1e-5, atol=1e-5)
    assert bool((domain.to_logmel(frontend, 0 * rep.x) == 0).all())  # log1p(|X|^2) is 0 at silence: M = 0 silences
    # what the report draws and L2I factorises: |X| and log1p|X|, as under the other operators
    linear = Stft2Mel()
    x_lin = linear.represent(frontend, wave).x
    torch.testing.assert_close(domain.magnitude(rep.x), linear.magnitude(x_lin), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(domain.log_magnitude(rep.x), linear.log_magnitude(x_lin), rtol=1e-4, atol=1e-5)
    # listening: the paper's ISTFT(X * M) (LMAC-ZS sec. 2.3), the same WAV as the other operators write
    mask = _mask(rep.x.shape)
    assert torch.equal(domain.to_audio(frontend, mask, rep), linear.to_audio(frontend, mask, linear.represent(frontend, wave)))
    assert float((domain.to_audio(frontend, ones, rep) - wave).abs().max()) < 1e-4


def test_log1p_power_gradients_are_finite_at_silence_and_below_zero(frontend: Frontend) -> None:
    """Zero-padded frames have |X| = 0 exactly; noise (SmoothGrad, SHAP) pushes bins below 0: no inf, no NaN."""
    domain = Stft2Mel({"operator": "log1p_power"})
    x = domain.represent(frontend, _clips()).x
    assert bool((x == 0).any())  # the padding's silent bins
    for grid in (x, x - 0.3 * x.amax()):
        grid = grid.clone().requires_grad_(True)
        out = domain.to_logmel(frontend, grid)
        (grad,) = torch.autograd.grad(out.sum(), grid)
        assert bool(out.isfinite().all()) and float(out.detach().min()) >= 0 and bool(grad.isfinite().all())
        (grad_m,) = torch.autograd.grad(domain.magnitude(grid).sum(), grid)
        assert bool(grad_m.isfinite().all())


# --------------------------------------------------------------------------- (b) mel{grid: db}
def test_db_grid_is_power_to_db_of_the_mel_and_inverts_to_the_log1p_mel(frontend: Frontend) -> None:
    wave = _clips()
    domain = Mel({"grid": "db"})
    rep = domain.represent(frontend, wave)
    power = _power64(frontend, wave)
    lin = power if frontend.params.mel_power == 2 else power.sqrt()
    mel = lin @ frontend.mel_fb.double()
    torch.testing.assert_close(rep.x.double(), 10 * torch.log10(mel.clamp_min(1e-10)), rtol=1e-4, atol=1e-3)
    assert float(rep.x.min()) == pytest.approx(DB_FLOOR) and DB_AMIN == 1e-10  # the padding sits at the floor
    # a ones mask: what a log1p-mel model reads is the front end's log1p-mel; the inverse is 10^(x/10)
    torch.testing.assert_close(domain.to_logmel(frontend, rep.x), frontend.logmel(wave), rtol=1e-5, atol=1e-5)
    mask = _mask(rep.x.shape)
    masked = (mask * rep.x).double()
    torch.testing.assert_close(domain.magnitude(mask * rep.x).double(), torch.pow(10.0, masked / 10), rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(domain.to_logmel(frontend, mask * rep.x).double(), torch.log1p(torch.pow(10.0, masked / 10)),
                               rtol=1e-5, atol=1e-7)
    # 0 on this grid is 0 dB, a mel energy of 1: not silence
    torch.testing.assert_close(domain.to_logmel(frontend, 0 * rep.x), torch.full_like(rep.x, math.log(2)))
    # below the floor counts as the floor (noise-perturbed inputs), with no gradient through it
    low = (rep.x - 200).requires_grad_(True)
    out = domain.to_logmel(frontend, low)
    (grad,) = torch.autograd.grad(out.sum(), low)
    assert bool(out.isfinite().all()) and bool((grad == 0).all())


def test_to_db_mel_is_msclaps_old_formula_bit_for_bit_on_the_other_grids() -> None:
    """``msclap`` now asks the domain for its dB mel; on every existing grid that is the formula it used before."""
    frontend = Frontend(FRONTENDS["power"])
    wave = _clips()
    for domain in (Stft2Mel(), Stft2Mel({"operator": "log1p"}), Stft2Mel({"operator": "log1p_power"}), Mel()):
        x = _mask(domain.represent(frontend, wave).x.shape) * domain.represent(frontend, wave).x
        before = 10.0 * torch.log10(torch.expm1(domain.to_logmel(frontend, x)).clamp_min(1e-10))
        assert torch.equal(domain.to_db_mel(frontend, x), before), domain.key()
    db = Mel({"grid": "db"})
    x = db.represent(frontend, wave).x
    masked = _mask(x.shape) * x
    assert torch.equal(db.to_db_mel(frontend, masked), masked)  # the grid is the feature: handed over as it is
    # the default mel grid masks log1p(mel), which in dB is not M * dB: the departure mel{grid: db} removes
    log1p = Mel()
    mask = _mask(x.shape)
    assert float((log1p.to_db_mel(frontend, mask * log1p.represent(frontend, wave).x) - mask * x).abs().max()) > 1.0


def test_msclap_reads_the_masked_db_grid_as_it_is() -> None:
    """A small msclap network (random weights, no files): on mel{grid: db} the input of ``bn0`` is M * x
    itself and its gradient is the identity; the model's front-end check still applies."""
    transformers = pytest.importorskip("transformers")
    from audiobench.kernel.errors import AudiobenchError
    from audiobench.models.msclap import MsClap

    config = transformers.BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=8, max_position_embeddings=16)
    torch.manual_seed(0)
    model = MsClap(config, tokenizer=None, width=4, depth=2, d_proj=8).eval()
    frontend = Frontend(CLAP_FRONT)
    model.mel_basis.copy_(frontend.mel_fb)
    wave = _clips(44100, 0.5, 0.1)
    db, log1p = Mel({"grid": "db"}), Mel()
    x = db.represent(frontend, wave).x
    mask = _mask(x.shape)
    grid = (mask * x).requires_grad_(True)
    inp = model.network_input(db, frontend, grid)
    assert torch.equal(inp, mask * x)
    (grad,) = torch.autograd.grad(inp.sum(), grid)
    assert torch.equal(grad, torch.ones_like(grad))
    # unmasked, both grids give CLAP the same input (the default grid through expm1 and log10)
    torch.testing.assert_close(model.network_input(log1p, frontend, log1p.represent(frontend, wave).x), x, rtol=1e-4, atol=2e-3)
    with torch.no_grad():
        emb = model.audio_projection(model.features(inp)[-1])
    assert emb.shape == (2, 8) and bool(emb.isfinite().all())
    with pytest.raises(AudiobenchError, match="mel_power 1"):
        model.network_input(db, Frontend(CLAP_FRONT.model_copy(update={"mel_power": 1})), grid)


def test_db_grid_refuses_a_model_whose_exact_attribution_takes_zero_for_silence() -> None:
    from audiobench.contracts.registry import MODELS

    problem = Mel({"grid": "db"}).model_problem(MODELS.get("band_energy"))
    assert problem is not None and "band_energy" in problem and "grid: log1p" in problem and "\n" not in problem
    for name in ("cnn14", "msclap", "clap_synth"):
        assert Mel({"grid": "db"}).model_problem(MODELS.get(name)) is None, name
    for domain in (Mel(), Stft2Mel(), Stft2Mel({"operator": "log1p"}), Stft2Mel({"operator": "log1p_power"})):
        assert domain.model_problem(MODELS.get("band_energy")) is None, domain.key()


# --------------------------------------------------------------------------- a run
@pytest.mark.slow
def test_a_suite_with_the_paper_domains_runs_into_their_own_groups(write_suite, tmp_path) -> None:
    import json

    from audiobench.harness.runner import run_suite
    from audiobench.report.build import build_report
    from audiobench.store.run_dir import load_run
    from audiobench.tables import render_run

    domains = ["stft2mel", {"name": "stft2mel", "operator": "log1p_power"}, "mel", {"name": "mel", "grid": "db"}]
    path = write_suite({"domains": domains, "contaminations": ["none"], "methods": ["saliency", "gradcam", "random"],
                        "metrics": ["ai", "ad", "ff", "mm"], "audio": {"n": 1}})
    run = tmp_path / "run"
    run_suite(path, run, limit=3, progress=False)
    frame = load_run(run)
    keys = ["stft2mel", "stft2mel_log1p_power", "mel", "mel_db"]
    assert list(dict.fromkeys(frame.domain)) == keys
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["display"]["domain"] == dict(zip(keys, ["STFT→Mel", "STFT→Mel (log1p power)", "Mel", "Mel (dB)"],
                                                     strict=True))
    assert bool(frame.value.notna().all())
    # same clips, same classifier: the masking grid changes what Saliency's masked input scores
    p_in = frame[(frame.metric == "p_in") & (frame.row == "Saliency")].set_index(["domain", "sample_id", "target"]).value
    assert not p_in.xs("stft2mel").equals(p_in.xs("stft2mel_log1p_power"))
    assert not p_in.xs("mel").equals(p_in.xs("mel_db"))
    (text,) = render_run(run, write=False).values()
    assert "STFT→Mel (log1p power)" in text and "Mel (dB)" in text
    assert sorted((run / "audio" / "none" / "stft2mel_log1p_power" / "saliency").glob("*.wav"))
    assert "stft2mel_log1p_power/saliency/" in build_report(run).read_text()
