"""L-MAC options that select the recipe's or the paper's form where the default departs from it
(docs/departures.md, "no parameter" items 1, 3, 11, 12): ``l1_reduction``, ``lr_schedule`` (and the
shared :class:`PlateauLR` hook of ``fit_epochs``), ``finetune.gate_mask``, ``finetune.guidance: squared``
and ``binarize``. Known answers on tiny tensors first, then fits on tests/methods/test_lmac.py's tiny problem."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from audiobench.kernel.fitting import PlateauLR, fit_epochs
from audiobench.methods import lmac as lmac_module
from audiobench.methods.base import ExplainContext
from audiobench.methods.lmac import LMAC, _Versions
from audiobench.methods.lmac_objective import (
    FinetuneParams,
    LmacParams,
    binary_mask,
    finetune_loss,
    guidance_term,
    masking_loss,
)
from audiobench.suite import load_suite
from tests.methods.test_lmac import FRONT, _fit_ctx, _tiny_problem, _toy_model
from tests.methods.test_lmac_finetune import _regulariser_case

BASE = {"epochs": 3, "hidden": 8, "blocks": 3, "batch_size": 8, "lr": 3e-3, "lambda_l1": 1.0}
NEW_FIELDS = {"l1_reduction", "lr_schedule", "plateau_factor", "plateau_patience", "plateau_start_epoch",
              "plateau_monitor", "head", "binarize", "reanalyse", "label_masks", "ranks"}
FRONT_BINS = (FRONT.n_mels, FRONT.n_fft // 2 + 1)  # the tiny problem's mel bands and STFT bins


# ----------------------------------------------------------------------------------------------
# identity: the defaults dump as before (cell hashes, fit keys and shipped fits keep)


def test_new_fields_leave_the_default_dumps_unchanged() -> None:
    dump = LmacParams(finetune={"lambda_g": 4}).model_dump(mode="json")
    assert not NEW_FIELDS & dump.keys() and "gate_mask" not in dump["finetune"]
    assert LmacParams.added_fields == NEW_FIELDS and FinetuneParams.added_fields == {"gate_mask"}
    set_ = LmacParams(l1_reduction="batch_sum", lr_schedule="plateau", binarize=0.5,
                      finetune={"lambda_g": 4, "gate_mask": "current"}).model_dump(mode="json")
    assert set_["l1_reduction"] == "batch_sum" and set_["lr_schedule"] == "plateau" and set_["binarize"] == 0.5
    assert set_["finetune"]["gate_mask"] == "current"


@pytest.mark.parametrize(("bad", "message"), [
    ({"l1_reduction": "sum"}, "'mean' or 'batch_sum'"),
    ({"lr_schedule": "cosine"}, "'constant' or 'plateau'"),
    ({"binarize": 1.0}, "less than 1"),
    ({"binarize": 0.0}, "greater than 0"),
    ({"lr_schedule": "plateau", "plateau_factor": 1.0}, "less than 1"),
    ({"lr_schedule": "plateau", "plateau_patience": -1}, "greater than or equal to 0"),
    ({"plateau_patience": 2}, "plateau_patience applies only with lr_schedule: plateau"),
    ({"plateau_start_epoch": 5, "plateau_monitor": "total"}, "plateau_start_epoch, plateau_monitor apply only with"),
    ({"finetune": {"lambda_g": 4, "gate_mask": "moving"}}, "'frozen' or 'current'"),
    ({"finetune": {"lambda_g": 4, "guidance": "l2"}}, "'regulariser', 'bce' or 'squared'"),
    ({"head": "conv"}, "'filterbank' or 'linear'"),
])
def test_bad_values_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LmacParams(**bad)


def test_row_labels_name_the_non_default_forms() -> None:
    assert LMAC({"binarize": 0.5}).row_label() == "L-MAC, binary 0.5"
    ft = {"lambda_g": 4, "guidance": "squared", "gate_mask": "current"}
    assert LMAC({"finetune": ft, "binarize": 0.3}).row_label() == "L-MAC, FT, λg=4, squared, current gate, binary 0.3"
    assert LMAC({"l1_reduction": "batch_sum"}).row_label() == "L-MAC"  # a training setting: the suite's label says it


# ----------------------------------------------------------------------------------------------
# (a) l1_reduction: the recipe's (xhat.abs().mean() * reg_w_l1 * ~gate).sum()


def _loss_case() -> tuple:
    torch.manual_seed(0)
    model = _toy_model(torch.randn(2, 2))
    _, x, clean = _regulariser_case()
    x = torch.cat([x, x])  # four items
    clean = torch.cat([clean, clean])
    mask = torch.tensor([[0.8, 0.5, 0.3, 0.2], [0.5, 0.9, 0.1, 0.6], [0.0, 0.4, 1.0, 0.2], [0.3, 0.3, 0.3, 0.3]])
    return model, x, clean, mask.view(4, 1, 2, 2), torch.tensor([0, 1, 1, 0])


def test_batch_sum_l1_is_the_batch_mean_times_the_batch_size() -> None:
    model, x, _, mask, y_hat = _loss_case()
    mean = masking_loss(model, x, mask, y_hat, LmacParams(lambda_l1=0.4))
    summed = masking_loss(model, x, mask, y_hat, LmacParams(lambda_l1=0.4, l1_reduction="batch_sum"))
    # the mask's 16 values sum to 6.7: mean 6.7 / 16; the recipe's sum over 4 un-gated items: 4 x that
    assert mean["l1"].item() == pytest.approx(6.7 / 16)
    assert summed["l1"].item() == pytest.approx(4 * 6.7 / 16)
    recipe = (mask.abs().mean() * 0.4 * torch.logical_not(torch.zeros(4, dtype=torch.bool))).sum()
    torch.testing.assert_close(0.4 * summed["l1"], recipe)
    torch.testing.assert_close(summed["total"] - mean["total"], torch.tensor(0.4 * 3 * 6.7 / 16))
    for k in ("in", "out"):  # the masking terms do not move
        torch.testing.assert_close(summed[k], mean[k])


@pytest.mark.parametrize(("guidance", "weighed"), [("bce", 2), ("squared", 2), ("regulariser", 4)])
def test_batch_sum_l1_in_finetuning_counts_the_items_the_l1_applies_to(guidance: str, weighed: int) -> None:
    model, x, clean, mask, y_hat = _loss_case()
    gate = torch.tensor([True, False, True, False])  # items 1 and 3 un-gated
    p = LmacParams(lambda_l1=0.4, l1_reduction="batch_sum", finetune={"lambda_g": 2.0, "guidance": guidance})
    terms = finetune_loss(model, x, mask, y_hat, clean, gate, p)
    # the recipe: the mean over the whole batch (gated items too) x the number of items the L1 weighs
    assert terms["l1"].item() == pytest.approx(weighed * 6.7 / 16)
    per_item = LmacParams(lambda_l1=0.4, finetune={"lambda_g": 2.0, "guidance": guidance})
    mean = finetune_loss(model, x, mask, y_hat, clean, gate, per_item)
    # mean reduction: the un-gated items' own means (2.1/4 and 1.2/4) over the batch of 4, or every item's
    expected = (2.1 / 4 + 1.2 / 4) / 4 if weighed == 2 else 6.7 / 16
    assert mean["l1"].item() == pytest.approx(expected)
    torch.testing.assert_close(terms["total"] - mean["total"], 0.4 * (terms["l1"] - mean["l1"]))
    torch.testing.assert_close(terms["guidance"], mean["guidance"])


# ----------------------------------------------------------------------------------------------
# (b) the recipe's ReduceLROnPlateau as fit_epochs' schedule hook


def _stub(values: list[float], key: str = "valid_loss", lr: float = 1.0):
    """A one-weight module, its optimizer, and a validation that reports ``values`` in turn."""
    module = nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    epoch = {"n": 0}

    def train_epoch() -> dict[str, float]:
        epoch["n"] += 1
        return {"train_loss": 0.0}

    return module, opt, train_epoch, lambda: {key: values[epoch["n"] - 1]}


def _lrs(values: list[float], mode: str = "min", **kw) -> list[float]:
    module, opt, train_epoch, validate = _stub(values)
    schedule = PlateauLR([opt], "valid_loss", mode, **kw)
    info = fit_epochs([module], len(values), train_epoch, validate, "valid_loss", progress=False, schedule=schedule)
    return [h["lr"] for h in info["history"]]


def test_plateau_defaults_are_the_recipes() -> None:
    p = LmacParams(lr_schedule="plateau")
    assert (p.lr, p.weight_decay, p.batch_size) == (2e-4, 2e-6, 16)  # opt_class, batch_size
    assert (p.plateau_factor, p.plateau_patience, p.plateau_start_epoch) == (0.5, 3, 100)  # lr_annealing
    assert p.plateau_monitor == "fid_in"  # interpreter_brain.py: lr_annealing(..., -current_fid)
    s = PlateauLR([torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)], "k")
    assert (s.factor, s.patience, s.start_epoch, s.lr_min) == (0.5, 3, 100, 1e-8)


def test_plateau_halves_exactly_where_the_recipes_rule_says() -> None:
    # epochs 1-100: never (dont_halve_until_epoch 100; the anchor follows the loss, here 1.0);
    # 101: 0.9 improves (anchor 0.9); 102-104 worse: patience 1, 2, 3; 105 worse: halve (applies from 106);
    # 106-108 worse: patience again; 109: halve (from 110); 110: 0.5 improves; 111-112 worse: no cut yet
    values = [1.0] * 100 + [0.9] + [1.0] * 8 + [0.5, 0.7, 0.7]
    lrs = _lrs(values)
    expected = [1.0] * 105 + [0.5] * 4 + [0.25] * 3
    assert lrs == expected
    # a fixed validation loss is never worse than its anchor: the recipe's rule never halves it
    assert set(_lrs([2.0] * 120)) == {1.0}
    # before the start epoch a worse value changes nothing; with start 0 the fourth worse epoch halves
    assert _lrs([1, 2, 3, 4, 5, 6], start_epoch=0) == [1.0] * 5 + [0.5]
    # patience 0: every worse epoch halves, from the epoch after it
    assert _lrs([1, 2, 3, 4, 5, 6], start_epoch=0, patience=0) == [1.0, 1.0, 0.5, 0.25, 0.125, 0.0625]


def test_plateau_on_a_maximised_value_nan_and_the_floor() -> None:
    # mode max (the recipe watches minus the input fidelity): a falling fidelity is a worsening one
    assert _lrs([0.9, 0.8, 0.8, 0.95], mode="max", start_epoch=0, patience=1) == [1.0, 1.0, 1.0, 0.5]
    assert _lrs([0.5, 0.6, 0.7, 0.8], mode="max", start_epoch=0, patience=0) == [1.0] * 4
    # NaN is neither better nor worse than the anchor: SpeechBrain's else branch cuts at once
    assert _lrs([1.0, math.nan, 1.0], start_epoch=0, patience=3) == [1.0, 1.0, 0.5]
    # the lr never falls below lr_min
    assert _lrs([1, 2, 3, 4], start_epoch=0, patience=0, lr_min=0.3) == [1.0, 1.0, 0.5, 0.3]


def test_the_schedule_sets_every_group_and_without_one_records_have_no_lr() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    s = PlateauLR([opt], "v", start_epoch=0, patience=0)
    s.step(1, {"v": 1.0})
    assert s.step(2, {"v": 2.0}) == 0.5 and [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    with pytest.raises(KeyError, match="lr schedule key 'v'"):
        s.step(3, {"w": 1.0})
    for bad in ({"factor": 1.0}, {"factor": 0.0}, {"patience": -1}, {"start_epoch": -1}):
        with pytest.raises(ValueError, match="PlateauLR"):
            PlateauLR([opt], "v", **bad)
    module, _, train_epoch, validate = _stub([1.0, 2.0])
    info = fit_epochs([module], 2, train_epoch, validate, "valid_loss", progress=False)
    assert all("lr" not in h for h in info["history"])  # the constant default: records as before


def test_validate_reports_a_plateau_that_cannot_act(write_suite) -> None:
    from audiobench.kernel.errors import AudiobenchError

    assert LMAC({"lr_schedule": "plateau", "epochs": 105}).check_params() == []
    assert LMAC({"lr_schedule": "plateau", "epochs": 3, "plateau_start_epoch": 0, "plateau_patience": 1}).check_params() == []
    ((param, problem),) = LMAC({"lr_schedule": "plateau", "epochs": 104}).check_params()
    assert param == "lr_schedule" and "within epochs 104: the first cut follows epoch 104" in problem
    suite = write_suite({"methods": [{"name": "lmac", "lr_schedule": "plateau", "epochs": 10}]})
    with pytest.raises(AudiobenchError, match=r"methods\.0\.lr_schedule: plateau cannot lower the lr within epochs 10"):
        load_suite(suite)


# ----------------------------------------------------------------------------------------------
# (c) fine-tuning: the recipe's squared guidance and its moving gate


def test_squared_guidance_is_the_recipes_unnormalised_mean_square() -> None:
    mask, x, clean = _regulariser_case()
    ft = FinetuneParams(lambda_g=4, guidance="squared")
    # sample 0: M*X_in - X = [0, -1, 0, -3] -> (0 + 1 + 0 + 9) / 4; sample 1: M*X_in = X -> 0
    torch.testing.assert_close(guidance_term(mask, x, clean, ft), torch.tensor([2.5, 0.0]))
    # unnormalised: 10x the level is 100x the term (the paper's form, normalised, does not move)
    torch.testing.assert_close(guidance_term(mask, 10 * x, 10 * clean, ft), torch.tensor([250.0, 0.0]))
    # train_lmac.py: rec_loss = (temp * crosscor_mask).mean() * g_w, temp the per-clip mean square
    gate = torch.tensor([1.0, 0.0])
    recipe = ((mask * x - clean).pow(2).mean((-1, -2)).squeeze(1) * gate).mean() * 4
    torch.testing.assert_close(4 * (gate * guidance_term(mask, x, clean, ft)).mean(), recipe)


def test_squared_finetune_loss_known_answer() -> None:
    torch.manual_seed(0)
    model = _toy_model(torch.randn(2, 2))
    _, x, clean = _regulariser_case()
    mask = torch.tensor([[[[0.8, 0.5], [0.3, 0.2]]], [[[0.5, 0.9], [0.1, 0.6]]]])
    y_hat, gate = torch.tensor([0, 1]), torch.tensor([True, False])
    base = masking_loss(model, x, mask, y_hat, LmacParams(lambda_l1=0.0))["total"]
    terms = finetune_loss(model, x, mask, y_hat, clean, gate, LmacParams(lambda_l1=0.4, finetune={
        "lambda_g": 16.0, "guidance": "squared"}))
    # sample 0 (gated): M*X - X = [-0.2, -1, 0, -2.4] -> 6.8 / 4, over the batch of 2; L1 on sample 1 only
    torch.testing.assert_close(terms["guidance"], torch.tensor(6.8 / 4 / 2))
    torch.testing.assert_close(terms["l1"], torch.tensor(2.1 / 4 / 2))
    torch.testing.assert_close(terms["total"], base + 16.0 * 6.8 / 8 + 0.4 * 2.1 / 8)


@pytest.fixture(scope="module")
def problem(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("lmac_departures")
    clips, model = _tiny_problem()
    base = LMAC(BASE)
    info = base.fit(_fit_ctx(model, clips, tmp))
    return clips, model, tmp, base, info


def _gated(method: LMAC, decoder, frozen, problem, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The gate over the clean training clips, as one fine-tuning batch computes it (the ``gate``
    argument ``_batch_terms`` passes to :func:`finetune_loss`)."""
    clips, model, tmp, base, _ = problem
    method.block_idx = base.block_idx
    idx = torch.arange(len(clips))
    seen: list[torch.Tensor] = []
    original = lmac_module.finetune_loss
    monkeypatch.setattr(lmac_module, "finetune_loss", lambda *a: seen.append(a[5]) or original(*a))
    with torch.no_grad():
        method._batch_terms(_fit_ctx(model, clips, tmp), decoder, frozen, _Versions([clips]), idx, torch.zeros_like(idx))
    return seen[0].tolist()


