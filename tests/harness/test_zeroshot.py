"""The zero-shot track: embedded CLAP-style model, captions, LMAC-ZS's loss and masks, prompt analysis."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.nn import functional as F

from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import DOMAINS
from audiobench.data.captions import TRAINING_TEMPLATES, captions
from audiobench.data.speech_synth import SpeechSynth
from audiobench.data.synth import SynthDataset
from audiobench.data.synth_events import CLASS_NAMES
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.methods.lmac_zs import LMACZS, lmac_zs_loss
from audiobench.models.clap_synth import ClapSynthSpec, clap_loss, silence_anchor_loss
from audiobench.models.text import words
from audiobench.models.training import get_classifier
from audiobench.suite import load_suite
from audiobench.suite.schema import TrainParams
from audiobench.tables.prompts import prompt_rows, prompt_summary
from tests.paths import ROOT

FRONT = {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32}
CLASSES = 4


@pytest.fixture(scope="module")
def trained() -> tuple:
    """A small embedded zero-shot model trained at a fixed seed on 4 synthetic classes."""
    torch.set_num_threads(1)
    frontend = Frontend(FrontendParams(**FRONT))
    data = SynthDataset({"classes": CLASSES, "clips_per_class": 20, "seconds": 0.5})
    splits = {s: data.load(s, 16000) for s in ("train", "valid", "test")}
    spec = ClapSynthSpec({"width": 4, "depth": 3, "dim": 32, "text_width": 32})
    tp = TrainParams(epochs=20, lr=0.003, mixture_prob=0.2)
    result = get_classifier(spec, tp, splits, frontend, data.fingerprint(), 0, torch.device("cpu"), progress=False)
    return result, frontend, splits


def test_zero_shot_probabilities_equal_a_hand_computation(trained) -> None:
    result, frontend, splits = trained
    model = result.model
    x = frontend.logmel(splits["test"].waveforms[:6])
    with torch.no_grad():
        scores = model(x)
        a = F.normalize(model.audio.head(model.audio.features(x)[-1]), dim=-1)
        ids, mask = model.tokenizer(model.prompts)
        t = F.normalize(model.text(ids, mask), dim=-1)
        cos = torch.stack([torch.stack([(a[i] * t[c]).sum() for c in range(len(t))]) for i in range(len(a))])
        by_hand = torch.exp(model.logit_scale * cos) / torch.exp(model.logit_scale * cos).sum(dim=1, keepdim=True)
    assert torch.allclose(model.probabilities(scores), by_hand, atol=1e-6)
    assert model.prompts[0] == "this is the sound of tone"


def test_embedded_model_is_far_above_chance_with_an_unseen_template(trained) -> None:
    result, _, _ = trained
    acc = result.info["zero_shot_accuracy"]
    assert result.info["output_kind"] == "similarity"
    assert acc >= 0.6, f"zero-shot accuracy {acc:.2f} (chance {1 / CLASSES:.2f})"  # measured: 0.8 to 1.0


def test_training_captions_never_use_the_evaluation_template_nor_some_class_phrases() -> None:
    names = list(CLASS_NAMES)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(len(names)).repeat(40)
    texts = captions(names, labels, gen, torch.randint(3, (len(labels),), generator=gen),
                     torch.where(torch.rand(len(labels), generator=gen) < 0.3, (labels + 1) % len(names), -1))
    joined = " | ".join(texts)
    assert "this is the sound of" not in joined and "this is" not in joined
    assert not any("this is" in t for t in TRAINING_TEMPLATES)
    for phrase in ("chirp up", "chirp down"):  # evaluation class phrases learnt from their words only
        assert re.search(rf"\b{phrase}\b", joined) is None
        assert all(re.search(rf"\b{w}\b", joined) for w in words(phrase))
    assert any(" and " in t or " with " in t for t in texts)  # mixtures captioned with both events


def test_clap_loss_is_low_for_matching_pairs_and_symmetric() -> None:
    e = F.normalize(torch.eye(4, 8), dim=-1)
    good = clap_loss(e, e, torch.tensor(20.0))
    bad = clap_loss(e, e.roll(1, dims=0), torch.tensor(20.0))
    assert good < 1e-3 < math.log(4) < bad
    assert torch.isclose(clap_loss(e, e.roll(1, 0), torch.tensor(5.0)), clap_loss(e.roll(1, 0), e, torch.tensor(5.0)))


def test_silence_anchor_loss_equals_a_hand_computation() -> None:
    """Silence is pulled to each caption's mean similarity to the other clips of the batch."""
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    audio = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    silent = torch.tensor([1.0, 0.0], requires_grad=True)
    # C = text @ audio.T = [[.8, 0, 1], [.6, 1, 0], [.96, .8, .6]]; unrelated means: .5, .3, .88
    # t . s = 1, 0, .6 -> |.5|, |-.3|, |-.28| -> mean .36
    loss = silence_anchor_loss(audio, text, silent)
    assert loss.item() == pytest.approx(0.36, abs=1e-6)
    loss.backward()  # the target is fixed: only silence moves, along the signs of its errors
    assert silent.grad is not None and torch.allclose(silent.grad, (text[0] - text[1] - text[2]) / 3)


