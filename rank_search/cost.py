"""Exact parameter and MAC counts (METHODS.md section 1: 1 MAC = one multiply-add)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import schema
from .errors import RankSearchError
from .layers import TiledFactorized

#: How MACs are totalled: ``all`` (every Conv2d and Linear, the default) or ``trp`` (the TRP
#: authors' README counting: convolutions only, the classifier and every Linear left out).
COUNTINGS = ("all", "trp")


def _check_counting(counting: str) -> None:
    if counting not in COUNTINGS:
        raise RankSearchError(f"counting must be one of {', '.join(COUNTINGS)}, got {counting!r}")


def trp_layers(model: nn.Module) -> list[str]:
    """The layers the TRP authors decompose (``get_look_up_table`` and the ``stride == (1, 1)``
    test of their ``decompose.py``): every Conv2d (groups=1) but the first non-1x1 one, whose
    kernel is not 1x1 and whose stride is 1, in module order."""
    convs = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.groups == 1 and tuple(m.kernel_size) != (1, 1)]
    return [n for n, m in convs[1:] if tuple(m.stride) == (1, 1)]


def _linear_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of modules that compute a Linear layer with convolutions (a tiled Linear)."""
    return tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, TiledFactorized) and m.linear)


def count_params(model: nn.Module) -> int:
    """All parameters of the model (weights, biases, BatchNorm affine)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...], *, counting: str = "all") -> tuple[int, dict[str, int]]:
    """MACs of one sample through every Conv2d and Linear, in total and per module name.

    A conv's MACs are its weight size (params without bias, already divided by groups) times
    its output height times width; a Linear's are its weight size times the number of
    positions it is applied to.

    Args:
        model: any module; it is run once in eval mode on zeros, its mode is restored.
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``.
        counting: ``all`` (default) or ``trp``: convolutions only, as the TRP authors' reported
            reductions (no classifier, no Linear, dense or factorized).
    """
    _check_counting(counting)
    kinds = (nn.Conv2d,) if counting == "trp" else (nn.Conv2d, nn.Linear)
    skip = _linear_prefixes(model) if counting == "trp" else ()
    per_module: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                positions = output.shape[-2] * output.shape[-1]
            else:
                positions = output.numel() // (output.shape[0] * output.shape[-1])
            per_module[name] = per_module.get(name, 0) + module.weight.numel() * positions

        return fn

    for name, module in model.named_modules():
        if isinstance(module, kinds) and not name.startswith(skip):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sum(per_module.values()), per_module


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def model_cost(model: nn.Module, input_shape: tuple[int, ...], *, counting: str = "all") -> Cost:
    """Params (always all of them) and MACs (by ``counting``, see :func:`count_macs`)."""
    return Cost(count_params(model), count_macs(model, input_shape, counting=counting)[0])


def compression_metrics(dense: Cost, compact: Cost) -> dict[str, float]:
    """The four counts and the two dense/compact ratios, under their schema names."""
    return {
        schema.DENSE_PARAMS: dense.params,
        schema.COMPACT_PARAMS: compact.params,
        schema.DENSE_MACS: dense.macs,
        schema.COMPACT_MACS: compact.macs,
        schema.PARAMS_COMPRESSION: dense.params / compact.params,
        schema.MACS_COMPRESSION: dense.macs / compact.macs,
    }
