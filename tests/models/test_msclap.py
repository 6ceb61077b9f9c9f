"""The msclap adapter (Microsoft CLAP 2022) offline: no real weights exist here.

A randomly initialised network in msclap's module layout (``audio_encoder.base`` a PANNs CNN14
with its torchlibrosa front-end tensors, ``audio_encoder.projection``, ``caption_encoder.base`` a
transformers BertModel of a tiny config, ``caption_encoder.projection``, ``logit_scale``) is saved
as ``{"model": state_dict}`` and loaded through the adapter. The mel filterbank oracle is librosa's
slaney algorithm written out in NumPy (what torchlibrosa stores as ``melW``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers  # the `clap` extra, also in `dev`
from torch import nn

from audiobench.cli import main
from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import probabilities
from audiobench.models.msclap import MsClap, MsClapSpec, map_key
from tests.paths import ROOT

SR = 44100
CLAP_FRONT = FrontendParams(sample_rate=SR, n_fft=1024, win_length=1024, hop_length=320, window="hann", n_mels=64,
                            f_min=50, f_max=14000, mel_scale="slaney", mel_norm="slaney", mel_power=2)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "this", "is", "the", "sound", "of", "a", "dog", "cat", "rain",
         "siren", "engine", "crying", "baby", "glass", "breaking", "##s", "bark", "##ing"]
PROMPTS = ["this is the sound of dog", "this is the sound of cat", "this is the sound of rain", "siren",
           "this is the sound of crying baby", "a dog barking", "glass breaking", "the engine of a cat"]
WIDTH, DEPTH = 4, 3


# -- librosa's slaney mel filters, written out (the oracle of torchlibrosa's melW) -------------------
def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def librosa_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm='slaney').T: [n_fft // 2 + 1, n_mels]."""
    fft = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff, ramps = np.diff(mel_f), np.subtract.outer(mel_f, fft)
    w = np.stack([np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1])) for i in range(n_mels)])
    return (w * (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]).T


# -- msclap's layout, randomly initialised ----------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)


class _Stft(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_real, self.conv_imag = nn.Conv1d(1, 513, 1024, bias=False), nn.Conv1d(1, 513, 1024, bias=False)


class _Cnn14(nn.Module):  # PANNs Cnn14 as msclap's audio.py builds it (front end included)
    def __init__(self) -> None:
        super().__init__()
        self.spectrogram_extractor = nn.Module()
        self.spectrogram_extractor.stft = _Stft()
        self.logmel_extractor = nn.Module()
        self.logmel_extractor.melW = nn.Parameter(torch.from_numpy(librosa_mel(SR, 1024, 64, 50, 14000)).float())
        self.bn0 = nn.BatchNorm2d(64)
        ch = [1] + [WIDTH * 2**i for i in range(DEPTH)]
        for i in range(DEPTH):
            self.add_module(f"conv_block{i + 1}", _Block(ch[i], ch[i + 1]))
        self.fc1, self.fc_audioset = nn.Linear(ch[-1], ch[-1]), nn.Linear(ch[-1], 527)


class _Proj(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_in, d_out, bias=False), nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)


