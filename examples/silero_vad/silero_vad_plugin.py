"""Silero VAD v6 (MIT; weights inside the silero-vad wheel) as an audiobench detector reading |STFT|."""
from importlib.resources import files

import torch
from torch import nn

from audiobench.api import MODELS, AudioClassifier, ModelSpec


class Chunked(nn.Module):  # a Silero layer as a block on [B, C, T, 1]: 4 frames (32 ms) at a time, or along T (LSTM)
    def __init__(self, layer: nn.Module, frames: int | None):
        super().__init__()
        self.layer, self.frames = layer, frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x[..., 0].transpose(1, 2)  # [B, T, C]
        y = self.layer(seq)[0] if self.frames is None else self.layer(  # chunks [B * T / f, C, f] -> [.., f', C']
            seq.reshape(-1, self.frames, seq.shape[2]).transpose(1, 2)).transpose(1, 2)
        return y.reshape(len(x), -1, y.shape[-1]).transpose(1, 2).unsqueeze(-1)


class SileroVad(AudioClassifier):
    input_kind, frame_pooling, detector = "linear", "max", True  # speech if any 32 ms chunk holds it

    def __init__(self, class_names: list[str]):
        super().__init__()
        convs = [nn.Conv1d(i, o, 3, stride=s, padding=1) for i, o, s in ((129, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1))]
        self.layers = nn.ModuleList([*(Chunked(nn.Sequential(c, nn.ReLU()), f) for c, f in zip(convs, (4, 4, 2, 1), strict=True)),
                                     Chunked(nn.LSTM(128, 128, batch_first=True), None)])
        self.out, self.class_names, self.sample_rate = nn.Conv1d(128, 1, 1), class_names, 16000
        jit = torch.jit.load(str(files("silero_vad.data") / "silero_vad.jit"))._model.state_dict()  # our order
        theirs = [v for k, v in jit.items() if not k.startswith("stft")]  # its STFT is the harness's (Hann 256/128)
        self.load_state_dict({k: v.reshape(w.shape) for (k, w), v in zip(self.state_dict().items(), theirs, strict=True)})

    def blocks(self) -> list[nn.Module]:
        return list(self.layers)

    def block_channels(self) -> list[int]:
        return [128, 64, 64, 128, 128]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        h = inp[:, 0, : inp.shape[2] // 4 * 4].transpose(1, 2).unsqueeze(-1)  # |X| [B, 129, T, 1], whole chunks
        return [h := layer(h) for layer in self.layers]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.out(last[..., 0].relu()).transpose(1, 2)  # one logit per 32 ms chunk [B, T', 1]


@MODELS.register("silero_vad")
class SileroVadSpec(ModelSpec):
    """Silero VAD v6 (16 kHz), weights from the installed wheel; classes (no speech, speech)."""
    trainable, input_kind, detector, frame_pooling, peak_normalise = False, "linear", True, "max", False  # level as recorded

    def required_frontend(self) -> dict:
        return {"sample_rate": 16000, "n_fft": 256, "win_length": 256, "hop_length": 128, "window": "hann"}

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        return SileroVad(list(class_names)).eval()