def test_embedded_model_scores_silence_like_unrelated_audio(trained) -> None:
    """The anchor places f(0) where an empty mask keeps an unrelated prompt's similarity."""
    result, frontend, splits = trained
    model = result.model
    with torch.no_grad():
        prompts = model.prompt_embeddings()
        audio = F.normalize(model.audio_embedding(frontend.logmel(splits["test"].waveforms)), dim=-1)
        silent = F.normalize(model.audio_embedding(torch.zeros_like(frontend.logmel(splits["test"].waveforms[:1]))), dim=-1)
    sim = audio @ prompts.T  # [clips, prompts]
    labels = splits["test"].labels
    own = sim[torch.arange(len(labels)), labels]
    unrelated = torch.stack([sim[labels != j, j].mean() for j in range(CLASSES)])
    gap = (own.mean() - unrelated.mean()).item()
    assert gap > 0.2  # the prompts separate the classes (0.41 on one machine, 0.31 on another)
    # Silence lands nearer the unrelated audio than halfway to the clips' own prompts. Seen: with the
    # anchor mean 0.065 (gap 0.41) on one machine, 0.126 (gap 0.307) on another, both < 0.5 x gap;
    # without it (silence_anchor 0) mean 0.25, max 0.49 at gap 0.44, which fails both bounds.
    error = (silent[0] @ prompts.T - unrelated).abs()
    assert error.mean().item() < 0.5 * gap and error.max().item() < gap


def test_lmac_zs_loss_terms_have_the_papers_values_and_signs() -> None:
    """Eq. 6-7 on toy tensors: each term zero exactly when the paper says, positive otherwise."""
    b, d = 3, 4
    text = F.normalize(torch.eye(b, d), dim=-1)
    audio = F.normalize(torch.eye(b, d) + 0.1, dim=-1)
    sim = text @ audio.T
    kept = audio.unsqueeze(0).expand(b, b, d)  # masking changes nothing: f(M*X_j) = a_j for every prompt
    ones, zeros = torch.ones(b, b, 1, 5, 5), torch.zeros(b, b, 1, 5, 5)
    t = lmac_zs_loss(sim, text, kept, ones, lambda_l1=0.0, lambda_div=0.0)
    assert t["similarity"].item() == pytest.approx(0.0, abs=1e-7)  # similarities preserved
    assert t["l1"].item() == 1.0 and lmac_zs_loss(sim, text, kept, zeros, 0, 0)["l1"].item() == 0.0
    # diversity: masked embeddings of clip i for prompts i and j equal -> their similarity is 1, the prompts' 0
    assert t["diversity"].item() == pytest.approx(1.0, abs=1e-6)
    mirrored = text.unsqueeze(1).expand(b, b, d)  # f(X_i * M(t_j)) = t_j: the prompts' geometry reflected
    assert lmac_zs_loss(sim, text, mirrored, ones, 0, 0)["diversity"].item() == pytest.approx(0.0, abs=1e-6)
    # a known similarity error: every masked embedding orthogonal to every text -> mean |C|
    ortho = torch.zeros(b, b, d)
    assert lmac_zs_loss(sim, text, ortho, ones, 0, 0)["similarity"].item() == pytest.approx(sim.abs().mean().item())
    total = lmac_zs_loss(sim, text, kept, ones, lambda_l1=0.5, lambda_div=2.0)
    assert total["total"].item() == pytest.approx(0.0 + 0.5 * 1.0 + 2.0 * 1.0, abs=1e-6)


