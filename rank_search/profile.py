"""Layer sensitivity profile: the dense reference with only one layer decomposed, for every
eligible layer, scheme and rank ratio, measured under several proxies of fine-tuned accuracy.

Proxies (columns of ``sensitivity.csv``; the allocation reads one, see ``schema.PROFILE_PROXIES``):

- ``bn``: validation accuracy and loss after BatchNorm re-estimation (``val_accuracy``,
  ``val_loss``), against the dense reference re-estimated the same way;
- ``finetune``: the same after ``finetune_steps`` SGD steps on training batches
  (``ft_val_accuracy``, ``ft_val_loss``), against the dense model fine-tuned alike;
- ``energy``: no evaluation: the kept spectral energy of the layer's matrix (``energy``), and
  ALDS's relative operator-norm error sigma_{r+1} / sigma_1 (``opnorm_error``).

Ratio 1.0 means the layer left dense (a full-rank factorization costs more MACs than the dense
layer, so the allocation never picks it): those rows are the dense reference's own numbers. The
global RNG is left as it was.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
from torch import nn

from .tables import Profile
from .cost import count_macs, layer_input_shapes
from .decomp.policies import RankPolicy
from .engine import evaluate
from .engine.batchnorm import reestimate_batchnorm
from .engine.precision import to_channels_last
from .layers import get_scheme
from .plan import LayerPlan, RankPlan, eligible_layers, resolve_rank, scheme_for
from .surgery import compress
from .suffix import Suffix, cache_frontiers, node_bytes, trace

DEFAULT_RATIOS = (0.02, 0.04, 0.07, 0.1, 0.15, 0.22, 0.32, 0.45, 0.65, 1.0)
DEFAULT_PROXIES = ("bn", "finetune", "energy")
#: training images each point's BatchNorm statistics are re-estimated on (why 256: docs/search.md)
DEFAULT_BN_IMAGES = 256


def layer_spectra(scheme: str, layer: nn.Module) -> list[torch.Tensor]:
    """The singular values of ``layer``'s weight in ``scheme`` (one vector per rank dimension)."""
    return get_scheme(scheme).spectra(layer.weight.detach().float())


def spectral(spectra: list[torch.Tensor], rank) -> tuple[float, float]:
    """(kept energy fraction, relative operator-norm error sigma_{r+1} / sigma_1) at ``rank``."""
    ranks = rank if isinstance(rank, tuple) else (rank,) * len(spectra)
    kept, err = 1.0, 0.0
    for s, r in zip(spectra, ranks):
        e = (s.double() ** 2)
        kept *= float(e[:r].sum() / e.sum()) if float(e.sum()) > 0 else 1.0
        err = max(err, float(s[r] / s[0]) if r < len(s) and float(s[0]) > 0 else 0.0)
    return kept, err


def _finetune(model: nn.Module, loader, *, steps: int, lr: float, device) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    done = 0
    while done < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break


def profile_tasks(dense: nn.Module, schemes: Sequence[str] = ("channel",)) -> list[tuple[str, str]]:
    """The (layer, scheme) pairs a profile measures, in model order: each one's rows are
    independent of the others', so a profile can be measured in parts (``measure_profile``'s
    ``tasks``) and merged (``merge_profiles``)."""
    return [(n, s) for n, layer in eligible_layers(dense).items()
            for s in dict.fromkeys(scheme_for(layer, x) for x in schemes)]


def profile_points(pairs: Sequence[tuple[str, str]], ratios: Sequence[float] = DEFAULT_RATIOS
                   ) -> list[tuple[str, str, float]]:
    """Every (layer, scheme, ratio) point of ``pairs``, dense rows (ratio 1.0, free) last: dealt
    round-robin into parts they give each part as many measured points as the others, whatever
    their pairs' costs (a split by pairs gives a part with the costlier pairs more work)."""
    return [(n, s, float(r)) for n, s in pairs for r in ratios if r < 1.0] + \
        [(n, s, float(r)) for n, s in pairs for r in ratios if r >= 1.0]


