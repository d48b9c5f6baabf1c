"""GPU check (issue 9): every method trains one epoch of synthetic CIFAR-size data (3x32x32) on
``resnet20`` on CUDA with ``train.amp`` off, bf16 and fp16 (and bf16 with channels_last), then
the compact models are timed against the dense one on the GPU. No Ray; under 5 minutes on one
GPU (``--budget-s`` skips the training runs that would start after it; the report says which).

Training: per method and mode, the training loop's time (first to last optimizer step), the
engine's epoch time (with the final projection, the compact model and the validation pass), the
epoch's mean training loss, validation loss and accuracy, the peak GPU memory, fp16's final grad
scale and a check: loss finite, weights still float32. Every method trains at ``--ranks``
(default ``ratio:0.25``) in its default scheme, with its sweep defaults (TRP converts at those
ranks); posthoc spends its one epoch dense and decomposes at the end. Latency: each method's
compact model from its first mode's run against the dense model, in eval mode, at batch 1 and
64, in float32, under bf16 autocast and bf16 + channels_last; per repeat the two are timed
back to back (``torch.cuda.synchronize`` around each), median over repeats after a warm-up.

Prints a markdown section (command, device name, date) and appends it to ``--out FILE``.
Exits 2 without CUDA, 1 when a run failed its check.

On the lent GPU machine (see /work/.library/device/README.md): it has torch but no tensorly,
which travels as a wheel (pure Python; it needs numpy and scipy, which the machine has). Once,
here, in the repository root::

    echo /.whl/ >> .git/info/exclude
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl tensorly==0.10.0

then the device tool's ``run`` with ``carry: [".whl"]`` and ``timeout_s: 420``, command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py \
    --out $OUT/gpu_check.md

(the project is not installed there: ``PYTHONPATH`` gives it, with the machine's own torch; the
report comes back as ``gpu_check.md`` and goes into ``benchmarks/RESULTS.md``).

A CPU smoke test of the same code paths (tiny, fp16 left out: it needs CUDA)::

    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import math
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rank_search.cost import count_macs
from rank_search.data import load_dataset
from rank_search.engine import DivergedError, TrainConfig, Trainer
from rank_search.engine.precision import autocast, to_channels_last
from rank_search.engine.trainer import seed_everything
from rank_search.methods import METHODS, create_method
from rank_search.models import create_model_for
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

MODEL = "resnet20"
METHOD_ORDER = ["full", "posthoc", "factorized", "trp", "lrpet", "deeptwist", "elrt", "nested"]
GPU_MODES = "off,bf16,fp16,bf16+cl"
CPU_MODES = "off,bf16+cl"  # fp16 needs CUDA
LATENCY_MODES = ("off", "bf16", "bf16+cl")
LR = 0.05


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_mode(mode: str) -> tuple[str, bool]:
    """``bf16+cl`` -> (``bf16``, channels_last)."""
    amp, _, suffix = mode.partition("+")
    if suffix not in ("", "cl"):
        raise SystemExit(f"gpu_check: a mode is AMP[+cl] with AMP one of off, bf16, fp16, got {mode!r}")
    return amp, suffix == "cl"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_trainer(name: str, data, args, *, amp: str, channels_last: bool) -> Trainer:
    """``name`` on ``resnet20`` for one epoch, prepared as ``rank_search.run.prepare`` does."""
    knobs = dict(METHODS.get(name).search_defaults)
    if name == "posthoc":
        knobs["finetune_epochs"] = 0  # one epoch: train dense, decompose at the end
    method = create_method(name, knobs, ranks=args.ranks)
    cfg = TrainConfig(lr=LR, batch_size=args.batch_size, device=args.device, amp=amp, channels_last=channels_last,
                      threads=args.threads)
    seed_everything(args.seed)
    dense = create_model_for(MODEL, data)
    if method.uses_plan:
        method.resolve_plan(dense)
    return Trainer(dense, method, data, cfg, epochs=1, seed=args.seed)


def train_one(name: str, mode: str, data, args) -> dict:
    """One epoch of ``name`` in ``mode``; the row of the training table (and the trainer)."""
    amp, cl = parse_mode(mode)
    row: dict = {"method": name, "mode": mode}
    try:
        trainer = build_trainer(name, data, args, amp=amp, channels_last=cl)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other runs go on
        return {**row, "check": f"FAIL: {type(exc).__name__}: {exc}"}
    device = trainer.device
    marks: dict[str, float] = {}
    real_start, real_end = trainer.method.on_epoch_start, trainer.method.on_epoch_end

    def on_epoch_start(tr, epoch):  # wrapped on the instance: the loop's time, first to last step
        real_start(tr, epoch)
        sync(device)
        marks["start"] = time.perf_counter()

    def on_epoch_end(tr, epoch):
        sync(device)
        marks["end"] = time.perf_counter()
        real_end(tr, epoch)

    trainer.method.on_epoch_start, trainer.method.on_epoch_end = on_epoch_start, on_epoch_end
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        trainer.fit()
    except DivergedError as exc:
        return {**row, "check": f"FAIL: {exc}"}
    except Exception as exc:  # noqa: BLE001
        return {**row, "check": f"FAIL: {type(exc).__name__}: {exc}"}
    result = trainer.history[-1]
    problems = []
    if not (math.isfinite(result.train_loss) and math.isfinite(result.val_loss)):
        problems.append("loss not finite")
    dtypes = {p.dtype for p in trainer.model.parameters()}
    if dtypes != {torch.float32}:
        problems.append(f"weights {sorted(map(str, dtypes))}")
    scale = trainer.scaler.get_scale() if trainer.scaler is not None else None
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        problems.append(f"grad scale {scale}")
    return {**row, "trainer": trainer, "scheme": trainer.method.scheme if trainer.method.uses_plan else "-",
            "loop_s": marks["end"] - marks["start"], "epoch_s": result.seconds, "train_loss": result.train_loss,
            "val_loss": result.val_loss, "val_acc": result.val_accuracy, "scale": scale,
            "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "check": "FAIL: " + ", ".join(problems) if problems else "ok"}


@torch.inference_mode()
def paired_latency(models: list[torch.nn.Module], shape: tuple[int, ...], batch: int, *, device: torch.device,
                   mode: str, warmup: int, repeats: int, inner: int) -> list[float]:
    """Median milliseconds of one forward of each model, timed back to back in every repeat
    (the order alternating), after ``warmup`` forwards of each."""
    amp, cl = parse_mode(mode)
    x = torch.randn(batch, *shape, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    times: list[list[float]] = [[] for _ in models]
    with autocast(amp, device):
        for model in models:
            for _ in range(warmup):
                model(x)
        sync(device)
        for rep in range(repeats):
            order = range(len(models)) if rep % 2 == 0 else reversed(range(len(models)))
            for i in order:
                sync(device)
                start = time.perf_counter()
                for _ in range(inner):
                    models[i](x)
                sync(device)
                times[i].append((time.perf_counter() - start) * 1000.0 / inner)
    return [statistics.median(t) for t in times]


def latency_rows(runs: list[dict], shape: tuple[int, ...], args, device: torch.device) -> list[dict]:
    rows = []
    for run in runs:
        trainer = run["trainer"]
        dense = copy.deepcopy(trainer.dense).to(device).eval()
        compact = copy.deepcopy(trainer.compact_model()).to(device).eval()
        macs_ratio = count_macs(dense, shape)[0] / count_macs(compact, shape)[0]
        for mode in args.latency_modes:
            amp, cl = parse_mode(mode)
            models = [to_channels_last(copy.deepcopy(m)) if cl else m for m in (dense, compact)]
            for batch in args.latency_batches:
                dense_ms, compact_ms = paired_latency(models, shape, batch, device=device, mode=mode,
                                                      warmup=args.warmup, repeats=args.repeats, inner=args.inner)
                rows.append({"method": run["method"], "scheme": run["scheme"], "macs": macs_ratio, "mode": mode,
                             "batch": batch, "dense_ms": dense_ms, "compact_ms": compact_ms})
                log(f"latency {run['method']} {mode} batch {batch}: dense {dense_ms:.3f} ms, "
                    f"compact {compact_ms:.3f} ms")
    return rows


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def render(train_rows: list[dict], lat_rows: list[dict], args, *, device: torch.device, command: str,
           seconds: float) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    lines = [
        f"## GPU check: mixed-precision training and compact latency ({name})",
        "",
        f"`{command}`, {when}, torch {torch.__version__}{cuda}, commit {git_commit()}, {seconds:.0f} s in all.",
        f"`{MODEL}`, `synthetic` 3x{args.image_size}x{args.image_size}, {args.train_size} training images, "
        f"batch {args.batch_size}, lr {LR}, one epoch per run, ranks `{args.ranks}`; modes are `train.amp` "
        "(`+cl`: `train.channels_last=true`).",
        "",
        "### Training: one epoch per method and mode",
        "",
        "loop s: first to last optimizer step; epoch s: the engine's epoch (with the final projection, the "
        "compact model and the validation pass); x off: the loop's speed-up over the same method with amp off.",
        "",
        "| method | scheme | mode | loop s | x off | epoch s | train loss | val loss | val acc | peak MiB "
        "| grad scale | check |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    base = {r["method"]: r.get("loop_s") for r in train_rows if r["mode"] == "off"}
    for r in train_rows:
        speedup = base.get(r["method"]) / r["loop_s"] if base.get(r["method"]) and r.get("loop_s") else None
        lines.append(
            f"| {r['method']} | {r.get('scheme', '-')} | {r['mode']} | {_fmt(r.get('loop_s'), '.2f')} "
            f"| {_fmt(speedup, '.2f')} | {_fmt(r.get('epoch_s'), '.2f')} | {_fmt(r.get('train_loss'), '.4f')} "
            f"| {_fmt(r.get('val_loss'), '.4f')} | {_fmt(r.get('val_acc'), '.3f')} | {_fmt(r.get('peak_mib'), '.0f')} "
            f"| {_fmt(r.get('scale'), '.0f')} | {r['check']} |")
    lines += [
        "",
        f"### Latency: compact vs dense, eval, median of {args.repeats} repeats of {args.inner} forwards "
        f"after {args.warmup} warm-up",
        "",
        "Each method's compact model from its first mode's run; `off` is float32, `bf16` autocast, `+cl` "
        "channels_last model and input. realised: speed-up / MACs compression.",
        "",
        "| method | scheme | MACs compression | mode | batch | dense ms | compact ms | speed-up | realised |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in lat_rows:
        speedup = r["dense_ms"] / r["compact_ms"]
        lines.append(f"| {r['method']} | {r['scheme']} | {r['macs']:.2f}x | {r['mode']} | {r['batch']} "
                     f"| {r['dense_ms']:.3f} | {r['compact_ms']:.3f} | {speedup:.2f}x | {speedup / r['macs']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda[:N] (default), or cpu for a smoke test")
    p.add_argument("--quick", action="store_true", help="a tiny configuration (a couple of batches, few repeats)")
    p.add_argument("--methods", default=",".join(METHOD_ORDER), help="comma-separated (default: every method)")
    p.add_argument("--modes", default=None, help=f"comma-separated AMP[+cl] (default: {GPU_MODES} on CUDA, "
                                                 f"{CPU_MODES} on cpu)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default 25000; --quick 64)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 128; --quick 32)")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels (default 32, CIFAR's)")
    p.add_argument("--ranks", default="ratio:0.25", help="every method's rank spec (default ratio:0.25)")
    p.add_argument("--latency-batches", default=None, help="comma-separated (default 1,64; --quick 1,8)")
    p.add_argument("--repeats", type=int, default=None, help="latency repeats (default 20; --quick 3)")
    p.add_argument("--inner", type=int, default=None, help="forwards per latency repeat (default 5; --quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="latency warm-up forwards (default 10; --quick 1)")
    p.add_argument("--budget-s", type=float, default=240.0,
                   help="no training run starts after this many seconds (default 240: the latency part and "
                        "the run in flight fit in the 5 minutes)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own on CUDA, 1 on cpu, where small tensors "
                        "on shared cores run faster on one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also append the markdown to this file")
    args = p.parse_args(argv)
    quick = args.quick
    for key, full, small in (("train_size", 25000, 64), ("batch_size", 128, 32), ("repeats", 20, 3),
                             ("inner", 5, 1), ("warmup", 10, 1), ("latency_batches", "1,64", "1,8")):
        if getattr(args, key) is None:
            setattr(args, key, small if quick else full)
    if args.threads is None:
        args.threads = 0 if args.device.startswith("cuda") else 1
    args.methods = [m for m in args.methods.split(",") if m]
    for name in args.methods:
        METHODS.get(name)  # unknown names list the valid ones
    if args.modes is None:
        args.modes = GPU_MODES if args.device.startswith("cuda") else CPU_MODES
    args.modes = [m for m in args.modes.split(",") if m]
    for mode in args.modes:
        parse_mode(mode)
    args.latency_modes = [m for m in LATENCY_MODES if args.device.startswith("cuda") or m == "off"]
    args.latency_batches = [int(b) for b in str(args.latency_batches).split(",") if b]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available on this machine (torch {torch.__version__}); run it where a GPU "
              "is (see this script's docstring), or smoke-test it with --device cpu --quick", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    command = "python3 benchmarks/gpu_check.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    shape = (3, args.image_size, args.image_size)
    data = load_dataset("synthetic", seed=args.seed, batch_size=args.batch_size, eval_batch_size=512,
                        in_channels=3, image_size=args.image_size,
                        sizes=(args.train_size, max(args.train_size // 25, 64), 64))
    # Warm-up: CUDA context, cuDNN and autocast kernels of every mode, so the first timed run
    # does not pay for them (the factorized shapes are still first met by their method's run).
    warm = load_dataset("synthetic", seed=args.seed, batch_size=args.batch_size, in_channels=3,
                        image_size=args.image_size, sizes=(2 * args.batch_size, 64, 64))
    for mode in args.modes:
        amp, cl = parse_mode(mode)
        with contextlib.suppress(Exception):
            build_trainer("full", warm, args, amp=amp, channels_last=cl).fit()
    log(f"warm-up done in {time.perf_counter() - start:.1f} s")
    train_rows = []
    for mode in args.modes:
        for name in args.methods:
            if time.perf_counter() - start > args.budget_s:
                train_rows.append({"method": name, "mode": mode, "check": f"skipped (--budget-s {args.budget_s:g})"})
                continue
            row = train_one(name, mode, data, args)
            train_rows.append(row)
            log(f"{name} {mode}: loop {_fmt(row.get('loop_s'), '.2f')} s, loss {_fmt(row.get('train_loss'), '.4f')}, "
                f"{row['check']}")
    first: dict[str, dict] = {}
    for row in train_rows:
        if "trainer" in row and row["method"] not in first:
            first[row["method"]] = row
    lat_rows = latency_rows([first[m] for m in args.methods if m in first], shape, args, device)
    emit(render(train_rows, lat_rows, args, device=device, command=command, seconds=time.perf_counter() - start),
         args.out)
    return 1 if any(r["check"].startswith("FAIL") for r in train_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
