"""Make a compact model fast for inference, exactly: BatchNorm folded, each factorized layer in
the fastest of its exact forms, weights in ``channels_last``.

A factorized layer computes one linear map; its factors can be multiplied back together
partly or fully without approximation (float rounding aside). Which form is fastest is not what
the MACs say: CPU convolution kernels vectorise over output channels (16 floats per AVX-512
register), so a k x k convolution to 4 channels costs about what one to 16 channels costs, and
two small convolutions can be slower than the dense one they replace. With ``measure_batch`` the
forms are timed on the layer's real input and the fastest kept; without it a form is kept only
when it has fewer MACs than the dense layer. Training never sees these modules.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import ChannelFactorized, FactorizedLayer, SpatialFactorized, TiledFactorized, Tucker2Factorized
from .fold import fold_batchnorm

FACTORIZED = "factorized"
DENSE = "dense"


@dataclass(frozen=True)
class LayerChoice:
    """The form kept for one factorized layer, its MACs per sample and measured ms (if timed)."""

    name: str
    form: str
    macs: dict[str, int]
    ms: dict[str, float] | None


@dataclass(frozen=True)
class Prepared:
    """What ``prepare_for_inference`` returns: the module, the folded ``(conv, batchnorm)`` names
    and the form kept per factorized layer."""

    module: nn.Module
    folded: list[tuple[str, str]]
    choices: list[LayerChoice]

    def forms(self) -> dict[str, str]:
        return {c.name: c.form for c in self.choices}


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Conv2d, **geometry) -> nn.Conv2d:
    g = {"stride": like.stride, "padding": like.padding, "dilation": like.dilation, **geometry}
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=bias is not None, **g)
    conv.weight.data = weight.detach().clone().contiguous()
    if bias is not None:
        conv.bias.data = bias.detach().clone()
    return conv


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    lin.weight.data = weight.detach().clone().contiguous()
    if bias is not None:
        lin.bias.data = bias.detach().clone()
    return lin


def exact_forms(layer: FactorizedLayer) -> dict[str, nn.Module]:
    """Every exact form of ``layer``: itself, the dense layer it computes and, for Tucker-2, the
    two forms with one 1x1 factor merged into the core."""
    with torch.no_grad():
        weight, bias = layer.to_dense_weight(), layer.bias
        forms: dict[str, nn.Module] = {FACTORIZED: layer}
        if isinstance(layer, Tucker2Factorized):
            core, u_in, u_out = layer.core.weight, layer.reduce.weight[:, :, 0, 0], layer.expand.weight[:, :, 0, 0]
            forms["in+core"] = nn.Sequential(
                _conv(torch.einsum("oikl,ic->ockl", core, u_in), None, layer.core), layer.expand)
            forms["core+out"] = nn.Sequential(
                layer.reduce, _conv(torch.einsum("no,oikl->nikl", u_out, core), bias, layer.core))
            forms[DENSE] = _conv(weight, bias, layer.core)
        elif isinstance(layer, SpatialFactorized):
            forms[DENSE] = _conv(weight, bias, layer.vertical, **layer.dense_geometry())
        elif isinstance(layer, (ChannelFactorized, TiledFactorized)):
            linear = isinstance(layer.reduce, nn.Linear) or getattr(layer, "linear", False)
            forms[DENSE] = (_linear(weight, bias) if linear else
                            _conv(weight, bias, layer.reduce))
        else:
            forms[DENSE] = None  # an unknown scheme stays as it is
    return {k: v for k, v in forms.items() if v is not None}


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of ``module`` on one sample of ``x`` (convolutions and linears)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        per_out = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.in_features
        total += per_out * out[:1].numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            module(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


def _time_ms(forms: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms of each form on ``x``, the forms timed in turn in one loop (after a warm-up)."""
    samples: dict[str, list[float]] = {k: [] for k in forms}
    with torch.inference_mode():
        for m in forms.values():
            m(x)
        for _ in range(repeats):
            for k, m in forms.items():
                start = time.perf_counter()
                m(x)
                samples[k].append(time.perf_counter() - start)
    return {k: 1e3 * statistics.median(v) for k, v in samples.items()}


def _inputs_of(model: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each factorized layer receives on ``example``."""
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda m, a, name=name: seen.setdefault(name, a[0].detach()))
               for name, m in model.named_modules() if isinstance(m, FactorizedLayer)]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return seen


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def prepare_for_inference(model: nn.Module, example: torch.Tensor, *, measure_batch: int | None = None,
                          repeats: int = 5, channels_last: bool = True) -> Prepared:
    """An eval-mode copy of ``model`` that computes the same outputs (float rounding aside),
    faster: BatchNorm folded (``fold_batchnorm``), each factorized layer replaced by its fastest
    exact form, 4-D weights in ``channels_last`` (eager convolutions skip their layout reorders).

    Args:
        example: an input batch (its values do not matter; its shape does).
        measure_batch: time each layer's forms on its input at this batch size and keep the
            fastest; None keeps the factorized form unless the dense one has no more MACs.
        repeats: timed rounds per layer (median) when measuring.
        channels_last: store 4-D weights (and so activations) in ``channels_last``.

    Returns:
        The prepared copy (``model`` is not touched), the folded pairs and one ``LayerChoice``
        per factorized layer.
    """
    folded, pairs = fold_batchnorm(model, example)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    inputs = _inputs_of(folded, example)
    choices = []
    for name, x in inputs.items():
        forms = exact_forms(folded.get_submodule(name))
        if channels_last:
            forms = {k: m.to(memory_format=torch.channels_last) for k, m in forms.items()}
        macs = {k: _macs(m, x) for k, m in forms.items()}
        ms = None
        if measure_batch is not None:
            reps = (measure_batch + x.shape[0] - 1) // x.shape[0]
            xb = x.repeat(reps, *([1] * (x.dim() - 1)))[:measure_batch]
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            ms = _time_ms(forms, xb, repeats)
            best = min(ms, key=ms.get)
        else:
            best = FACTORIZED if macs[FACTORIZED] < macs.get(DENSE, macs[FACTORIZED] + 1) else DENSE
        if best != FACTORIZED:
            _set_submodule(folded, name, forms[best])
        choices.append(LayerChoice(name, best, macs, ms))
    return Prepared(folded.eval(), pairs, choices)
