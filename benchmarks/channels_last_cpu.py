"""Training speed on CPU with `train.channels_last` on and off, per method, side by side.

Each (model, method, memory format, repeat) is one `rank-search train` run of --epochs epochs
(one torch thread, the same seed, data order and plan in both formats); the table gives the
median epoch seconds of each format and their ratio per repeat, and the final validation
accuracy of both (the formats differ only in floating-point rounding).

    .venv/bin/python benchmarks/channels_last_cpu.py --models lenet5_wide --repeats 2

Runs are cached per key under --storage (a rerun skips what is done); repeats are interleaved
(NCHW, channels_last, NCHW, ...) so a slow spell of the machine hits both formats.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics

import torch

from _report import cached_json, emit  # benchmarks/_report.py (the script folder is on sys.path)

METHODS = ("full", "posthoc", "trp", "lrpet", "deeptwist", "elrt")
FROM_DENSE = ("posthoc", "deeptwist")  # started from the `full` run's weights, as in a sweep


def run(model: str, method: str, channels_last: bool, repeat: int, args, storage: str) -> dict:
    key = f"{model}-{method}-{'cl' if channels_last else 'nchw'}-b{args.batch_size}-e{args.epochs}-r{repeat}"
    return cached_json(os.path.join(storage, key + ".json"), lambda: _train(model, method, channels_last, args, storage))


def _train(model: str, method: str, channels_last: bool, args, storage: str) -> dict:
    from rank_search.run import RunSpec, train

    seconds: list[float] = []
    settings = _settings(args, channels_last)
    ranks = None if method == "full" else f"ratio:{args.ratio}"
    init = {"init": _dense_weights(model, args, storage)} if method in FROM_DENSE else {}
    result = train(RunSpec(model=model, dataset=args.dataset, method=method, ranks=ranks, epochs=args.epochs,
                           seed=0, settings=settings, **init),
                   on_epoch=lambda tr, res: seconds.append(float(res.seconds)))
    return {"epoch_seconds": seconds, "val_accuracy": float(result.metrics["val_accuracy"])}


def _settings(args, channels_last: bool) -> dict:
    return {"train.threads": 1, "train.batch_size": args.batch_size, "train.channels_last": channels_last}


def _dense_weights(model: str, args, storage: str) -> str:
    """The dense weights posthoc and deeptwist start from: a `full` NCHW run, trained once per
    (model, batch size, epochs) and kept under --storage."""
    from rank_search.run import RunSpec, train
    from rank_search.weights import save_weights

    path = os.path.join(storage, f"dense-{model}-b{args.batch_size}-e{args.epochs}.pt")
    if not os.path.isfile(path):
        dense = train(RunSpec(model=model, dataset=args.dataset, method="full", ranks=None, epochs=args.epochs,
                              seed=0, settings=_settings(args, False)))
        save_weights(dense.trainer.model, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lenet5_wide", help="comma-separated model names")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ratio", type=float, default=0.3, help="uniform rank ratio of the low-rank methods")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--storage", default="runs/channels_last_cpu")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    lines = [f"## Training speed on CPU: `train.channels_last` ({dt.date.today()}, {platform.node()}, "
             f"torch {torch.__version__}, 1 thread)", "",
             f"Command: `.venv/bin/python benchmarks/channels_last_cpu.py --models {args.models} --methods "
             f"{args.methods} --epochs {args.epochs} --batch-size {args.batch_size} --ratio {args.ratio} "
             f"--repeats {args.repeats}`. One `rank-search train` run per cell on {args.dataset} (seed 0, "
             f"uniform ratio {args.ratio} for the low-rank methods, their default schemes; posthoc and "
             "deeptwist start from a `full` NCHW run's weights, as in a sweep), the two formats "
             "interleaved per repeat. Epoch seconds: median over the repeats' epochs; speed-up: NCHW / "
             "channels_last per repeat (median, min..max).", "",
             "| model | method | NCHW s/epoch | channels_last s/epoch | speed-up (median, range) | val acc NCHW / CL |",
             "| --- | --- | --- | --- | --- | --- |"]
    for model in args.models.split(","):
        for method in args.methods.split(","):
            cells = {False: [], True: []}
            for r in range(args.repeats):
                for cl in (False, True):
                    cells[cl].append(run(model, method, cl, r, args, storage))
                    print(f"{model} {method} {'channels_last' if cl else 'nchw'} repeat {r}: "
                          f"{cells[cl][-1]['epoch_seconds']}", flush=True)
            med = {cl: statistics.median(s for c in cells[cl] for s in c["epoch_seconds"]) for cl in cells}
            ratios = [statistics.median(a["epoch_seconds"]) / statistics.median(b["epoch_seconds"])
                      for a, b in zip(cells[False], cells[True])]
            acc = {cl: statistics.median(c["val_accuracy"] for c in cells[cl]) for cl in cells}
            lines.append(f"| {model} | {method} | {med[False]:.2f} | {med[True]:.2f} | "
                         f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f}) | "
                         f"{acc[False]:.3f} / {acc[True]:.3f} |")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