@pytest.mark.slow
def test_the_current_gate_follows_the_decoder_being_trained_and_the_frozen_one_does_not(
        problem, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, _, base, _ = problem
    stage1 = base.decoder
    moved = copy.deepcopy(stage1)
    with torch.no_grad():  # a step that changes the decoder: its mask becomes one constant
        last = moved.head[-1]
        last.weight.zero_()
        last.bias.fill_(1.0)
    ft = {"lambda_g": 4, "cct": 0.999}  # only a mask that keeps the clean clip's shape passes
    frozen, current = LMAC({**BASE, "finetune": ft}), LMAC({**BASE, "finetune": {**ft, "gate_mask": "current"}})
    before = _gated(frozen, stage1, stage1, problem, monkeypatch)
    assert sum(before) < len(before)  # the trained stage-1 mask is not constant: not every clip passes
    assert _gated(current, stage1, stage1, problem, monkeypatch) == before  # same decoder: the same gated set
    # a constant mask on a clean clip gives cos(X, c X) = 1: the current gate passes everything,
    # the frozen gate still reads the stage-1 mask and keeps its set
    assert all(_gated(current, moved, stage1, problem, monkeypatch))
    assert _gated(frozen, moved, stage1, problem, monkeypatch) == before


@pytest.mark.slow
def test_a_current_gate_fit_is_its_own_fit_and_records_its_gate(problem) -> None:
    clips, model, tmp, _, base_info = problem
    ctx = _fit_ctx(model, clips, tmp)
    ft = {"lambda_g": 4, "epochs": 1, "guidance": "squared"}
    a = LMAC({**BASE, "finetune": ft}).fit(ctx)
    b = LMAC({**BASE, "finetune": {**ft, "gate_mask": "current"}}).fit(ctx)
    assert a["base"]["key"] == b["base"]["key"] == base_info["key"] and a["key"] != b["key"]
    assert b["gate"]["similarity"].startswith("cos(X, M*X_in), M the decoder being fine-tuned")
    assert a["gate"]["similarity"] == "cos(X, M1*X_in)"


# ----------------------------------------------------------------------------------------------
# (d) binarize: the paper's binary mask, interpretation only


def test_binary_mask_known_answer() -> None:
    m = torch.tensor([0.0, 0.29, 0.3, 0.31, 1.0]).view(1, 1, 1, 5)
    assert binary_mask(m, 0.3).flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # >= threshold
    assert binary_mask(m.double(), 0.3).dtype == torch.float64
    with pytest.raises(ValueError, match=r"binarize threshold must lie in \(0, 1\), not 1.5"):
        binary_mask(m, 1.5)


@pytest.mark.slow
def test_binarize_explains_with_the_thresholded_mask_and_shares_the_fit(problem) -> None:
    clips, model, tmp, base, info = problem
    binary = LMAC({**BASE, "binarize": 0.5})
    info_b = binary.fit(_fit_ctx(model, clips, tmp))
    assert info_b["cached"] is True and info_b["key"] == info["key"]  # training is unchanged: the same fit
    x = model.domain.represent(model.frontend, clips.waveforms[:12]).x
    target = model(x).argmax(-1)
    continuous = base.explain(x, target, ExplainContext(model)).mask
    mask = binary.explain(x, target, ExplainContext(model)).mask
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask, (continuous >= 0.5).to(continuous.dtype))
    assert 0 < mask.mean() < 1  # both values occur: the threshold cuts this mask somewhere
    assert not torch.equal(mask, continuous)