def test_a_prompt_never_seen_in_training_still_gets_a_mask(trained) -> None:
    result, frontend, splits = trained
    domain = DOMAINS.get("stft2mel")()
    model = DomainModel(result.model, domain, frontend).eval()
    method = LMACZS({"hidden": 8})
    method.decoder = method._build(model).eval()
    torch.manual_seed(0)
    for p in method.decoder.parameters():  # conditioning active (FiLM starts at zero)
        torch.nn.init.normal_(p, std=0.2)
    x = domain.represent(frontend, splits["test"].waveforms[:2]).x
    ctx = ExplainContext(model)
    unseen = method.explain_prompts(x, ["a zebra yodelling on a trampoline", "quasar hum"], ctx)
    known = method.explain_prompts(x, ["a bell", "a rumble"], ctx)
    assert unseen.shape == x.shape and torch.isfinite(unseen).all()
    assert unseen.min() >= 0 and unseen.max() <= 1
    assert not torch.allclose(unseen, known)  # the prompt conditions the mask
    one = method.explain_prompts(x, ["a bell"], ctx)  # one prompt for every clip
    assert torch.allclose(one[0], known[0]) and one.shape == x.shape
    with pytest.raises(ValueError, match="3 prompts for 2 clips"):
        method.explain_prompts(x, ["a", "b", "c"], ctx)
    by_target = method.attribute(x, torch.tensor([0, 1]), ctx)
    assert by_target.shape == x.shape


def test_speech_synth_is_deterministic_speech_like_and_at_its_snr() -> None:
    clips = SynthDataset({"classes": 2, "clips_per_class": 5, "seconds": 1.0}).load("test", 16000)
    c = SpeechSynth({"snr_db": 3})
    a, b = c.apply(clips, clips, 0), c.apply(clips, clips, 0)
    assert torch.equal(a.waveforms, b.waveforms)
    assert np.allclose(a.snr_db.numpy(), 3.0, atol=0.05)
    speech = (a.waveforms - a.clean)[0].numpy()
    spec = np.abs(np.fft.rfft(speech)) ** 2
    f = np.fft.rfftfreq(len(speech), 1 / 16000)
    assert spec[f < 4000].sum() > 0.9 * spec.sum()  # voiced energy below 4 kHz, like speech
    assert SpeechSynth({"snr_db": 3, "voices": 4}).key() == "babble4_3db"