def measure_profile(dense: nn.Module, data, *, schemes: Sequence[str] = ("channel",),
                    ratios: Sequence[float] = DEFAULT_RATIOS, proxies: Sequence[str] = DEFAULT_PROXIES,
                    bn_images: int = DEFAULT_BN_IMAGES, finetune_steps: int = 20, finetune_lr: float = 0.01,
                    device: torch.device | str = "cpu", meta: dict | None = None,
                    progress: Callable[[str], None] | None = None,
                    tasks: Sequence[tuple] | None = None, channels_last: bool = False,
                    reuse_prefix: bool = True) -> Profile:
    """The sensitivity profile of ``dense`` (trained weights; never modified) on ``data``; with
    ``tasks`` (a part of ``profile_tasks``'s pairs, or of ``profile_points``' (layer, scheme,
    ratio) points), the rows of those only, the same rows the whole profile has for them (see
    ``merge_profiles``). ``channels_last``: every measured model's 4-D weights in that memory
    format (as a run with ``train.channels_last`` trains them: faster convolutions on a CPU, the
    same numbers up to rounding). ``reuse_prefix``: under the ``bn`` proxy (with or without
    ``energy``) each layer's points run only the part of the model after the layer, the rest's
    values computed once per layer (``suffix.Suffix``; the same rows, fewer forward passes);
    models ``torch.fx`` cannot trace are measured whole either way."""
    device = torch.device(device)
    dense = dense.to(device).eval()
    input_shape = (data.in_channels, data.image_size, data.image_size)
    total_macs, per_layer = count_macs(dense, input_shape)
    layers = eligible_layers(dense)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):

        def measure(model: nn.Module) -> dict:
            # every point from the same RNG state and data order: a point's numbers do not depend
            # on which points were measured before it (or in which part of a split profile)
            torch.manual_seed(0)
            data.train.set_epoch(0)
            out = {}
            if "bn" in proxies:
                m = copy.deepcopy(model)
                reestimate_batchnorm(m, data.train, images=bn_images, device=device)
                out["val_accuracy"], out["val_loss"] = evaluate(m, data.val, device)
            if "finetune" in proxies:
                m = copy.deepcopy(model)
                reestimate_batchnorm(m, data.train, images=bn_images, device=device)
                _finetune(m, data.train, steps=finetune_steps, lr=finetune_lr, device=device)
                out["ft_val_accuracy"], out["ft_val_loss"] = evaluate(m, data.val, device)
            return out

        base = measure(to_channels_last(copy.deepcopy(dense)) if channels_last else dense)
        rows = []
        todo: dict[tuple[str, str], list[float]] = {}  # (layer, scheme) -> its ratios to measure
        for task in (profile_tasks(dense, schemes) if tasks is None else tasks):
            todo.setdefault((task[0], task[1]), []).extend([float(task[2])] if len(task) > 2 else ratios)
        unknown = [n for n, _ in todo if n not in layers]
        if unknown:
            raise ValueError(f"measure_profile: no eligible layer {unknown[0]!r} in the model")
        suffixes = None
        if reuse_prefix and "bn" in proxies and set(proxies) <= {"bn", "energy"}:  # no weight updates
            suffixes = _Suffixes(dense, data, bn_images=bn_images, device=device, channels_last=channels_last,
                                 input_shape=input_shape, layers=[name for name, _ in todo])
        for i, ((name, scheme), mine) in enumerate(todo.items()):
            layer = layers[name]
            spectra = layer_spectra(scheme, layer)
            mine_set = set(mine)
            part = suffixes.part(name) if suffixes is not None else None
            for ratio in (r for r in ratios if float(r) in mine_set):
                rank = resolve_rank(name, layer, scheme, RankPolicy("ratio", float(ratio)))
                row = {"layer": name, "scheme": scheme, "ratio": float(ratio),
                       "rank": "x".join(map(str, rank)) if isinstance(rank, tuple) else rank}
                if ratio >= 1.0:
                    # full rank: the layer stays dense (its factorized form costs more), so the
                    # row is the dense reference itself
                    row.update({"macs": total_macs, "layer_macs": per_layer[name], "energy": 1.0,
                                "opnorm_error": 0.0, **base})
                    rows.append(row)
                    continue
                energy, opnorm = spectral(spectra, rank)
                if part is not None:  # the same numbers from the part of the model after the layer
                    layer_macs, measured = part.measure(get_scheme(scheme).from_dense(layer, rank, name=name))
                    macs = total_macs - per_layer[name] + layer_macs
                else:
                    compact = compress(dense, RankPlan(((name, LayerPlan(scheme, rank)),)))
                    macs = count_macs(compact, input_shape)[0]
                    measured = measure(to_channels_last(compact) if channels_last else compact)
                row.update({"macs": macs, "layer_macs": macs - (total_macs - per_layer[name]),
                            "energy": energy, "opnorm_error": opnorm, **measured})
                rows.append(row)
            if progress is not None:
                progress(f"profile: layer {i + 1}/{len(todo)} {name} ({scheme}) done, "
                         f"{time.perf_counter() - start:.1f}s")
    info = {"input_shape": list(input_shape), "dense_macs": total_macs, "ratios": [float(r) for r in ratios],
            "proxies": list(proxies), "bn_images": bn_images, "finetune_steps": finetune_steps,
            "channels_last": bool(channels_last),
            "seconds": time.perf_counter() - start, **(meta or {})}
    if "bn" in proxies:
        info["dense_val_accuracy"], info["dense_val_loss"] = base["val_accuracy"], base["val_loss"]
    if "finetune" in proxies:
        info["dense_ft_val_accuracy"], info["dense_ft_val_loss"] = base["ft_val_accuracy"], base["ft_val_loss"]
    return Profile(tuple(rows), info)


