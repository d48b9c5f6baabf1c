"""Exact parameter and MAC counts (METHODS.md section 1: 1 MAC = one multiply-add), and the
break-even rule: a layer whose factorized form costs at least its dense MACs stays dense."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import schema
from .errors import RankSearchError
from .layers import TiledFactorized, get_scheme
from .layers.base import conv_geometry

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
    _run_once(model, input_shape, handles)
    return sum(per_module.values()), per_module


def _run_once(model: nn.Module, input_shape: tuple[int, ...], handles: list) -> None:
    """One sample of zeros through ``model`` in eval mode without autograd, on its device and
    dtype; its mode is restored and ``handles`` (the hooks that watched it) removed."""
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


def layer_input_shapes(model: nn.Module, input_shape: tuple[int, ...], layers) -> dict[str, tuple[int, ...]]:
    """The input one sample gives each of ``layers`` (names, or a name -> module mapping) in
    ``model``, without the batch dimension: one forward pass on zeros in eval mode (restored)."""
    names = set(layers)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def fn(module: nn.Module, inputs, output) -> None:
            shapes[name] = tuple(inputs[0].shape[1:])
        return fn

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n in names]
    _run_once(model, input_shape, handles)
    return shapes


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


# ---- break-even ----
#: *Our choice*: a plan has no input size, so a layer's break-even is decided per output
#: position: its dense and factorized MACs when it computes a BREAK_EVEN_SIDE x BREAK_EVEN_SIDE
#: output from an input of stride x that (plus the kernel's overhang where the layer does not pad
#: it). That is the exact ratio at any input size for every factor that runs at the output
#: resolution (the channel and tiled schemes, Linear layers) and for a 'same'-padded conv under
#: the spatial and Tucker-2 schemes; only an unpadded conv under those two depends (a little) on
#: the size. Plans and the budget allocation both decide with :func:`stays_dense`.
BREAK_EVEN_SIDE = 16
BREAK_EVEN_REASON = "factorized cost >= dense"


def _geometry_key(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.Linear):
        return ("linear", layer.in_features, layer.out_features)
    g = conv_geometry(layer)
    return ("conv", layer.in_channels, layer.out_channels, g["kernel_size"], g["stride"], g["padding"], g["dilation"])


def _shape_only(key: tuple) -> nn.Module:
    """A parameter-free (meta) copy of a layer's geometry: building its factorized form on it
    allocates and initialises nothing."""
    with torch.device("meta"):
        if key[0] == "linear":
            return nn.Linear(key[1], key[2])
        _, c, n, kernel, stride, padding, dilation = key
        return nn.Conv2d(c, n, kernel, stride=stride, padding=padding, dilation=dilation)


def _chain_macs(module: nn.Module, hw: tuple[int, int]) -> int:
    """MACs of the Conv2d/Linear sub-modules of ``module`` applied one after another (the
    factorized layers are chains, registered in the order they run) to an ``hw`` input, as
    :func:`count_macs` counts them: weight size times output positions."""
    total = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            g = conv_geometry(m)
            hw = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
                       zip(hw, g["kernel_size"], g["stride"], g["padding"], g["dilation"]))
            total += m.weight.numel() * hw[0] * hw[1]
        elif isinstance(m, nn.Linear):
            total += m.weight.numel()
    return total


def _probe_hw(key: tuple) -> tuple[int, int]:
    if key[0] == "linear":
        return (1, 1)
    _, _, _, kernel, stride, padding, dilation = key
    return tuple(s * BREAK_EVEN_SIDE + max(0, d * (k - 1) - 2 * p)
                 for k, s, p, d in zip(kernel, stride, padding, dilation))


@functools.lru_cache(maxsize=8192)
def _break_even_macs(key: tuple, scheme: str, rank: Any, tiles: tuple[int, int] | None) -> tuple[int, int]:
    layer = _shape_only(key)
    with torch.device("meta"):
        built = get_scheme(scheme).build(layer, rank, **({"tiles": tiles} if tiles else {}))
    hw = _probe_hw(key)
    return _chain_macs(layer, hw), _chain_macs(built, hw)


def break_even_macs(layer: nn.Module, scheme: str, rank: Any, *, tiles=None) -> tuple[int, int]:
    """(dense, factorized) MACs of ``layer`` at ``rank`` on the break-even probe (see
    BREAK_EVEN_SIDE); computed from shapes alone, cached."""
    rank = tuple(rank) if isinstance(rank, list) else rank
    return _break_even_macs(_geometry_key(layer), scheme, rank, tuple(tiles) if tiles else None)


def stays_dense(layer: nn.Module, scheme: str, rank: Any, *, tiles=None,
                measured: tuple[int, int] | None = None) -> bool:
    """The break-even rule: True when ``layer`` factorized at ``rank`` costs at least as many MACs
    as the dense layer (so factorizing it cannot make the model faster).

    Args:
        measured: (dense, factorized) MACs at the model's real input size, where the caller
            has them (the budget allocation): the layer then also stays dense when those say so
            (they differ from the probe's only for an unpadded conv under spatial/Tucker-2).
    """
    dense, factorized = break_even_macs(layer, scheme, rank, tiles=tiles)
    return factorized >= dense or (measured is not None and measured[1] >= measured[0])