def _suite(tmp_path: Path, **over) -> Path:
    suite = {
        "name": "zs", "seed": 0, "frontend": FRONT,
        "dataset": {"name": "synth", "classes": 3, "clips_per_class": 10, "seconds": 0.5},
        "model": {"name": "clap_synth", "width": 4, "depth": 2, "dim": 16, "text_width": 16, "train": {"epochs": 2}},
        "batch_size": 4, "domains": ["stft2mel"], "contaminations": ["none"],
        "methods": [{"name": "lmac_zs", "epochs": 1, "lr": 0.001, "batch_size": 2, "hidden": 8, "targets": "all"},
                    {"name": "gradcam_pp", "layer": "last", "targets": "all"}, "random"],
        "metrics": ["ai", "ad", "mm", "similarity"],
        "tables": [{"name": "main", "rows": "row", "per": ["dataset", "contamination"], "target": "decision",
                    "metrics": ["ai", "ad", "mm"]}],
        "audio": {"n": 0},
        **over,
    }
    path = tmp_path / "zs.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_zero_shot_run_explains_every_prompt_keeps_decisions_in_the_table_and_plots(tmp_path: Path) -> None:
    from audiobench.harness.runner import run_suite
    from audiobench.store.run_dir import load_run

    result = run_suite(_suite(tmp_path), tmp_path / "run", progress=False)
    frame = load_run(result.run_dir)
    mm = frame[frame.metric == "mm"]
    per_clip = mm.groupby(["row", "sample_id"])["target"].nunique()
    assert (per_clip.loc["LMAC-ZS"] == 3).all() and (per_clip.loc["Random"] == 1).all()  # per-method targets
    n_clips = mm["sample_id"].nunique()
    table = pd.read_csv(next((result.run_dir / "tables").glob("main__*.csv")))
    counts = [c for c in table.columns if c.startswith("n")]
    assert counts and (table[counts].to_numpy() == n_clips).all(), table  # decision rows only: one per clip
    rows = prompt_rows(frame)
    assert set(rows["row"]) == {"LMAC-ZS", "GradCAM++"}
    summary = prompt_summary(rows)
    assert (summary["pairs"] == 3 * n_clips).all() and summary["pearson_r"].between(-1, 1).all()
    assert (result.run_dir / "tables" / "prompts__synth.md").exists()
    assert list((result.run_dir / "plots").glob("mm_vs_similarity__synth__stft2mel__none.png"))
    manifest = result.manifest
    assert manifest["output_kind"] == "similarity" and manifest["prompts"][0].startswith("this is the sound of")
    assert "zero-shot accuracy" in result.tables[next(iter(result.tables))]


def test_decision_table_filters_rows_of_other_targets(tmp_path: Path) -> None:
    from audiobench.tables.aggregate import decision_rows

    rows = []
    for target in (0, 1, 2):
        for metric, value in (("ai", float(target)), ("pred_orig", 1.0)):
            rows.append({"dataset": "d", "model": "m", "domain": "mel", "contamination": "none", "method": "x",
                         "row": "X", "sample_id": "a", "target": target, "metric": metric, "value": value})
    kept = decision_rows(pd.DataFrame(rows))
    assert set(kept["target"]) == {1} and kept.loc[kept.metric == "ai", "value"].tolist() == [1.0]


def test_lmac_zs_on_a_softmax_model_is_a_located_validation_error(tmp_path: Path) -> None:
    from audiobench.kernel.errors import AudiobenchError

    path = _suite(tmp_path, model={"name": "cnn14", "width": 4, "depth": 2})
    with pytest.raises(AudiobenchError, match=r"zs.yaml:\d+: .*lmac_zs.* explains similarity models.*cnn14.* is softmax"):
        load_suite(path)


@pytest.mark.parametrize(("key", "value"), [("model.silence_anchor", "inf"), ("methods.0.lambda_div", "-inf"),
                                          ("model.train.lr", "nan"), ("seed", "inf")])
def test_non_finite_numbers_are_located_validation_errors(tmp_path: Path, key: str, value: str) -> None:
    """An infinite loss weight trained the embedded model to NaN without a word (accuracy at chance)."""
    from audiobench.suite.lines import SuiteErrors

    with pytest.raises(SuiteErrors, match=rf"zs.yaml:\d+: {re.escape(key)}: .*(finite|integer)"):
        load_suite(_suite(tmp_path), [f"{key}={value}"])


def test_train_command_refuses_the_embedded_zero_shot_model_in_one_line(tmp_path: Path) -> None:
    from audiobench.harness.train import train_suite
    from audiobench.kernel.errors import AudiobenchError

    with pytest.raises(AudiobenchError, match="model 'clap_synth' is trained by `audiobench run` itself"):
        train_suite(load_suite(_suite(tmp_path)), tmp_path / "x.pt", progress=False)


def test_lmac_zs_decoder_starts_by_keeping_almost_everything(trained) -> None:
    """Started at 0.5, mel-domain masks collapsed to 0 in the first epoch; the decoder starts near 1."""
    from audiobench.methods.lmac_zs import INITIAL_MASK

    result, frontend, splits = trained
    for name in ("mel", "stft2mel"):
        domain = DOMAINS.get(name)()
        model = DomainModel(result.model, domain, frontend).eval()
        method = LMACZS({"hidden": 8})
        torch.manual_seed(0)
        decoder = method._build(model).eval()
        x = domain.represent(frontend, splits["test"].waveforms[:3]).x
        masks = method.masks(decoder, model, x, result.model.prompt_embeddings()[:3])
        assert masks.mean().item() == pytest.approx(INITIAL_MASK, abs=0.05)