class _Ref(nn.Module):
    def __init__(self, bert_config: object, d_proj: int = 12):
        super().__init__()
        self.audio_encoder, self.caption_encoder = nn.Module(), nn.Module()
        self.audio_encoder.base, self.audio_encoder.projection = _Cnn14(), _Proj(WIDTH * 2 ** (DEPTH - 1), d_proj)
        self.caption_encoder.base = transformers.BertModel(bert_config)
        self.caption_encoder.projection = _Proj(bert_config.hidden_size, d_proj)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def text_embedding(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """msclap's TextEncoder.forward: CLS token of BERT's last hidden state, then the projection."""
        p = self.caption_encoder.projection
        h = p.linear1(self.caption_encoder.base(**tokens)[0][:, 0, :])
        return p.layer_norm(h + p.linear2(torch.nn.functional.gelu(h)))


def _randomise(module: nn.Module, seed: int) -> None:
    """Every float tensor (weights, biases, batch-norm statistics, logit_scale) random; melW stays librosa's."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or name.endswith("melW"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("msclap")
    bert = root / "bert-base-uncased"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    config = transformers.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=128)
    config.save_pretrained(bert)
    torch.manual_seed(0)
    ref = _Ref(config)
    _randomise(ref, 1)
    state = dict(ref.state_dict())
    state["caption_encoder.base.embeddings.position_ids"] = torch.arange(128)[None]  # as transformers < 4.31 saved it
    ckpt = root / "CLAP_weights_2022.pth"
    torch.save({"model": state}, ckpt)
    return {"bert": bert, "ckpt": ckpt, "ref": ref.eval()}


def _ref(files: dict[str, object]) -> _Ref:
    return files["ref"]  # type: ignore[return-value]


def _build(files: dict, **params: object) -> MsClap:
    spec = MsClapSpec({"checkpoint": files["ckpt"], "text_model": files["bert"], **params})
    return spec.build(["dog", "cat", "rain", "crying_baby"], 64, SR)


def test_every_checkpoint_tensor_lands_under_its_mapped_name(files: dict) -> None:
    model = _build(files)
    saved = torch.load(files["ckpt"], weights_only=True)["model"]
    ours = model.state_dict()
    dropped, landed = [], set()
    for key, value in saved.items():
        name = map_key(key)
        if name is None:
            dropped.append(key)
            continue
        assert torch.equal(ours[name], value), key
        landed.add(name)
    assert sorted(dropped) == ["audio_encoder.base.spectrogram_extractor.stft.conv_imag.weight",
                               "audio_encoder.base.spectrogram_extractor.stft.conv_real.weight",
                               "caption_encoder.base.embeddings.position_ids"]
    assert landed == set(ours)  # every parameter and buffer of the adapter came from the checkpoint
    assert model.prompts == ["this is the sound of dog", "this is the sound of cat", "this is the sound of rain",
                             "this is the sound of crying baby"]
    assert float(model.logit_scale.detach()) == pytest.approx(math.exp(float(saved["logit_scale"])))  # exp, as compute_similarity


def test_the_released_checkpoints_key_names_and_shapes_fit_the_full_size_adapter() -> None:
    # key names and shapes of CLAP_weights_2022.pth, from msclap 1.3.4 (models/clap.py, models/audio.py,
    # configs/config_2022.yml: Cnn14 out_emb 2048, 527 classes, d_proj 1024, bert-base-uncased)
    released = {
        "audio_encoder.base.bn0.weight": (64,), "audio_encoder.base.conv_block1.conv1.weight": (64, 1, 3, 3),
        "audio_encoder.base.conv_block6.conv2.weight": (2048, 2048, 3, 3),
        "audio_encoder.base.conv_block6.bn2.running_var": (2048,), "audio_encoder.base.fc1.weight": (2048, 2048),
        "audio_encoder.base.fc_audioset.weight": (527, 2048), "audio_encoder.base.logmel_extractor.melW": (513, 64),
        "audio_encoder.projection.linear1.weight": (1024, 2048), "audio_encoder.projection.linear2.weight": (1024, 1024),
        "audio_encoder.projection.layer_norm.bias": (1024,),
        "caption_encoder.base.embeddings.word_embeddings.weight": (30522, 768),
        "caption_encoder.base.encoder.layer.11.attention.self.query.weight": (768, 768),
        "caption_encoder.base.encoder.layer.11.output.LayerNorm.bias": (768,),
        "caption_encoder.base.pooler.dense.weight": (768, 768),
        "caption_encoder.projection.linear1.weight": (1024, 768), "logit_scale": (),
    }
    with torch.device("meta"):
        model = MsClap(transformers.BertConfig(), tokenizer=None)  # bert-base sizes; CNN14 width 64, depth 6
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in released.items():
        assert shapes[map_key(key)] == shape, key
    assert map_key("module.logit_scale") == "log_scale"
    with pytest.raises(KeyError):
        map_key("text_encoder.base.embeddings.word_embeddings.weight")


def test_network_input_is_clap_logmel_in_both_domains(files: dict) -> None:
    model = _build(files)
    frontend = Frontend(CLAP_FRONT)
    assert torch.allclose(frontend.mel_fb, model.mel_basis, rtol=1e-4, atol=1e-7)  # the front end builds CLAP's melW
    wave = torch.randn(2, SR // 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([[0.5], [0.02]])
    spec = torch.stft(wave, 1024, 320, 1024, torch.hann_window(1024), center=True, pad_mode="reflect", return_complex=True)
    power = spec.abs().square().transpose(1, 2).unsqueeze(1).double()  # [B, 1, T, 513], torchlibrosa's Spectrogram
    want = 10 * torch.log10((power @ model.mel_basis.double()).clamp_min(1e-10))
    for domain in (Stft2Mel(), Mel()):
        got = model.network_input(domain, frontend, domain.represent(frontend, wave).x)
        assert got.shape == want.shape == (2, 1, power.shape[2], 64)
        assert (got.double() - want).abs().max() < 1e-3, domain.name
    with pytest.raises(AudiobenchError, match="msclap needs CLAP's front end.*mel_power 1"):
        model.network_input(Mel(), Frontend(CLAP_FRONT.model_copy(update={"mel_power": 1})), want.float())
    htk = Frontend(FrontendParams(**{**CLAP_FRONT.model_dump(), "mel_scale": "htk", "mel_norm": None}))
    with pytest.raises(AudiobenchError, match="differs from the checkpoint's melW"):
        model.network_input(Mel(), htk, want.float())


def test_prompts_embedded_in_chunks_equal_one_by_one_and_msclaps_text_path(files: dict) -> None:
    one = _build(files, text_batch=1).encode_text(PROMPTS)
    with torch.no_grad():
        chunks = _build(files, text_batch=3).encode_text(PROMPTS)
        whole = _build(files, text_batch=64).embed_text(PROMPTS)
        ref = _ref(files)
        tok = transformers.AutoTokenizer.from_pretrained(str(files["bert"]), local_files_only=True)
        tokens = tok(PROMPTS, add_special_tokens=True, max_length=100, padding="max_length", return_tensors="pt")
        want = ref.text_embedding(dict(tokens))
    assert one.shape == (len(PROMPTS), 12)
    assert torch.allclose(chunks, one, atol=1e-5) and torch.allclose(whole, torch.nn.functional.normalize(one, dim=-1), atol=1e-5)
    assert torch.allclose(one, want, atol=1e-5)
    assert not torch.allclose(one[0], one[1], atol=1e-3)  # different prompts, different embeddings


def test_similarity_head_and_probabilities_equal_a_hand_computation(files: dict) -> None:
    model = _build(files)
    frontend = Frontend(CLAP_FRONT)
    wave = torch.randn(3, SR // 2, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        last = model.features(model.network_input(Mel(), frontend, Mel().represent(frontend, wave).x))[-1]
        scores = model.head(last).double().numpy()
        ref = _ref(files)
        pooled = last.mean(dim=3)
        pooled = pooled.amax(dim=2) + pooled.mean(dim=2)
        base, p = ref.audio_encoder.base, ref.audio_encoder.projection
        h = p.linear1(torch.relu(base.fc1(pooled)))
        audio = p.layer_norm(h + p.linear2(torch.nn.functional.gelu(h))).double().numpy()
        text = model.encode_text(model.prompts).double().numpy()
    a = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    hand = math.exp(float(ref.logit_scale)) * a @ t.T  # msclap's compute_similarity
    assert scores.shape == (3, 4)
    assert np.allclose(scores, hand, atol=1e-4)
    probs = probabilities(torch.from_numpy(scores), "similarity").numpy()
    e = np.exp(hand - hand.max(axis=1, keepdims=True))
    assert np.allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-6)


def _one_line_error(spec: MsClapSpec) -> str:
    with pytest.raises(AudiobenchError) as info:
        spec.build(["dog"], 64, SR)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_missing_or_wrong_files_are_one_line_errors(files: dict, tmp_path: Path) -> None:
    bert = files["bert"]
    missing = MsClapSpec({"checkpoint": tmp_path / "nope.pth", "text_model": bert})
    assert missing.check() == [f"model.checkpoint: {tmp_path / 'nope.pth'} not found; get CLAP_weights_2022.pth from "
                               "https://zenodo.org/record/8378278 (CLAP_weights_2022.pth; also https://huggingface.co/microsoft/msclap)"]
    assert "zenodo.org/record/8378278" in _one_line_error(missing)
    unset = MsClapSpec({})
    assert [p.split(":")[0] for p in unset.check(n_mels=80)] == ["model.checkpoint", "model.text_model", "frontend.n_mels is 80; CLAP's CNN14 reads 64 mel bands (set frontend as suites/esc50_zs.yaml)"]
    panns = tmp_path / "cnn14.pth"  # a PANNs classifier, not CLAP
    torch.save({"model": {"conv_block1.conv1.weight": torch.zeros(64, 1, 3, 3)}}, panns)
    not_clap = "is not a Microsoft CLAP (msclap, CNN14 + BERT) checkpoint: it has no key 'audio_encoder.base.conv_block1.conv1.weight'"
    assert not_clap in _one_line_error(MsClapSpec({"checkpoint": panns, "text_model": bert}))
    (problem,) = MsClapSpec({"checkpoint": panns, "text_model": bert}).check(n_mels=64)  # what validate prints
    assert not_clap in problem
    assert MsClapSpec({"checkpoint": files["ckpt"], "text_model": bert}).check(n_mels=64) == []
    assert MsClapSpec({"checkpoint": files["ckpt"], "text_model": bert}).check(n_mels=80) == [
        f"model.checkpoint: {files['ckpt']} reads 64 mel bands, frontend.n_mels is 80"]
    cut = tmp_path / "cut.pth"
    cut.write_bytes(files["ckpt"].read_bytes()[:5000])
    assert "incomplete or corrupt" in _one_line_error(MsClapSpec({"checkpoint": cut, "text_model": bert}))
    extra = tmp_path / "extra.pth"
    state = torch.load(files["ckpt"], weights_only=True)["model"]
    torch.save({"model": {**state, "caption_encoder.base.encoder.layer.9.output.dense.weight": torch.zeros(1)}}, extra)
    assert "1 keys outside the msclap CLAP layout, e.g. 'caption_encoder.base.encoder.layer.9.output.dense.weight'" \
        in _one_line_error(MsClapSpec({"checkpoint": extra, "text_model": bert}))
    short = tmp_path / "short.pth"
    torch.save({"model": {k: v for k, v in state.items() if k != "audio_encoder.projection.layer_norm.weight"}}, short)
    assert "1 parameters missing from the checkpoint, e.g. 'audio_proj.layer_norm.weight'" \
        in _one_line_error(MsClapSpec({"checkpoint": short, "text_model": bert}))
    other_bert = tmp_path / "bert-large"
    other_bert.mkdir()
    (other_bert / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    transformers.BertConfig(vocab_size=len(WORDS), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32).save_pretrained(other_bert)
    assert "has shape (23, 16), the model expects (23, 24)" in _one_line_error(MsClapSpec({"checkpoint": files["ckpt"], "text_model": other_bert}))
    assert "model.text_model" in _one_line_error(MsClapSpec({"checkpoint": files["ckpt"], "text_model": tmp_path}))
    with pytest.raises(AudiobenchError, match="frontend.sample_rate is 16000; CLAP 2022 was trained on 44100 Hz audio"):
        MsClapSpec({"checkpoint": files["ckpt"], "text_model": bert}).build(["dog"], 64, 16000)


def test_frontend_filterbank_keys_default_to_the_old_filterbank_and_old_cache_keys() -> None:
    old = FrontendParams()
    assert "mel_scale" not in old.model_dump() and "mel_power" not in old.model_dump(mode="json")  # hashes unchanged
    assert set(CLAP_FRONT.model_dump()) >= {"mel_scale", "mel_norm", "mel_power"}
    fb = Frontend(CLAP_FRONT).mel_fb.double().numpy()
    assert np.allclose(fb, librosa_mel(SR, 1024, 64, 50, 14000), rtol=1e-4, atol=1e-8)  # librosa's slaney filters
    x = torch.rand(1, 1, 5, 513)
    assert torch.allclose(Frontend(CLAP_FRONT).mel(x), x.square() @ Frontend(CLAP_FRONT).mel_fb)
    assert torch.allclose(Frontend(old).mel(x[..., :513]), x @ Frontend(old).mel_fb)


SUITES = ROOT / "suites"


@pytest.mark.parametrize("suite", ["esc50_zs.yaml", "us8k_zs.yaml"])
def test_validate_names_every_missing_path_and_where_to_get_it(suite: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = SUITES / suite
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    lines = path.read_text().splitlines()

    def line_of(text: str) -> int:
        return next(i for i, ln in enumerate(lines, 1) if text in ln)

    dataset = ("ESC-50 is at https://github.com/karolpiczak/ESC-50" if suite.startswith("esc50")
               else "UrbanSound8K is at https://urbansounddataset.weebly.com/urbansound8k.html")
    expected = [
        (line_of("dataset:"), "dataset.root: /data/", dataset),
        (line_of("model:"), "model.checkpoint: /data/clap/CLAP_weights_2022.pth not found", "zenodo.org/record/8378278"),
        (line_of("model:"), "model.text_model: /data/clap/bert-base-uncased not found", "huggingface.co/google-bert/bert-base-uncased"),
        (line_of("name: noise_folder"), "noise_folder.root: /data/LJSpeech-1.1/wavs not found", "https://keithito.com/LJ-Speech-Dataset/"),
    ]
    for line, what, where in expected:
        hits = [ln for ln in err.splitlines() if ln.startswith(f"{path}:{line}: ") and what in ln and where in ln]
        assert len(hits) == 1, (what, err)


def test_esc50_zs_suite_runs_end_to_end_on_a_tiny_clap_and_compares_with_the_paper(
        files: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audiobench.store.run_dir import load_run
    from tests.fakedata import make_clotho, make_esc50, make_speech_folder

    root = make_esc50(tmp_path / "ESC-50", sr=SR, seconds=0.5)
    speech = make_speech_folder(tmp_path / "wavs", sr=16000)
    sets = [f"dataset.root={root}", "dataset.seconds=0.5", f"model.checkpoint={files['ckpt']}",
            f"model.text_model={files['bert']}", f"contaminations.3.root={speech}", "methods.2.n_samples=2",
            "methods.3.n_steps=4", "methods.4.epochs=1", f"methods.4.clotho={make_clotho(tmp_path / 'clotho', sr=SR)}",
            "methods.4.clotho_seconds=0.5", "batch_size=4", "audio.n=1"]
    run_dir = tmp_path / "run"
    args = [a for s in sets for a in ("--set", s)]
    assert main(["run", str(SUITES / "esc50_zs.yaml"), *args, "-o", str(run_dir), "--limit", "3", "-q"]) == 0
    capsys.readouterr()
    frame = load_run(run_dir)
    assert set(frame.row) == {"GradCam", "GradCam++", "SmoothGrad", "IG", "LMAC-ZS (CT)"}
    assert set(frame.domain) == {"stft2mel", "mel"} and frame.contamination.nunique() == 4
    assert frame[frame.metric == "ai"].value.notna().all()
    assert main(["table", str(run_dir), "--compare", "lmaczs_neurips2024:1:dataset=ESC50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for label in ("GradCam", "GradCam++", "SmoothGrad", "IG", "LMAC-ZS (CT)"):
        ours = next(i for i, ln in enumerate(lines) if f"| {label} " in ln and "| ours" in ln)
        assert "| paper" in lines[ours + 1] and "| —" not in lines[ours + 1].split("| paper")[1][:12], lines[ours + 1]


def test_msclap_passes_the_model_contract_and_declares_clap_front_end(files: dict, tmp_path: Path) -> None:
    import yaml

    from audiobench.suite import SuiteErrors, load_suite
    from audiobench.testing import check_model

    spec = MsClapSpec({"checkpoint": files["ckpt"], "text_model": files["bert"]})
    assert FrontendParams(**spec.required_frontend()) == CLAP_FRONT
    assert check_model(spec, n_classes=4)[-1] == "scores[mel]"  # built on CLAP's front end
    with pytest.raises(AssertionError, match="front end: frontend.sample_rate is 16000, the model reads 44100"):
        check_model(spec, frontend=FrontendParams())
    # validate: a suite that leaves the front end out takes CLAP's; one that sets it otherwise is refused at that line
    suite = {"name": "zs", "dataset": {"name": "synth", "classes": 3, "clips_per_class": 10, "seconds": 0.5},
             "model": {"name": "msclap", "checkpoint": str(files["ckpt"]), "text_model": str(files["bert"])},
             "methods": ["saliency"], "metrics": ["ai"]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    assert load_suite(path).frontend == CLAP_FRONT
    path.write_text(yaml.safe_dump({**suite, "frontend": {"sample_rate": 16000, "n_mels": 64}}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=r"suite\.yaml:\d+: frontend\.sample_rate is 16000, but model 'msclap' reads 44100"):
        load_suite(path)