# ----------------------------------------------------------------------------------------------
# the options in a fit: what each logs


def _log(tmp) -> list[dict]:
    """The epoch records of the last stage-1 fit (the fit's ``train.jsonl``)."""
    return [json.loads(line) for line in (tmp / "logs" / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("monitor", "key", "script"), [
    ("fid_in", "valid_fid_in", [1.0, 0.5, 0.5, 1.0, 0.25]),  # the recipe's: minus the fidelity, a fall is worse
    ("total", "valid_total", [1.0, 2.0, 2.0, 1.0, 3.0]),  # the selection key
])
@pytest.mark.slow
def test_a_plateau_fit_trains_each_epoch_at_the_lr_the_rule_gives(
        problem, monkeypatch: pytest.MonkeyPatch, monitor: str, key: str, script: list[float]) -> None:
    """A real fit whose watched validation value is scripted: the lr the optimizer steps with, and the
    logged one, follow the recipe's rule (start 0, patience 0: every worse epoch halves the next)."""
    clips, model, tmp, _, base_info = problem
    params = {**BASE, "epochs": 5, "lr_schedule": "plateau", "plateau_start_epoch": 0, "plateau_patience": 0,
              "plateau_monitor": monitor}
    method = LMAC(params)
    validate, epoch = method._validate, iter(script)
    monkeypatch.setattr(method, "_validate", lambda *a: {**validate(*a), key: next(epoch)})
    stepped: list[float] = []
    adam_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: stepped.append(self.param_groups[0]["lr"])
                        or adam_step(self, *a, **k))
    info = method.fit(_fit_ctx(model, clips, tmp))
    assert info["key"] != base_info["key"]
    lr = BASE["lr"]
    # epoch 1 sets the anchor; 2 is worse (cut), 3 is worse than the anchor (cut), 4 ties it, 5 is worse
    expected = [lr, lr, lr / 2, lr / 4, lr / 4]
    history = _log(tmp)
    assert [h["lr"] for h in history] == expected
    batches = math.ceil(len(clips) / BASE["batch_size"])
    assert stepped == [e for e in expected for _ in range(batches)]  # what the optimizer actually used
    assert all(0 <= h["train_fid_in"] <= 1 and "valid_fid_in" in h for h in history)  # logged under plateau


