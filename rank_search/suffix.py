"""Run a model from one layer on, with what the rest of the model feeds that part cached.

A sensitivity profile measures the dense model with one layer swapped many times, and everything
that does not depend on that layer computes the same values every time. ``Suffix`` traces the
model once (``torch.fx``) and, for one layer, splits its graph into the part that depends on the
layer and the rest; the values that cross from the rest into that part (the layer's input, skip
connections) are cached once per input batch, and every variant of the layer runs only its part.
Models that ``torch.fx`` cannot trace, that call the layer more than once or hold dropout (whose
draws would change) get no ``Suffix``: measure those whole.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import fx, nn

_RANDOM = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def trace(model: nn.Module) -> fx.GraphModule | None:
    """``model`` traced (sharing its modules), or None where it cannot be (data-dependent control
    flow, dropout)."""
    if any(isinstance(m, _RANDOM) and m.p > 0 for m in model.modules()):
        return None
    try:
        return fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: measure the model whole
        return None


class _Partial(fx.Interpreter):
    """Runs the nodes that are not in its starting environment, with some modules replaced."""

    def __init__(self, gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.modules = modules

    def call_module(self, target, args, kwargs):
        module = self.modules.get(target)
        return module(*args, **kwargs) if module is not None else super().call_module(target, args, kwargs)


class Suffix:
    """The part of a traced model ``gm`` that depends on the module ``layer``.

    ``norms`` are the BatchNorm modules of that part (by name): a variant re-estimating statistics
    replaces them, and only them, with fresh copies.
    """

    def __init__(self, gm: fx.GraphModule, layer: str) -> None:
        calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer]
        if len(calls) != 1:
            raise ValueError(f"layer {layer!r} is called {len(calls)} times in the traced model, expected once")
        down: set[fx.Node] = set()
        todo = [calls[0]]
        while todo:
            node = todo.pop()
            if node not in down:
                down.add(node)
                todo.extend(node.users)
        self.gm, self.layer = gm, layer
        self.upstream = [n for n in gm.graph.nodes if n not in down]
        self.frontier = [n for n in self.upstream if any(u in down for u in n.users)]
        modules = dict(gm.named_modules())
        self.norms = [n.target for n in gm.graph.nodes if n in down and n.op == "call_module"
                      and isinstance(modules[n.target], nn.modules.batchnorm._BatchNorm)]

    @classmethod
    def of(cls, gm: fx.GraphModule | None, layer: str) -> "Suffix | None":
        if gm is None:
            return None
        try:
            return cls(gm, layer)
        except ValueError:
            return None

    @torch.no_grad()
    def run(self, cached: Mapping[fx.Node, Any], modules: Mapping[str, nn.Module]) -> torch.Tensor:
        """The model's output for one cached batch, with ``modules`` (name -> module) replacing the
        traced ones of the same name; only the part that depends on ``layer`` runs."""
        env = {n: None for n in self.upstream}  # present, so the interpreter skips them
        env.update(cached)
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        return _Partial(self.gm, modules).run(*(env[p] for p in placeholders), initial_env=env)


@torch.no_grad()
def cache_frontiers(suffixes: Sequence[Suffix], batches: Iterable[torch.Tensor]) -> list[list[dict[fx.Node, Any]]]:
    """For each suffix (all of one traced model) and each input batch, the frontier values the
    model (in its current mode) computes, from one pass of the model per batch; a value two
    suffixes share is one tensor."""
    out: list[list[dict[fx.Node, Any]]] = [[] for _ in suffixes]
    for x in batches:
        interp = fx.Interpreter(suffixes[0].gm, garbage_collect_values=False)
        interp.run(x)
        for cached, suffix in zip(out, suffixes):
            cached.append({node: interp.env[node] for node in suffix.frontier})
    return out


@torch.no_grad()
def node_bytes(gm: fx.GraphModule, x: torch.Tensor) -> dict[fx.Node, int]:
    """Bytes per input image of every node's value (0 for a non-tensor), measured on the batch
    ``x`` (the model in its current mode)."""
    interp = fx.Interpreter(gm, garbage_collect_values=False)
    interp.run(x)
    return {n: v.element_size() * v.numel() // max(1, x.shape[0]) if isinstance(v, torch.Tensor) else 0
            for n, v in interp.env.items()}
