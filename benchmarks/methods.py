"""Method benchmark on the embedded MNIST subset: accuracy at matched compression, training
time per epoch relative to `full`, and compact-vs-dense CPU inference latency.

1. Accuracy: every method at about 2x, 4x and 8x MACs compression (a uniform rank ratio found
   by bisection on the exact compact cost, per method scheme), several seeds; median test
   accuracy and the achieved compression (measured from the trained compact model).
2. Epoch time: one epoch of each method at its default interval vs `full`, interleaved,
   median of --timing-repeats, as a ratio.
3. Latency: the compact model (4x plan) vs the dense model on CPU at batch 1 and 64, median
   of many forward passes, next to the MACs ratio.

    .venv/bin/python benchmarks/methods.py --epochs 4 --seeds 3 --out benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time

import torch

from rank_search.cost import count_macs
from rank_search.data import dataset_info
from rank_search.methods import METHODS
from rank_search.models import create_model
from rank_search.plan import uniform_plan
from rank_search.run import RunSpec, train
from rank_search.surgery import compress
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

MODEL, DATASET = "lenet5_wide", "mnist5k"
METHOD_ORDER = ["full", "posthoc", "factorized", "trp", "lrpet", "deeptwist", "elrt"]
TARGETS = (2.0, 4.0, 8.0)
SETTINGS = {"train.batch_size": 32, "train.lr": 0.02, "train.threads": 1}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dense_model(device: str = "cpu"):
    info = dataset_info(DATASET)
    return create_model(MODEL, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size).to(device), (info.in_channels, info.image_size, info.image_size)


def ratio_for(target: float, scheme: str) -> tuple[float, float]:
    """Uniform rank ratio whose compact model is closest to ``target`` MACs compression."""
    model, shape = dense_model()
    dense = count_macs(model, shape)[0]

    def compression(r: float) -> float:
        return dense / count_macs(compress(model, uniform_plan(model, f"ratio:{r}", scheme=scheme)), shape)[0]

    lo, hi = 1e-3, 1.0  # compression decreases with the ratio
    for _ in range(14):
        mid = (lo + hi) / 2
        if compression(mid) > target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda r: abs(compression(r) - target))
    return best, compression(best)


def accuracy_table(epochs: int, seeds: list[int], methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        cls = METHODS.get(method)
        targets = [None] if not cls.uses_plan else list(TARGETS)
        for target in targets:
            ranks, planned = None, 1.0
            if target is not None:
                ratio, planned = ratio_for(target, cls.default_scheme)
                ranks = f"ratio:{ratio:.6f}"
            results = []
            for seed in seeds:
                settings = dict(SETTINGS)
                if method == "posthoc":
                    settings["posthoc.finetune_epochs"] = max(1, epochs // 4)
                spec = RunSpec(model=MODEL, dataset=DATASET, method=method, ranks=ranks, epochs=epochs,
                               seed=seed, settings=settings)
                m = train(spec).metrics
                results.append(m)
                log(f"{method:10s} target {target or 1:>3}x seed {seed}: test_acc {m['test_accuracy']:.4f} "
                    f"macs_x {m['macs_compression']:.2f} ({m['wall_seconds']:.0f} s)")
            rows.append({
                "method": method, "target": target, "planned": planned,
                "test_acc": statistics.median(r["test_accuracy"] for r in results),
                "test_accs": [r["test_accuracy"] for r in results],
                "macs_x": statistics.median(r["macs_compression"] for r in results),
                "params_x": statistics.median(r["params_compression"] for r in results),
            })
    return rows


def epoch_times(repeats: int, methods: list[str]) -> dict[str, list[float]]:
    from rank_search.run import prepare

    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for method in methods:  # interleaved: noise hits every method alike
            cls = METHODS.get(method)
            ranks = None if not cls.uses_plan else f"ratio:{ratio_for(4.0, cls.default_scheme)[0]:.6f}"
            spec = RunSpec(model=MODEL, dataset=DATASET, method=method, ranks=ranks, epochs=2, seed=0,
                           settings=dict(SETTINGS))
            trainer = prepare(spec)
            trainer.method.on_train_start(trainer)
            start = time.perf_counter()
            trainer.train_epoch()  # epoch 1 of 2: hooks at their default intervals, no finalize
            times[method].append(time.perf_counter() - start)
    return times


@torch.no_grad()
def latency(model, shape, batch: int, iters: int) -> float:
    model.eval()
    x = torch.randn(batch, *shape)
    for _ in range(5):
        model(x)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        model(x)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def latency_table(iters: int) -> list[dict]:
    rows = []
    model, shape = dense_model()
    dense_macs = count_macs(model, shape)[0]
    for scheme in ("channel", "tucker2"):
        for target in TARGETS:
            ratio, _ = ratio_for(target, scheme)
            compact = compress(model, uniform_plan(model, f"ratio:{ratio}", scheme=scheme))
            macs_x = dense_macs / count_macs(compact, shape)[0]
            for batch in (1, 64):
                d, c = [], []
                for _ in range(3):  # alternate dense/compact rounds
                    d.append(latency(model, shape, batch, iters))
                    c.append(latency(compact, shape, batch, iters))
                rows.append({"scheme": scheme, "target": target, "macs_x": macs_x, "batch": batch,
                             "dense_ms": 1e3 * statistics.median(d), "compact_ms": 1e3 * statistics.median(c)})
                log(f"latency {scheme} {target}x batch {batch}: dense {rows[-1]['dense_ms']:.3f} ms, "
                    f"compact {rows[-1]['compact_ms']:.3f} ms")
    return rows


def render(args, acc, times, lat) -> str:
    lines = [
        f"## Methods on {DATASET} ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, CPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads)",
        "",
        f"Command: `.venv/bin/python benchmarks/methods.py --epochs {args.epochs} --seeds {args.seeds}"
        f" --timing-repeats {args.timing_repeats} --parts {args.parts}`. Model `{MODEL}` (4 eligible layers), "
        f"{args.epochs} epochs, batch 32, lr 0.02 cosine, 1 training thread, seeds {list(range(args.seeds))}; "
        "uniform rank ratio per method found by bisection on the exact compact MACs; `posthoc` "
        f"spends {max(1, args.epochs // 4)} of the epochs fine-tuning; schemes are each method's default "
        "(channel: posthoc, trp, lrpet; tucker2 with channel for Linear: factorized, deeptwist, elrt).",
        "",
    ]
    if acc:
        lines += accuracy_lines(acc)
    if times:
        lines += timing_lines(args, times)
    if lat:
        lines += latency_lines(args, lat)
    return "\n".join(lines) + "\n"


def accuracy_lines(acc) -> list[str]:
    full = next(r for r in acc if r["method"] == "full")
    lines = [
        f"Reference `full` (dense): median test accuracy **{full['test_acc']:.4f}** "
        f"({', '.join(f'{a:.4f}' for a in full['test_accs'])}).",
        "",
        "| method | target MACs x | achieved MACs x | params x | median test acc | per seed | vs posthoc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    posthoc = {r["target"]: r["test_acc"] for r in acc if r["method"] == "posthoc"}
    for r in acc:
        if r["method"] == "full":
            continue
        delta = r["test_acc"] - posthoc[r["target"]] if r["target"] in posthoc else float("nan")
        lines.append(f"| {r['method']} | {r['target']:.0f} | {r['macs_x']:.2f} | {r['params_x']:.2f} | "
                     f"{r['test_acc']:.4f} | {', '.join(f'{a:.4f}' for a in r['test_accs'])} | {delta:+.4f} |")
    return lines + [""]


def timing_lines(args, times) -> list[str]:
    base = statistics.median(times["full"])
    lines = ["", f"Training time per epoch relative to `full` (one epoch at each method's default interval, "
                  f"4x plan, interleaved, median of {args.timing_repeats}; full = {base:.2f} s):", "",
              "| method | median s/epoch | ratio to full |", "| --- | --- | --- |"]
    for m, t in times.items():
        lines.append(f"| {m} | {statistics.median(t):.2f} | {statistics.median(t) / base:.3f} |")
    return lines + [""]


def latency_lines(args, lat) -> list[str]:
    lines = ["", f"CPU inference latency, compact vs dense (median of {args.latency_iters} forward passes "
                  "x 3 alternating rounds):", "",
              "| scheme | MACs x | batch | dense ms | compact ms | speed-up | share of MACs ratio realised |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in lat:
        speed = r["dense_ms"] / r["compact_ms"]
        lines.append(f"| {r['scheme']} | {r['macs_x']:.2f} | {r['batch']} | {r['dense_ms']:.3f} | "
                     f"{r['compact_ms']:.3f} | {speed:.2f}x | {speed / r['macs_x']:.0%} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--latency-iters", type=int, default=50)
    p.add_argument("--methods", default=",".join(METHOD_ORDER))
    p.add_argument("--parts", default="accuracy,timing,latency",
                   help="which parts to run (timing and latency need a quiet machine)")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    methods = args.methods.split(",")
    parts = args.parts.split(",")
    acc = accuracy_table(args.epochs, list(range(args.seeds)), methods) if "accuracy" in parts else []
    times = epoch_times(args.timing_repeats, methods) if "timing" in parts else {}
    lat = latency_table(args.latency_iters) if "latency" in parts else []
    text = render(args, acc, times, lat)
    emit(text, args.out)


if __name__ == "__main__":
    main()