@pytest.mark.slow
def test_batch_sum_validates_in_training_sized_batches(problem, monkeypatch: pytest.MonkeyPatch) -> None:
    clips, model, tmp, base, _ = problem
    sizes: list[int] = []
    for reduction, expected in (("mean", [16]), ("batch_sum", [8, 8])):
        method = LMAC({**BASE, "l1_reduction": reduction})
        method.block_idx = base.block_idx
        original = method._batch_terms
        monkeypatch.setattr(method, "_batch_terms", lambda *a, orig=original: sizes.append(len(a[4])) or orig(*a))
        sizes.clear()
        terms = method._validate(_fit_ctx(model, clips, tmp), base.decoder, None, [clips.subset(slice(0, 16))])
        assert sizes == expected and "valid_l1" in terms


# ----------------------------------------------------------------------------------------------
# head: linear, a learned decoder output on the STFT grid (the recipe's CNN14PSI_stft ends on 513 bins)


@pytest.mark.slow
def test_the_linear_head_starts_as_the_filterbank_spreading_and_learns(problem) -> None:
    clips, model, tmp, base, info = problem
    assert not any(k.startswith("grid.") for k in base.decoder.state_dict())  # the default: shipped weights load
    linear = LMAC({**BASE, "head": "linear"})
    decoder = linear._build(model)
    n_mels, n_freq = FRONT_BINS
    eye = torch.eye(n_mels)
    assert decoder.grid.weight.shape == (n_freq, n_mels)
    torch.testing.assert_close(decoder.grid.weight.T, model.frontend.mel_to_linear(eye))  # the spreading itself
    assert decoder.grid.bias.abs().max() == 0
    # every other weight equal, the two decoders give the same mask at the start
    decoder.load_state_dict(base.decoder.state_dict(), strict=False)
    decoder.eval()
    x = model.domain.represent(model.frontend, clips.waveforms[:6]).x
    with torch.no_grad():
        torch.testing.assert_close(linear._mask(decoder, model, x), base._mask(base.decoder, model, x))
    # on the mel domain the spreading is the identity
    from audiobench.contracts.domains import Mel
    from audiobench.methods.base import DomainModel

    mel = LMAC({**BASE, "head": "linear"})._build(DomainModel(model.classifier, Mel(), model.frontend))
    torch.testing.assert_close(mel.grid.weight, eye)
    # trained, it is its own fit and the head moves: linear bins under one mel band may now differ
    fitted = linear.fit(_fit_ctx(model, clips, tmp))
    assert fitted["key"] != info["key"] and fitted["cached"] is False
    moved = (linear.decoder.grid.weight.T - model.frontend.mel_to_linear(eye)).abs().max()
    assert moved > 1e-4, moved
