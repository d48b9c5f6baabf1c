"""Measured latency: median wall milliseconds of forward passes, several models interleaved in one
run so that load on a shared machine hits them alike and their ratio stays meaningful.

The one place forward passes are timed: a trial's compact-vs-dense measurement (``run``) and
`rank-search evaluate` (``deploy``) both call :func:`median_forward_ms`.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import schema
from .errors import RankSearchError

#: A trial's measurement: WARMUP untimed passes of each model, then up to REPEATS timed rounds
#: (one pass of each model per round), stopped once MAX_SECONDS of timed passes are spent, after
#: at least MIN_REPEATS rounds. *Our choice*: cheap enough to run at every epoch report (about
#: 10 ms on the tiny models; on a large one about MAX_SECONDS plus the warm-up), enough rounds for
#: a stable median of the ratio.
WARMUP = 1
REPEATS = 10
MIN_REPEATS = 3
MAX_SECONDS = 0.25


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RankSearchError(f"{name} must be an integer >= {low}, got {value!r}")


def forward_times_ms(forwards: Sequence[Callable[[torch.Tensor], Any]], x: torch.Tensor, *, repeats: int,
                     warmup: int = WARMUP, max_seconds: float | None = None, min_repeats: int = MIN_REPEATS,
                     synchronize: Callable[[], None] | None = None) -> list[list[float]]:
    """Milliseconds of every timed ``forward(x)`` for each of ``forwards``, measured interleaved:
    one list per forward, entry k of each from round k.

    Each round times every forward once; odd rounds run them in reverse order, so none always
    runs right after another (which would give it the other's warm caches).

    Args:
        repeats: timed rounds at most.
        warmup: untimed passes of each forward first.
        max_seconds: stop once the timed passes took this long in all (after ``min_repeats``
            rounds); None runs every round.
        synchronize: called before each clock read (``torch.cuda.synchronize`` on a GPU).
    """
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        for forward in forwards:
            forward(x)
    times: list[list[float]] = [[] for _ in forwards]
    spent = 0.0
    for round_ in range(repeats):
        order = range(len(forwards)) if round_ % 2 == 0 else reversed(range(len(forwards)))
        for i in order:
            sync()
            start = time.perf_counter()
            forwards[i](x)
            sync()
            elapsed = time.perf_counter() - start
            times[i].append(elapsed * 1000.0)
            spent += elapsed
        if max_seconds is not None and round_ + 1 >= min(min_repeats, repeats) and spent >= max_seconds:
            break
    return times


def median_forward_ms(forwards: Sequence[Callable[[torch.Tensor], Any]], x: torch.Tensor, *, repeats: int,
                      warmup: int = WARMUP, max_seconds: float | None = None, min_repeats: int = MIN_REPEATS,
                      synchronize: Callable[[], None] | None = None) -> list[float]:
    """Median milliseconds of one ``forward(x)`` for each of ``forwards`` (``forward_times_ms``)."""
    return [statistics.median(t) for t in forward_times_ms(forwards, x, repeats=repeats, warmup=warmup,
                                                           max_seconds=max_seconds, min_repeats=min_repeats,
                                                           synchronize=synchronize)]


def speedup_spread(dense_ms: Sequence[float], compact_ms: Sequence[float]) -> float:
    """Interquartile range of the per-round speed-ups (dense / compact of the same round; quartiles
    interpolated between the rounds): how far the reported median may be from another run's; nan
    with fewer than 2 rounds."""
    ratios = [d / c for d, c in zip(dense_ms, compact_ms) if c > 0]
    if len(ratios) < 2:
        return float("nan")
    q = statistics.quantiles(ratios, n=4, method="inclusive")
    return q[2] - q[0]


def latency_metrics(dense_ms: float, compact_ms: float, spread: float | None = None) -> dict[str, float]:
    """The two medians and their ratio (dense / compact), under their schema names; with
    ``spread`` (``speedup_spread``) also the ratio's dispersion."""
    out = {schema.LATENCY_MS: compact_ms, schema.DENSE_LATENCY_MS: dense_ms,
           schema.LATENCY_SPEEDUP: dense_ms / compact_ms if compact_ms > 0 else float("nan")}
    if spread is not None:
        out[schema.LATENCY_SPREAD] = spread
    return out


def _on(model: nn.Module, device: torch.device, *, channels_last: bool = False) -> nn.Module:
    """``model`` on ``device`` (and in ``channels_last``, when asked): itself when it is so
    already, else a copy (never moved or converted in place)."""
    param = next(model.parameters(), None)
    if param is None:
        return model
    wrong_format = channels_last and any(p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last)
                                         for p in model.parameters())
    if param.device == device and not wrong_format:
        return model
    moved = copy.deepcopy(model).to(device)
    return moved.to(memory_format=torch.channels_last) if channels_last else moved


def measure_latency(dense: nn.Module, compact: nn.Module | None, input_shape: tuple[int, ...], *, batch_size: int,
                    device: torch.device | str = "cpu", threads: int | None = None, repeats: int = REPEATS,
                    warmup: int = WARMUP, max_seconds: float | None = MAX_SECONDS,
                    channels_last: bool = False) -> dict[str, float]:
    """Compact vs dense latency on ``device`` at ``batch_size``, interleaved in one run.

    Both models run in eval mode without autograd (their modes are restored; neither is
    mutated), on one random batch, with ``threads`` intra-op threads (default: torch's).
    ``channels_last``: both models' 4-D weights and the batch in that memory format (a run
    trained with ``train.channels_last``: its compact model is kept so, and the dense one is
    timed alike, else the ratio would compare two layouts).
    ``compact=None`` (no usable compact model, e.g. a diverged run) times the dense model alone
    and reports it for both (speed-up 1).

    Returns:
        ``latency_ms`` (compact), ``dense_latency_ms``, ``latency_speedup`` (dense / compact) and
        ``latency_speedup_spread`` (the interquartile range of the per-round speed-ups).
    """
    _check_count("latency batch size", batch_size, 1)
    device = torch.device(device)
    models = [_on(m, device, channels_last=channels_last) for m in [dense] + ([] if compact is None else [compact])]
    modes = [m.training for m in models]
    x = torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for m in models:
            m.eval()
        with torch.no_grad():
            times = forward_times_ms(models, x, repeats=repeats, warmup=warmup, max_seconds=max_seconds,
                                     synchronize=sync)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
        torch.set_num_threads(before)
    spread = speedup_spread(times[0], times[-1]) if compact is not None else 0.0
    return latency_metrics(statistics.median(times[0]), statistics.median(times[-1]), spread)