#: the most bytes of cached frontier values one pass of the model keeps (for a group of layers)
CACHE_BYTES = 256 * 2 ** 20


class _Suffixes:
    """The ``bn`` proxy measured on the part of the model after each layer (``suffix.Suffix``): the
    rest computes the same values for every point of a layer, so they are computed once per layer,
    for consecutive layers of ``layers`` in one pass of the model while their values fit in
    ``CACHE_BYTES``. Gives the numbers ``measure_profile``'s whole-model path gives (a test holds
    them equal)."""

    def __init__(self, dense: nn.Module, data, *, bn_images: int, device, channels_last: bool,
                 input_shape: tuple[int, ...], layers: Sequence[str] = ()) -> None:
        ref = to_channels_last(copy.deepcopy(dense)) if channels_last else copy.deepcopy(dense)
        # the calibration batches a re-estimation draws (same seed and data order as ``measure``)
        torch.manual_seed(0)
        data.train.set_epoch(0)
        self.calibration, seen = [], 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for x, _ in data.train:
                take = min(x.shape[0], bn_images - seen)
                self.calibration.append(x[:take].to(device))
                seen += take
                if seen >= bn_images:
                    break
        reestimate_batchnorm(ref, data.train, images=bn_images, device=device)  # upstream statistics
        self.val = [(x.to(device), y.to(device)) for x, y in data.val]
        self.gm = trace(ref)
        self.shapes = layer_input_shapes(dense, input_shape, eligible_layers(dense)) if self.gm is not None else {}
        self.channels_last = channels_last
        self.order = list(dict.fromkeys(layers))
        self._cached: dict[str, tuple[Suffix, list, list]] = {}
        self._bytes: dict | None = None  # bytes per image of each node's value, measured once

    def part(self, name: str) -> "_Part | None":
        if name not in self._cached:
            group = self._cache_group(name)
            if name not in group:  # no part: the layer is measured whole
                return None
            self._cached = group  # the previous group's values are let go
        return _Part(self, *self._cached[name])

    def _cache_group(self, name: str) -> dict[str, tuple[Suffix, list, list]]:
        """``name`` and the layers after it in ``order`` whose frontier values fit in
        ``CACHE_BYTES`` together, cached in one pass per batch (train mode for the calibration
        batches, the running statistics put back afterwards; eval mode for validation); empty when
        ``name`` has no ``Suffix``."""
        gm = self.gm
        later = self.order[self.order.index(name):] if name in self.order else [name]
        suffixes = [s for s in (Suffix.of(gm, n) for n in later) if s is not None]
        if not suffixes or suffixes[0].layer != name:
            return {}
        gm.eval()
        if self._bytes is None:
            self._bytes = node_bytes(gm, self.val[0][0]) if self.val else {}
        images = sum(x.shape[0] for x in self.calibration) + sum(x.shape[0] for x, _ in self.val)
        group, union = [], set()
        for suffix in suffixes:
            grown = union | set(suffix.frontier)
            if group and sum(self._bytes.get(n, 0) for n in grown) * images > CACHE_BYTES:
                break
            group.append(suffix)
            union = grown
        saved = {n: copy.deepcopy(gm.get_submodule(n).state_dict()) for n in _norm_names(gm)}
        gm.train()
        train = cache_frontiers(group, self.calibration)
        for n, state in saved.items():  # a train-mode pass moved the running statistics: put them back
            gm.get_submodule(n).load_state_dict(state)
        gm.eval()
        val = cache_frontiers(group, (x for x, _ in self.val))
        return {s.layer: (s, t, v) for s, t, v in zip(group, train, val)}