def test_similarity_gate_moves_mask_logits_by_a_learnt_increasing_map(trained) -> None:
    """logit(M) grows by exp(k) * (difference in t . a) between two matches, all else equal."""
    result, frontend, splits = trained
    domain = DOMAINS.get("mel")()
    model = DomainModel(result.model, domain, frontend).eval()
    method = LMACZS({"hidden": 8, "conditioning": "film", "gate": True})  # the variant row "LMAC-ZS (FiLM + gate)"
    torch.manual_seed(0)
    decoder = method._build(model).eval()
    with torch.no_grad():
        decoder.gate.copy_(torch.tensor([math.log(3.0), 0.2]))
        for f in decoder.film:  # the text conditions the decoder; the match enters through the gate only
            torch.nn.init.normal_(f.weight[:, :-1], std=0.2)
    x = domain.represent(frontend, splits["test"].waveforms[:2]).x
    feats = [f.detach() for f in model.features(x)]
    chosen = [feats[i - 1] for i in method.block_idx]
    t = result.model.prompt_embeddings()[:2]
    size = (x.shape[-2], frontend.params.n_mels)
    with torch.no_grad():
        lo, hi = (decoder(chosen, t, size, lambda h: h, torch.full((2, 1), m)) for m in (-0.4, 0.6))
    assert torch.allclose(torch.logit(hi) - torch.logit(lo), torch.tensor(3.0), atol=1e-3)
    assert (hi > lo).all()
    assert LMACZS({"hidden": 8})._build(model).gate is None  # the paper's decoder has no gate
    assert method.row_label() == "LMAC-ZS (FiLM + gate)" and LMACZS().row_label() == "LMAC-ZS"


def test_paper_decoder_conditions_by_cross_attention_on_the_text_only() -> None:
    """With one text token the attention weight is 1: every position of a stage is shifted by
    W_o (W_v t + b_v) + b_o (a known answer), whatever h, and t . a does not enter."""
    from audiobench.methods.lmac_zs import TextCrossAttention, ZsDecoder

    torch.manual_seed(0)
    att = TextCrossAttention(4, 3)
    h, t = torch.randn(2, 4, 5, 6), torch.randn(2, 1, 3)
    assert torch.equal(att(h, t), h)  # starts as the identity (W_o = 0)
    torch.nn.init.normal_(att.out.weight)
    shift = att.out(att.v(t[:, 0]))  # [2, 4]
    torch.testing.assert_close(att(h, t), h + shift[:, :, None, None])
    decoder = ZsDecoder([8, 4], hidden=4, text_dim=3)
    assert decoder.gate is None and not hasattr(decoder, "film")
    for a in decoder.attend:
        torch.nn.init.normal_(a.out.weight)
    feats = [torch.randn(2, 8, 3, 4), torch.randn(2, 4, 6, 8)]
    prompt = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    with torch.no_grad():
        base = decoder(feats, prompt, (12, 16), lambda g: g, torch.full((2, 1), -0.5))
        other_match = decoder(feats, prompt, (12, 16), lambda g: g, torch.full((2, 1), 0.9))
        other_prompt = decoder(feats, prompt.flip(0), (12, 16), lambda g: g, torch.full((2, 1), -0.5))
    assert torch.equal(base, other_match)  # the decoder reads (t, h) only, as eq. 6
    assert not torch.allclose(base, other_prompt)


