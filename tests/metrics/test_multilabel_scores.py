"""Multi-label scores (metrics/multilabel.py): known answers, scikit-learn as the oracle, masks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from audiobench.metrics.multilabel import (
    average_precision_per_class,
    average_weighted_f1,
    macro_auprc,
    masked_bce,
    max_f1,
    micro_auprc,
    threshold_decisions,
    weighted_f1,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

# Hand-worked 4 clips x 2 classes.
# Class 0: scores .9 .8 .7 .6, labels 1 0 1 0 (2 positives). Thresholds in decreasing order:
#   .9: TP1 FP0 P=1   R=1/2 | .8: TP1 FP1 P=1/2 R=1/2 | .7: TP2 FP1 P=2/3 R=1 | .6: P=1/2 R=1
#   AP = (1/2 - 0)*1 + 0*(1/2) + (1 - 1/2)*(2/3) + 0*(1/2) = 1/2 + 1/3 = 5/6
# Class 1 (a tie): scores .4 .4 .2 .1, labels 0 1 1 0. The two .4 form one threshold:
#   .4: TP1 FP1 P=1/2 R=1/2 | .2: TP2 FP1 P=2/3 R=1 | .1: P=1/2 R=1
#   AP = (1/2)(1/2) + (1/2)(2/3) = 1/4 + 1/3 = 7/12;  macro = (5/6 + 7/12)/2 = 17/24
# Micro, 8 pairs pooled, 4 positives: .9(1) .8(0) .7(1) .6(0) .4(0) .4(1) .2(1) .1(0)
#   recall rises by 1/4 at .9 (P=1), .7 (P=2/3), .4 (TP3 FP3 P=1/2), .2 (TP4 FP3 P=4/7)
#   AP = (1 + 2/3 + 1/2 + 4/7)/4 = 115/168
#   micro max-F1 = max 2TP/(TP+FP+4): .9 2/5, .7 4/7, .4 6/10, .2 8/11, .1 8/12 -> 8/11
#   per class max-F1: class 0 at .7: 2*2/(3+2) = 4/5; class 1 at .2: 4/5 -> macro 4/5
HAND_S = torch.tensor([[0.9, 0.4], [0.8, 0.4], [0.7, 0.2], [0.6, 0.1]])
HAND_Y = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])


def test_hand_worked_example() -> None:
    ap = average_precision_per_class(HAND_S, HAND_Y)
    torch.testing.assert_close(ap, torch.tensor([5 / 6, 7 / 12], dtype=torch.float64))
    assert macro_auprc(HAND_S, HAND_Y).item() == pytest.approx(17 / 24, abs=1e-15)
    assert micro_auprc(HAND_S, HAND_Y).item() == pytest.approx(115 / 168, abs=1e-15)
    assert max_f1(HAND_S, HAND_Y).item() == pytest.approx(8 / 11, abs=1e-15)
    assert max_f1(HAND_S, HAND_Y, average="macro").item() == pytest.approx(4 / 5, abs=1e-15)


def random_case(seed: int, n: int = 60, c: int = 5, masked: bool = True):
    """Scores with ties (rounded to 0.1), class 2 without a positive, optionally a random mask."""
    g = np.random.default_rng(seed)
    s = np.round(g.random((n, c)), 1)
    y = (g.random((n, c)) < 0.35).astype(np.int64)
    y[:, 2] = 0
    y[0, [0, 1, 3, 4]] = 1  # a positive in every other class, known below
    m = g.random((n, c)) < 0.7 if masked else np.ones((n, c), dtype=bool)
    m[0] = True
    return s, y, m


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def oracle_ap(s, y, m) -> np.ndarray:
    out = []
    for c in range(s.shape[1]):
        yc, sc = y[m[:, c], c], s[m[:, c], c]
        out.append(average_precision_score(yc, sc) if yc.any() else np.nan)
    return np.array(out)


def best_f1(y: np.ndarray, s: np.ndarray) -> float:
    p, r, _ = precision_recall_curve(y, s)
    return float(np.max(np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_auprc_against_sklearn(seed: int, masked: bool) -> None:
    s, y, m = random_case(seed, masked=masked)
    mask = t(m) if masked else None
    ap = average_precision_per_class(t(s), t(y), mask).numpy()
    np.testing.assert_allclose(ap, oracle_ap(s, y, m), rtol=0, atol=1e-12)
    assert np.isnan(ap[2])
    assert macro_auprc(t(s), t(y), mask).item() == pytest.approx(np.nanmean(oracle_ap(s, y, m)), abs=1e-12)
    assert micro_auprc(t(s), t(y), mask).item() == pytest.approx(average_precision_score(y[m], s[m]), abs=1e-12)
    if not masked:
        keep = [0, 1, 3, 4]
        assert macro_auprc(t(s), t(y)).item() == pytest.approx(
            average_precision_score(y[:, keep], s[:, keep], average="macro"), abs=1e-12
        )
        assert micro_auprc(t(s), t(y)).item() == pytest.approx(
            average_precision_score(y, s, average="micro"), abs=1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_max_f1_against_sklearn(seed: int, masked: bool) -> None:
    s, y, m = random_case(seed, masked=masked)
    mask = t(m) if masked else None
    assert max_f1(t(s), t(y), mask).item() == pytest.approx(best_f1(y[m], s[m]), abs=1e-12)
    per_class = [best_f1(y[m[:, c], c], s[m[:, c], c]) for c in (0, 1, 3, 4)]
    assert max_f1(t(s), t(y), mask, average="macro").item() == pytest.approx(np.mean(per_class), abs=1e-12)
    grid = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    want = max(f1_score(y[m], s[m] > g, zero_division=0) for g in grid)
    assert max_f1(t(s), t(y), mask, thresholds=grid).item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_f1_scores_against_sklearn(seed: int, masked: bool) -> None:
    s, y, m = random_case(seed, masked=masked)
    d = (s > 0.5).astype(np.int64)
    d[:, 4] = 0  # a class never predicted
    mask = t(m) if masked else None
    if masked:
        f1 = [f1_score(y[m[:, c], c], d[m[:, c], c], zero_division=0) for c in range(5)]
        support = [y[m[:, c], c].sum() for c in range(5)]
        want = np.average(f1, weights=support)
    else:
        want = f1_score(y, d, average="weighted", zero_division=0)
    assert weighted_f1(t(d), t(y), mask).item() == pytest.approx(want, abs=1e-12)
    per_class = [f1_score(y[m[:, c], c], d[m[:, c], c], average="weighted", zero_division=0) for c in range(5)]
    assert average_weighted_f1(t(d), t(y), mask).item() == pytest.approx(np.mean(per_class), abs=1e-12)


def all_scores(s: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    d = threshold_decisions(s, 0.5)
    return [
        average_precision_per_class(s, y, mask), macro_auprc(s, y, mask), micro_auprc(s, y, mask),
        max_f1(s, y, mask), max_f1(s, y, mask, average="macro"), max_f1(s, y, mask, thresholds=[0.3, 0.6]),
        weighted_f1(d, y, mask), average_weighted_f1(d, y, mask), masked_bce(s, y.float(), mask, from_logits=False),
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_unknown_pairs_change_nothing(seed: int) -> None:
    s, y, m = random_case(seed)
    s, y, mask = t(s), t(y), t(m)
    before = all_scores(s, y, mask)
    g = torch.Generator().manual_seed(seed)
    s2 = torch.where(mask, s, torch.rand(s.shape, generator=g, dtype=s.dtype))
    y2 = torch.where(mask, y, 1 - y)
    after = all_scores(s2, y2, mask)
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b) or (a.isnan().equal(b.isnan()) and torch.equal(a[~a.isnan()], b[~b.isnan()]))
    # OpenMIC fills unknown labels with 0.5 and may leave NaN scores there: both are ignored.
    s3 = torch.where(mask, s, torch.full_like(s, torch.nan))
    y3 = torch.where(mask, y.double(), torch.full_like(s, 0.5))
    torch.testing.assert_close(micro_auprc(s3, y3, mask), before[2], rtol=0, atol=0)
    torch.testing.assert_close(max_f1(s3, y3, mask), before[3], rtol=0, atol=0)


def test_label_dtypes_agree() -> None:
    s, y, m = random_case(5)
    ref = macro_auprc(t(s), t(y), t(m))
    for yy in (t(y).bool(), t(y).float(), t(y).to(torch.int8)):
        assert torch.equal(macro_auprc(t(s), yy, t(m)), ref)


def test_masked_bce_by_hand_and_against_torch() -> None:
    z = torch.tensor([[0.0, 2.0], [-1.0, 3.0]], requires_grad=True)
    tg = torch.tensor([[1.0, 0.25], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    # softplus(z) - t z at the known pairs: ln 2; ln(1 + e^-1); ln(1 + e^3) - 3 = ln(1 + e^-3)
    hand = (math.log(2) + math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 3
    loss = masked_bce(z, tg, mask)
    assert loss.item() == pytest.approx(hand, abs=1e-7)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(z[mask], tg[mask]))
    p = torch.sigmoid(z.detach())
    torch.testing.assert_close(masked_bce(p, tg, mask, from_logits=False), F.binary_cross_entropy(p[mask], tg[mask]))
    torch.testing.assert_close(masked_bce(z, tg), F.binary_cross_entropy_with_logits(z, tg))
    loss.backward()
    assert z.grad is not None and z.grad[0, 1] == 0
    # NaN at an unknown pair neither poisons the loss nor its gradient.
    z2 = torch.tensor([[0.0, torch.nan], [-1.0, 3.0]], requires_grad=True)
    loss2 = masked_bce(z2, torch.where(mask, tg, torch.nan), mask)
    loss2.backward()
    assert loss2.item() == pytest.approx(hand, abs=1e-7) and bool(z2.grad.isfinite().all())


def test_threshold_decisions_is_strict_and_per_class() -> None:
    p = torch.tensor([[0.5, 0.6], [0.7, 0.55]])
    assert threshold_decisions(p).tolist() == [[False, True], [True, True]]
    assert threshold_decisions(p, torch.tensor([0.5, 0.6])).tolist() == [[False, False], [True, False]]


@pytest.mark.parametrize(
    "call",
    [
        lambda: macro_auprc(torch.rand(4, 2), torch.ones(4, 3)),  # shapes differ
        lambda: micro_auprc(torch.rand(4), torch.ones(4)),  # not 2-D
        lambda: average_precision_per_class(torch.rand(4, 2), torch.full((4, 2), 2)),  # labels not 0/1
        lambda: micro_auprc(torch.rand(4, 2), torch.ones(4, 2), torch.zeros(4, 2, dtype=torch.bool)),  # nothing known
        lambda: micro_auprc(torch.rand(4, 2), torch.ones(4, 2), torch.ones(4, 2)),  # mask not bool
        lambda: micro_auprc(torch.full((4, 2), torch.nan), torch.ones(4, 2)),  # NaN score at a known pair
        lambda: macro_auprc(torch.rand(4, 2), torch.zeros(4, 2)),  # no positive anywhere
        lambda: micro_auprc(torch.rand(4, 2), torch.zeros(4, 2)),
        lambda: max_f1(torch.rand(4, 2), torch.zeros(4, 2)),
        lambda: max_f1(torch.rand(4, 2), torch.ones(4, 2), average="samples"),
        lambda: max_f1(torch.rand(4, 2), torch.ones(4, 2), thresholds=[]),
        lambda: weighted_f1(torch.ones(4, 2), torch.zeros(4, 2)),
        lambda: weighted_f1(torch.full((4, 2), 0.7), torch.ones(4, 2)),  # decisions not 0/1
        lambda: average_weighted_f1(torch.ones(4, 2), torch.ones(3, 2)),
        lambda: masked_bce(torch.rand(4, 2), torch.ones(4, 3)),
        lambda: masked_bce(torch.rand(4, 2), torch.full((4, 2), 1.5)),  # target outside [0, 1]
        lambda: masked_bce(torch.full((4, 2), 2.0), torch.ones(4, 2), from_logits=False),  # not a probability
        lambda: masked_bce(torch.rand(4, 2), torch.ones(4, 2), torch.zeros(4, 2, dtype=torch.bool)),
        lambda: threshold_decisions(torch.rand(4, 2), torch.tensor([0.5, 0.5, 0.5])),
    ],
)
def test_errors_raise_value_error(call) -> None:
    with pytest.raises(ValueError) as err:
        call()
    assert "\n" not in str(err.value)