class _Part:
    """One layer's part of the model with its frontier values cached for the calibration (train
    mode) and validation (eval mode) batches."""

    def __init__(self, owner: _Suffixes, suffix: Suffix, train_cache: list, val_cache: list) -> None:
        self.owner, self.suffix = owner, suffix
        self.train_cache, self.val_cache = train_cache, val_cache

    def measure(self, layer: nn.Module) -> tuple[int, dict]:
        """(MACs of ``layer`` in place of the part's layer, its ``bn`` proxy numbers)."""
        gm, suffix = self.suffix.gm, self.suffix
        layer_macs = count_macs(layer, self.owner.shapes[suffix.layer])[0]
        if self.owner.channels_last:
            layer = to_channels_last(layer)
        norms = {}
        for n in suffix.norms:
            bn = copy.deepcopy(gm.get_submodule(n))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average, as reestimate_batchnorm
            norms[n] = bn
        swap = {suffix.layer: layer, **norms}
        gm.train()
        layer.train()
        for bn in norms.values():
            bn.train()
        for cached in self.train_cache:
            suffix.run(cached, swap)
        gm.eval()
        layer.eval()
        for bn in norms.values():
            bn.eval()
        correct, total, loss_sum = 0, 0, 0.0
        for cached, (_, y) in zip(self.val_cache, self.owner.val):
            logits = suffix.run(cached, swap)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
        return layer_macs, {"val_accuracy": correct / max(total, 1), "val_loss": loss_sum / max(total, 1)}


def _norm_names(gm: nn.Module) -> list[str]:
    return [n for n, m in gm.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def merge_profiles(parts: Sequence[Profile], order: Sequence[tuple[str, str]], seconds: float) -> Profile:
    """One profile from parts measured on the same weights and data (``measure_profile``'s
    ``tasks``, by pair or by point): rows in ``order`` (``profile_tasks``), each pair's in the
    order of the meta's ratios, the first part's meta, ``seconds`` the wall time of the whole
    measurement and ``task_seconds`` the parts' times summed."""
    if not parts:
        raise ValueError("merge_profiles: no parts")
    by_task: dict[tuple[str, str], list] = {}
    for part in parts:
        for row in part.rows:
            by_task.setdefault((row["layer"], row["scheme"]), []).append(row)
    missing = [t for t in order if t not in by_task]
    if missing:
        raise ValueError(f"merge_profiles: no rows for layer {missing[0][0]!r} in scheme {missing[0][1]!r}")
    ratios = [float(r) for r in parts[0].meta.get("ratios", [])]
    rank = {r: i for i, r in enumerate(ratios)}
    rows = tuple(r for t in order for r in sorted(by_task[t], key=lambda row: rank.get(float(row["ratio"]), 0)))
    task_seconds = sum(float(p.meta.get("seconds", 0.0)) for p in parts)
    return Profile(rows, {**parts[0].meta, "seconds": float(seconds), "task_seconds": task_seconds})