def test_a_methods_code_version_enters_its_cells_hashes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored LMAC-ZS cell of an older decoder is recomputed, not resumed; other cells keep their hashes."""
    from audiobench.harness.cells import expand_cells

    suite = load_suite(_suite(tmp_path))
    before = {c.method.name: c.hash for c in expand_cells(suite, {"x": 1})}
    monkeypatch.setattr(LMACZS, "code_version", LMACZS.code_version + 1)
    after = {c.method.name: c.hash for c in expand_cells(suite, {"x": 1})}
    assert before["lmac_zs"] != after["lmac_zs"]
    assert before["random"] == after["random"] and before["gradcam_pp"] == after["gradcam_pp"]


def test_lmac_zs_validation_batches_pair_clips_of_different_classes(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    """The splits are ordered by class: validating on consecutive clips paired one class with itself,
    and the diversity term (alike captions, alike masks) measured nothing."""
    from audiobench.methods.base import FitContext

    result, frontend, splits = trained
    assert splits["valid"].labels.tolist() == sorted(splits["valid"].labels.tolist())  # the case: ordered by class
    model = DomainModel(result.model, DOMAINS.get("mel")(), frontend).eval()
    method = LMACZS({"hidden": 8, "batch_size": 2})
    decoder = method._build(model)
    seen: list[list[int]] = []

    def texts(idx: torch.Tensor, gen: torch.Generator) -> list[str]:
        seen.append(splits["valid"].labels[idx].tolist())
        return ["a bell"] * len(idx)

    monkeypatch.setattr(method, "_pair_terms", lambda ctx, dec, x, texts: {"total": torch.tensor(0.0)})
    ctx = FitContext(model=model, train=splits["train"], valid=splits["valid"], augment=[], seed=0,
                     device=torch.device("cpu"), identity={}, log_dir=Path("."), progress=False)
    method._validate(ctx, decoder, [splits["valid"]], texts)
    pairs = [b for b in seen if len(b) == 2]
    assert len(pairs) == len(splits["valid"]) // 2
    mixed = sum(a != b for a, b in pairs) / len(pairs)
    assert mixed > 0.5, f"only {mixed:.0%} of validation pairs hold two classes"
    assert sorted(sum(seen, [])) == sorted(splits["valid"].labels.tolist())  # every clip, once
    first, seen[:] = list(seen), []
    method._validate(ctx, decoder, [splits["valid"]], texts)
    assert seen == first  # the same batches every epoch


def test_tradeoff_tool_reports_bad_suites_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = ROOT / "tools" / "lmac_zs_tradeoff.py"
    spec = importlib.util.spec_from_file_location("lmac_zs_tradeoff", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(tmp_path / "absent.yaml")]) == 1
    assert capsys.readouterr().err.strip() == f"lmac_zs_tradeoff: error: suite file not found: {tmp_path / 'absent.yaml'}"
    assert tool.main([str(_suite(tmp_path, methods=["random"]))]) == 1
    assert capsys.readouterr().err.strip().endswith("has no lmac_zs method")


def test_lmac_zs_learned_head_starts_as_the_spreading_and_is_its_own_row(trained) -> None:
    """``head: linear``: a per-frame Linear(n_mels -> bins) initialised to the domain's spreading; with the
    other weights equal, the masks at the start are the filterbank decoder's; the fit key and label differ."""
    result, frontend, splits = trained
    domain = DOMAINS.get("stft2mel")()
    model = DomainModel(result.model, domain, frontend).eval()
    base, learned = LMACZS({"hidden": 8}), LMACZS({"hidden": 8, "head": "linear"})
    torch.manual_seed(0)
    d_base = base._build(model).eval()
    d_learned = learned._build(model).eval()
    assert d_base.body.grid is None and d_learned.body.grid.weight.shape == (frontend.params.n_fft // 2 + 1,
                                                                            frontend.params.n_mels)
    d_learned.load_state_dict(d_base.state_dict(), strict=False)  # every weight but the head's
    x = domain.represent(frontend, splits["test"].waveforms[:3]).x
    t = result.model.prompt_embeddings()[:3]
    with torch.no_grad():
        torch.testing.assert_close(learned.masks(d_learned, model, x, t), base.masks(d_base, model, x, t))
    assert learned.row_label() == "LMAC-ZS (learned head)" and base.row_label() == "LMAC-ZS"
    assert "head" not in base.params.model_dump() and learned.params.model_dump()["head"] == "linear"
