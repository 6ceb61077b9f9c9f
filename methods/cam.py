"""Class-activation maps on a conv block of the classifier: GradCAM, GradCAM++, Guided GradCAM.

Maps are computed on the block's grid and brought to the domain's grid by ``mel_to_linear``:

* ``filterbank`` (default): upsampled (``interpolate``) to the classifier's (time, mel) input grid
  and, in the ``stft2mel`` domain, spread onto linear-frequency bins through the mel filterbank
  (:meth:`Frontend.mel_to_linear`), so a map lines up with the frequencies the classifier saw.
* ``stretch``: interpolated (``interpolate``) straight from the block's grid to the domain's
  (time, frequency) grid, as the SpeechBrain recipe does (``gradient_based.py``, ``gradcam``:
  ``LayerAttribution.interpolate(attr, X.shape[-2:])``) and Captum's ``GuidedGradCam``: the block's
  F' mel-resolution bands are stretched evenly over the F linear-frequency bins (513 at n_fft 1024),
  band i over bins i F / F' to (i + 1) F / F', evenly in Hz rather than where its mel filters lie.
  With ``interpolate: nearest`` and ``nonneg: abs`` it is the recipe's GradCAM.

In the ``mel`` domain the two are the same map, bit for bit: the domain's grid is the mel grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from captum import attr
from pydantic import Field

from audiobench.contracts.registry import METHODS
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams
from audiobench.methods.blocks import layer_index
from audiobench.models.modules import as_grid, checked_output, is_module_path


class CamParams(ExplainerParams):
    added_fields: ClassVar[frozenset[str]] = frozenset({"mel_to_linear"})

    nonneg: Literal["abs", "relu", "none"] = "relu"
    layer: str | int = Field("last", description="classifier block: 'last', one of the model's block names "
                             "(cnn14: 'conv_block3'), a 1-based index (negative from the deepest), or a dotted module "
                             "path whose output is a feature map (conv_block3.conv2)")
    interpolate: Literal["bilinear", "nearest"] = Field("bilinear", description="upsampling to the input grid")
    mel_to_linear: Literal["filterbank", "stretch"] = Field(
        "filterbank", description="how a mel-resolution map reaches the stft2mel grid: filterbank (upsample to "
        "(T, n_mels), then spread by the mel filterbank's transpose) or stretch (interpolate straight to (T, "
        "n_freq): the SpeechBrain recipe's gradient_based.py and Captum GuidedGradCam); the same in the mel domain"
    )


class _Cam(Explainer):
    Params = CamParams

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs of this row for a classifier of ``depth`` blocks named ``names``:
        ``layer`` must name one."""
        try:
            layer_index(self.params.layer, depth, model, names)
        except AudiobenchError as exc:
            return [("layer", str(exc))]
        return []

    def block(self, ctx: ExplainContext) -> torch.nn.Module:
        """The block ``layer`` names (the model contract's ``block``); :class:`AudiobenchError`
        (one line) when it names none."""
        return ctx.classifier.block(self.params.layer)

    def cam(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The class activation map on the block's grid, [B, 1, T', F']."""
        raise NotImplementedError

    def to_domain_grid(self, cam: torch.Tensor, x: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The map on the block's grid [B, 1, T', F'] -> the domain's grid [B, 1, T, F] (``x``'s).

        ``mel_to_linear: filterbank``: resized (``interpolate``) to the mel grid (T, n_mels) and spread onto
        the domain's (CNN14 blocks are mel-resolution); ``stretch``: resized straight to (T, F), the
        recipe's ``LayerAttribution.interpolate(attr, X.shape[-2:])``. A block already on the domain's
        grid (a model that reads it, e.g. ``band_energy``) is taken as it is."""
        if cam.dim() == 3:  # a 1-D block module's output [B, C, T'] (e.g. Conv1d): its map [B, 1, T'] has no frequency axis
            cam = cam.unsqueeze(-1)
        if cam.dim() != 4:
            raise AudiobenchError(f"{self.name}: layer {self.params.layer!r} gives maps of shape {tuple(cam.shape)}, not "
                                  "[B, 1, T', F'] or [B, 1, T']: name a block or a module whose output is a feature map")
        if cam.shape[-2:] == x.shape[-2:]:
            return cam
        if x.shape[-1] > 1:  # a block without a frequency axis: the upsampled map is constant over it
            self.note_flat_blocks([cam], "maps")
        mode = self.params.interpolate
        size = (x.shape[2], x.shape[3] if self.params.mel_to_linear == "stretch" else ctx.frontend.params.n_mels)
        up = torch.nn.functional.interpolate(
            cam, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {})
        )
        return up if self.params.mel_to_linear == "stretch" else ctx.domain.from_mel_grid(ctx.frontend, up)

    def checked_cam(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """:meth:`cam`, noted in the run (the table's caption) when it is zero on every row of the batch: the
        score's gradient does not reach the layer (AST's last layer: its patch tokens never reach the head)."""
        cam = self.cam(x, target, ctx)
        if not bool(cam.ne(0).any()):
            self.note(f"its maps were zero on every row of a batch: the score's gradient does not reach layer "
                      f"{self.params.layer!r} (or its output is zero there); choose another layer")
        return cam

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The map made non-negative on the block's grid (``nonneg``: relu, as the papers, or abs), then upsampled."""
        cam = self.checked_cam(x, target, ctx)
        cam = cam.abs() if self.params.nonneg == "abs" else cam.clamp_min(0)
        return self.to_domain_grid(cam, x, ctx)


@METHODS.register("gradcam")
class GradCAM(_Cam):
    """Gradient-weighted class activation map of a conv block (Selvaraju et al., 2017)."""

    display_name = "GradCAM"

    def cam(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        layer = self.block(ctx)
        with checked_output(layer, self.params.layer):  # a module path's output: a feature map or one line
            return attr.LayerGradCam(ctx.model, layer).attribute(x, target=target, relu_attributions=False)


def gradcam_pp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM++ channel weights (Chattopadhay et al., 2018, eq. 19 with the exponential score).

    alpha_ij = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab) g_ij^3);  w_k = sum_ij alpha_ij * relu(g_ij).
    The activation sum is over the whole channel; g^3 is taken at (i, j), as in the paper and its
    reference implementation. Shapes [B, C, H, W] -> [B, C, 1, 1].
    """
    g2, g3 = grads.pow(2), grads.pow(3)
    denom = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    return (alpha * grads.clamp_min(0)).sum(dim=(2, 3), keepdim=True)


@METHODS.register("gradcam_pp")
class GradCAMPlusPlus(_Cam):
    """GradCAM++: higher-order gradient weighting of a conv block's activations (Chattopadhay et al., 2018)."""

    display_name = "GradCAM++"

    def cam(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        layer = self.block(ctx)
        store: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
        try:
            with torch.enable_grad():
                logits = ctx.model(x.detach().requires_grad_(True))
                score = logits.gather(1, target.view(-1, 1)).sum()
                named = layer if is_module_path(self.params.layer) else None  # a path's output is checked, a block's trusted
                as_grid(store["a"], str(self.params.layer), named)  # a feature map, or a one-line error
                grads = torch.autograd.grad(score, store["a"])[0]
        finally:
            handle.remove()
        acts, grads = as_grid(store["a"].detach(), str(self.params.layer)), as_grid(grads, str(self.params.layer))
        weights = gradcam_pp_weights(acts, grads)
        return (weights * acts).sum(dim=1, keepdim=True)


@METHODS.register("guided_gradcam")
class GuidedGradCAM(_Cam):
    """Guided backprop multiplied by the upsampled GradCAM map (Selvaraju et al., 2017)."""

    display_name = "Guided GradCAM"

    class Params(CamParams):
        nonneg: Literal["abs", "relu", "none"] = "abs"  # the guided-backprop factor is signed

    def cam(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return GradCAM.cam(self, x, target, ctx)

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """Guided backprop times the ReLU'd GradCAM map (as defined); ``nonneg`` acts on the signed product."""
        guided = attr.GuidedBackprop(ctx.model).attribute(x, target=target)
        return guided * self.to_domain_grid(self.checked_cam(x, target, ctx).clamp_min(0), x, ctx)
