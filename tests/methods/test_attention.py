"""Attention rollout and gradient-weighted attention relevancy: closed forms on hand-set attention, the map's
place on the grid, the explainer contract on a tiny AST, and validate's refusal for a model without attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiobench.cli import main
from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import MODELS
from audiobench.methods.attention import AttentionRelevancy, AttentionRollout, relevancy, rollout, token_row
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.testing import check_method

pytest.importorskip("transformers")
TINY = {"hidden": 16, "layers": 2, "heads": 2, "max_length": 64, "patch_size": 8, "frequency_stride": 8, "time_stride": 8}


def _ast(layers: int = 2):
    torch.manual_seed(0)
    return MODELS.get("hf_audio")({**TINY, "layers": layers}).build(["c0", "c1", "c2"], 32, 16000).eval()


def test_rollout_of_identity_attention_is_the_identity_and_the_cls_row_has_no_patch_mass() -> None:
    eye = torch.eye(5).expand(1, 3, 5, 5)
    r = rollout([eye, eye, eye])
    assert torch.equal(r, torch.eye(5)[None])
    assert torch.equal(token_row(r, 1), torch.zeros(1, 4))


def test_rollout_follows_the_patch_the_cls_token_attends_to() -> None:
    """Layer 1: CLS attends only to token 2, the others to themselves; layer 2: uniform over 4 tokens.
    Â1 = (A1 + I)/2 has CLS row [.5, 0, .5, 0]; R = Â2 Â1 with Â2 = (U + I)/2 gives the CLS row
    0.5 colsum(Â1)/4 + 0.5 Â1[0] = [0.3125, 0.125, 0.4375, 0.125]."""
    a1 = torch.eye(4)
    a1[0] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    u = torch.full((4, 4), 0.25)
    r = rollout([a1[None, None], u[None, None]])
    assert torch.allclose(r[0, 0], torch.tensor([0.3125, 0.125, 0.4375, 0.125]))
    assert torch.allclose(r.sum(-1), torch.ones(1, 4))
    assert torch.allclose(token_row(rollout([a1[None, None]]), 1), torch.tensor([[0.0, 0.5, 0.0]]))
    # heads fused by max / min: head 1 CLS -> token 2, head 2 CLS -> token 3
    a2 = torch.eye(4)
    a2[0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    heads = torch.stack([a1, a2])[None]
    assert torch.allclose(token_row(rollout([heads], "mean"), 1), torch.tensor([[0.0, 0.25, 0.25]]))
    assert torch.allclose(token_row(rollout([heads], "max"), 1), torch.tensor([[0.0, 1 / 3, 1 / 3]]))
    assert torch.allclose(token_row(rollout([heads], "min"), 1), torch.tensor([[0.0, 0.0, 0.0]]))


def test_relevancy_of_one_layer_is_identity_plus_the_head_mean_of_positive_grad_times_attention() -> None:
    a = torch.zeros(1, 2, 3, 3)
    a[0, 0] = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a[0, 1] = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    g = torch.zeros(1, 2, 3, 3)
    g[0, 0] = 1.0
    g[0, 1, 0] = torch.tensor([1.0, -1.0, 2.0])
    # mean_h((g*a)^+): row 0 ([.5, .5, 0] + [.2, 0, 1.0]) / 2, row 1 [0, .5, 0], row 2 [0, 0, .5]
    want = torch.eye(3) + torch.tensor([[0.35, 0.25, 0.5], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    assert torch.allclose(relevancy([a], [g])[0], want)
    # a second layer: R <- R + Ā2 R, with Ā2 = Ā1 (the same attention and gradient)
    cam = want - torch.eye(3)
    assert torch.allclose(relevancy([a, a], [g, g])[0], want + cam @ want)
    assert torch.allclose(relevancy([a], [torch.zeros_like(g)])[0], torch.eye(3))  # no gradient: no relevance


def test_relevancy_on_an_ast_is_chefers_rule_on_its_own_attention_and_gradient() -> None:
    clf = _ast(layers=1)
    inp = torch.randn(2, 1, 64, 32)
    target = torch.tensor([1, 2])
    scores, maps = clf.attention_maps(inp)
    (grad,) = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), maps)
    cam = (grad * maps[0]).clamp_min(0).mean(dim=1)
    want = (torch.eye(maps[0].shape[-1]) + cam)[:, 0, 2:]  # CLS row over the patches (AST: 2 special tokens)
    fe = Frontend(FrontendParams(n_mels=32))
    got = AttentionRelevancy().token_values(inp, target, ExplainContext(DomainModel(clf, Mel(), fe)))
    assert torch.allclose(got, want.detach(), atol=1e-6)


def test_the_map_peaks_on_the_patch_the_cls_token_attends_to() -> None:
    """Hand-set attention on a real AST's patch grid (8 time x 4 frequency patches of 8 x 8 bins on 64 frames x
    32 bands): CLS attends to the patch (t=5, f=2) only; the rollout mask peaks inside that patch's bins."""
    clf = _ast()
    special, t_n, f_n = clf.token_grid(64)
    n = special + t_n * f_n
    a = torch.eye(n)
    a[0] = 0.0
    a[0, special + 2 * t_n + 5] = 1.0  # AST's token order: frequency-major
    clf.attention_maps = lambda inp: (torch.zeros(len(inp), 3), [a.expand(len(inp), 2, n, n)])
    model = DomainModel(clf, Mel(), Frontend(FrontendParams(n_mels=32)))
    x = torch.rand(2, 1, 64, 32)
    mask = AttentionRollout().explain(x, torch.tensor([0, 1]), ExplainContext(model)).mask
    flat = mask[0, 0].flatten().argmax().item()
    t, f = divmod(flat, 32)
    assert 40 <= t < 48 and 16 <= f < 24


@pytest.mark.parametrize("name", ["attention_rollout", "attention_relevancy"])
def test_attention_methods_pass_the_contract_on_a_tiny_ast(name: str) -> None:
    assert check_method(name, classifier=_ast())[-1] == "explain[mel]"


def test_validate_refuses_attention_methods_for_a_model_without_attention(write_suite, capsys) -> None:
    path: Path = write_suite({"methods": ["saliency", "attention_rollout"]})
    assert main(["validate", str(path)]) == 1
    assert "method 'attention_rollout' reads attention, but model 'cnn14' has no attention layers" in capsys.readouterr().err
