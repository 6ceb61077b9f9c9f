"""The plugin author's contract test (audiobench.testing.check_method) on the built-ins and on broken methods."""

from __future__ import annotations

import pytest
import torch

from audiobench.contracts.explanation import Explanation
from audiobench.contracts.registry import METHODS, METRICS
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import Explainer
from audiobench.testing import check_method, tiny_classifier
from tests.paths import ROOT

# small settings so every method runs in about a second (trainable ones fit on a few tones)
SMALL = {"smoothgrad": {"n_samples": 4}, "lime": {"n_samples": 12}, "kernel_shap": {"n_samples": 12}, "integrated_gradients": {"n_steps": 4}, "shap": {"n_samples": 4},
         "lmac": {"epochs": 1, "hidden": 8, "augment_prob": 0.0},
         "l2i": {"epochs": 1, "k": 4, "nmf_iter": 5, "channels": 8, "blocks": 2, "augment_prob": 0.0},
         "piq": {"epochs": 1, "codebook_size": 16, "dim": 8, "batch_size": 4},
         "lmac_td": {"epochs": 1, "n_filters": 16, "channels": 16, "chunk": 20, "intra_layers": 1, "inter_layers": 1,
                     "heads": 2, "ffn": 16, "hidden": 4, "batch_size": 4}}
# check_method builds a softmax CNN14: methods that explain only other output kinds (lmac_zs: zero-shot
# models) are checked by their own tests (tests/harness/test_zeroshot.py), and `exact`, which reads a hand-built
# model's closed-form attribution, by tests/models/test_handbuilt.py; the attention methods, which a CNN14 has
# nothing for (no attention layers), on a tiny AST by tests/methods/test_attention.py; l2i_bd, which reads an
# l2i_bd model's own interpreter, on one by tests/models/test_l2i_bd.py
SOFTMAX_METHODS = [n for n in METHODS.builtin_names() if (METHODS.get(n).output_kinds in (None,) or
                   "softmax" in (METHODS.get(n).output_kinds or ())) and not METHODS.get(n).needs_exact_attribution
                   and not getattr(METHODS.get(n), "needs_attention", False) and n != "l2i_bd"]


def test_every_builtin_method_but_the_zero_shot_ones_is_checked() -> None:
    assert set(METHODS.builtin_names()) - set(SOFTMAX_METHODS) == {"lmac_zs", "exact", "attention_rollout",
                                                                   "attention_relevancy", "l2i_bd"}


@pytest.mark.parametrize("name", SOFTMAX_METHODS)
def test_builtin_methods_pass_the_contract(name: str) -> None:
    assert check_method(name, params=SMALL.get(name)) == [
        "registered", "params", "explain[stft2mel]", "explain[stft2mel_log1p]", "explain[mel]",
        "explain[stft2mel, waveform model]"]


def test_contract_catches_batch_dependence_and_out_of_range_masks() -> None:
    class BatchNormalised(Explainer):
        """Normalises by the batch's maximum: a row depends on its batch-mates."""

        def explain(self, x, target, ctx):
            return Explanation(x.abs() / x.abs().max())

    class Negative(Explainer):
        """Returns a mask below 0."""

        def explain(self, x, target, ctx):
            return Explanation(-torch.ones_like(x))

    METHODS.add("contract_batch_normalised", BatchNormalised)
    METHODS.add("contract_negative", Negative)
    with pytest.raises(AssertionError, match="batch differs from its rows"):
        check_method("contract_batch_normalised")
    with pytest.raises(AssertionError, match=r"outside \[0, 1\]"):
        check_method("contract_negative")


def test_contract_checks_the_stochastic_declaration() -> None:
    class Undeclared(Explainer):
        """Draws from the seed without saying so: meta-consistency's seed study would skip it."""

        signed_maps = False

        def explain(self, x, target, ctx):
            return Explanation(torch.rand(x.shape, generator=ctx.generator(x.device)))

    METHODS.add("contract_undeclared", Undeclared)
    with pytest.raises(AssertionError, match="does not declare stochastic = True"):
        check_method("contract_undeclared")
    assert {n for n in METHODS.builtin_names() if METHODS.get(n).stochastic} == {"random", "smoothgrad", "shap", "l2i", "l2i_bd", "lime", "kernel_shap"}


def test_registry_names_components_and_refuses_the_wrong_kind() -> None:
    class Named(Explainer):
        name = "other_name"

    with pytest.raises(AudiobenchError, match="declares name 'other_name' but is registered as 'contract_named'"):
        METHODS.add("contract_named", Named)
    with pytest.raises(AudiobenchError, match="expected a subclass of audiobench.methods.base.Explainer"):
        METHODS.add("contract_not_a_method", dict)
    with pytest.raises(AudiobenchError, match="expected a Metric"):
        METRICS.add("contract_not_a_metric", lambda m: m)
    assert METHODS.get("saliency").name == "saliency"  # set by the registry, declared nowhere else


def test_the_one_file_example_method_passes_the_contract_and_runs_in_a_suite(tmp_path) -> None:

    import yaml

    from audiobench.cli import main
    from audiobench.contracts.registry import load_plugin_file
    from audiobench.store.run_dir import load_run

    example = ROOT / "examples" / "time_occlusion.py"
    assert len(example.read_text().splitlines()) < 60
    load_plugin_file(example)
    assert check_method("time_occlusion", params={"window": 4})[-1] == "explain[stft2mel, waveform model]"
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "occ", "plugins": [str(example)], "domains": ["mel"], "contaminations": ["none"],
        **tiny_classifier(),  # the tiny suite's classifier, shared with the other tests
        "methods": [{"name": "time_occlusion", "window": 4}, "random"], "metrics": ["ai", "ff"],
    }))
    assert main(["run", str(suite), "-o", str(tmp_path / "run"), "-q"]) == 0
    assert set(load_run(tmp_path / "run").row) == {"Time occlusion", "Random"}
