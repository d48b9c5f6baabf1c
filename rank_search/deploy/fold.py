"""Fold eval-mode BatchNorm into the convolution before it, where that is exact.

The pairs are read from the model's exported graph (``torch.export``, which runs the real
``forward``), not guessed from module names or order: a BatchNorm is folded only when its input
is the output of one convolution module, that output feeds nothing else, both modules are called
once and the convolution's weight belongs to it alone. Anything else stays as it is.
"""
from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import RankSearchError

CONV_OPS = ("aten.conv2d.default", "aten.convolution.default")
BATCHNORM_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default")


def _module_of(node) -> str | None:
    """Name of the innermost module whose ``forward`` produced ``node``."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


def trace(model: nn.Module, example: torch.Tensor):
    """``torch.export`` of ``model`` (eval mode) on ``example``; a model it cannot capture is a
    one-line error."""
    was_training = model.training
    try:
        return torch.export.export(model.eval(), (example,), strict=False)
    except Exception as exc:  # torch.export raises many types; the first line names the construct
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RankSearchError(f"torch.export cannot capture the model: {type(exc).__name__}: {first}") from None
    finally:
        model.train(was_training)


def foldable_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module names whose folding is exact, in graph order."""
    program = trace(model, example)
    modules = dict(model.named_modules())
    nodes = [n for n in program.graph.nodes if n.op == "call_function"]
    calls = Counter(_module_of(n) for n in nodes if str(n.target) in CONV_OPS + BATCHNORM_OPS)
    owners = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    pairs = []
    for node in nodes:
        if str(node.target) not in BATCHNORM_OPS:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or str(source.target) not in CONV_OPS or len(source.users) != 1:
            continue
        conv_name, bn_name = _module_of(source), _module_of(node)
        conv, bn = modules.get(conv_name), modules.get(bn_name)
        if (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
                and bn.running_var is not None and calls[conv_name] == 1 and calls[bn_name] == 1
                and owners[id(conv.weight)] == 1):
            pairs.append((conv_name, bn_name))
    return pairs


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, list[tuple[str, str]]]:
    """An eval-mode copy of ``model`` with every exactly foldable BatchNorm merged into its
    convolution (which gains a bias) and replaced by ``nn.Identity``; ``model`` is not touched.

    Returns:
        The folded copy and the ``(conv, batchnorm)`` names that were folded.
    """
    pairs = foldable_pairs(model, example)
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            fused = fuse_conv_bn_eval(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
            _set_submodule(folded, conv_name, fused)
            _set_submodule(folded, bn_name, nn.Identity())
    return folded, pairs
