"""Occlusion (time windows, frequency bands, patches): Captum's ``Occlusion`` as the oracle, a model that
reads one band as the known answer, and batching that changes nothing."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion
from torch import nn

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.methods.occlusion import Occlusion, occlusion_attribution, occlusion_windows, window_starts


def test_window_starts_cover_the_axis_and_add_one_flush_window() -> None:
    assert window_starts(10, 4, 4) == [0, 4, 6]  # 0-3, 4-7, then 6-9 so bins 8-9 are covered
    assert window_starts(12, 4, 4) == [0, 4, 8]
    assert window_starts(5, 8, 8) == [0]  # a window longer than the axis is the axis
    with pytest.raises(ValueError, match="positive"):
        window_starts(10, 0, 1)


def test_every_bin_is_covered_and_shapes_span_their_axes() -> None:
    time = occlusion_windows(11, 7, "time", 4, 3, 4, 3)
    band = occlusion_windows(11, 7, "frequency", 4, 3, 4, 3)
    patch = occlusion_windows(11, 7, "patch", 4, 3, 4, 3)
    assert time.shape[0] == 3 and bool(time.any(dim=2).eq(time.all(dim=2)).all())  # every frame whole or not at all
    assert band.shape[0] == 3 and bool(band.any(dim=1).eq(band.all(dim=1)).all())
    assert patch.shape[0] == 9
    for w in (time, band, patch):
        assert bool(w.any(dim=0).all())


@pytest.mark.parametrize("shape, window, band, stride_t, stride_f", [
    ("time", 4, 10, 2, 10), ("frequency", 12, 4, 12, 3), ("patch", 4, 4, 2, 3)])
def test_matches_captum_occlusion_with_overlapping_windows(shape: str, window: int, band: int, stride_t: int,
                                                           stride_f: int) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12 * 10, 3), nn.Tanh(), nn.Linear(3, 4))
    x, target = torch.randn(2, 1, 12, 10), torch.tensor([1, 3])
    windows = occlusion_windows(12, 10, shape, window, band, stride_t, stride_f)
    ours = occlusion_attribution(net, x, target, windows, torch.zeros(2, 1, 1, 1), max_rows=5)
    wt, st = (12, 12) if shape == "frequency" else (window, stride_t)
    wf, sf = (10, 10) if shape == "time" else (band, stride_f)
    ref = CaptumOcclusion(net).attribute(x, sliding_window_shapes=(1, wt, wf), strides=(1, st, sf), target=target,
                                         baselines=0, perturbations_per_eval=7)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


class OneBand(nn.Module):
    """Class 0's logit is the sum of bins 8-11 of the grid, class 1's is 0: the evidence is one band."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[..., 8:12].sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_band_removal_finds_the_band_a_model_reads_with_the_known_drop() -> None:
    x = torch.rand(3, 1, 6, 16) + 0.1
    windows = occlusion_windows(6, 16, "frequency", 6, 4, 6, 4)  # bands 0-3, 4-7, 8-11, 12-15
    attr = occlusion_attribution(OneBand(), x, torch.zeros(3, dtype=torch.long), windows, torch.zeros(3, 1, 1, 1), 64)
    expected = torch.zeros_like(x)
    expected[..., 8:12] = x[..., 8:12].sum(dim=(1, 2, 3)).view(3, 1, 1, 1)  # zeroing the band drops the logit by its sum
    torch.testing.assert_close(attr, expected)
    # with the mean as fill the drop is the band's sum minus the mean times its size
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    attr = occlusion_attribution(OneBand(), x, torch.zeros(3, dtype=torch.long), windows, fill, 64)
    torch.testing.assert_close(attr[..., 8:12], (x[..., 8:12].sum(dim=(1, 2, 3)) - 24 * fill.view(3)).view(3, 1, 1, 1)
                               .expand(3, 1, 6, 4))
    assert float(attr[..., :8].abs().max()) == 0.0


def test_the_pass_size_changes_nothing() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6, 5))
    x, target = torch.randn(3, 1, 8, 6), torch.tensor([0, 4, 2])
    windows = occlusion_windows(8, 6, "patch", 3, 2, 2, 2)
    one = occlusion_attribution(net, x, target, windows, torch.zeros(3, 1, 1, 1), max_rows=1)
    many = occlusion_attribution(net, x, target, windows, torch.zeros(3, 1, 1, 1), max_rows=1000)
    torch.testing.assert_close(one, many)


def test_the_method_explains_a_cnn_in_the_mel_domain_and_labels_its_row() -> None:
    from audiobench.models.cnn14 import Cnn14

    torch.manual_seed(0)
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32))
    model = DomainModel(Cnn14(3, n_mels=32, width=4, depth=2).eval(), Mel(), frontend).eval()
    method = Occlusion({"shape": "patch", "window": 4, "band": 8})
    x = torch.rand(2, 1, 20, 32)
    mask = method.explain(x, torch.tensor([0, 2]), ExplainContext(model, max_rows=16)).mask
    assert mask.shape == x.shape and float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert method.row_label() == "Occlusion (patch, 4 fr. x 8 bins)"
    assert Occlusion().row_label() == "Occlusion (time, 8 fr.)"


def test_a_size_below_one_is_a_share_of_the_axis_so_every_grid_gets_the_same_number_of_bands() -> None:
    method = Occlusion({"shape": "frequency", "band": 0.1})
    assert method.windows(10, 513).shape[0] == method.windows(10, 80).shape[0] == 10  # 51 of 513 bins, 8 of 80 mels
    assert Occlusion({"shape": "time", "window": 16}).windows(173, 80).shape[0] == 11
    assert method.row_label() == "Occlusion (frequency, 10 %)"
    assert Occlusion({"window": 4.0}).params.window == 4  # a whole float is bins
    with pytest.raises(ValueError, match="whole number of bins or a share below 1"):
        Occlusion({"window": 1.5})
