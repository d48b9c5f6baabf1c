"""Sensitivity profile time: measured on the whole model per point; reusing the dense prefix with
one pass of the model per layer to cache it (``profile.CACHE_BYTES = 1``); and reusing it with the
layers' values cached in one pass (the default), side by side, on the same points.

Each repeat runs the three in turn on a trained-for-one-epoch model (1 thread, the ``bn`` proxy,
the channel scheme); the rows are checked equal, and the table gives each median and the median
speed-up over the whole model with its range.

    .venv/bin/python benchmarks/profile_speed.py --model resnet20 --dataset mnist5k --every 2 --repeats 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

import torch

from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)
from rank_search.data import load_dataset
from rank_search.engine import TrainConfig, Trainer, TrainingHooks
from rank_search.models import create_model_for
from rank_search import profile
from rank_search.profile import measure_profile, profile_tasks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--every", type=int, default=2, help="profile every N-th eligible layer (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, seed=0, batch_size=64)
    torch.manual_seed(0)
    model = create_model_for(args.model, data)
    Trainer(model, TrainingHooks(), data, TrainConfig(lr=0.05, batch_size=64, device="cpu"), epochs=1).fit()
    tasks = profile_tasks(model, ["channel"])[::args.every]
    variants = {"whole": (False, None), "per-layer": (True, 1), "one pass": (True, profile.CACHE_BYTES)}
    secs: dict[str, list[float]] = {v: [] for v in variants}
    rows = {}
    for _ in range(args.repeats):
        for name, (reuse, budget) in variants.items():
            if budget is not None:
                profile.CACHE_BYTES = budget
            start = time.perf_counter()
            prof = measure_profile(model, data, schemes=["channel"], proxies=("bn",), tasks=tasks, reuse_prefix=reuse)
            secs[name].append(time.perf_counter() - start)
            rows[name] = prof.rows
    same = all({k: a[k] for k in a if k != "val_loss"} == {k: b[k] for k in b if k != "val_loss"}
               and abs(a["val_loss"] - b["val_loss"]) <= 1e-5 * max(1.0, abs(a["val_loss"]))
               for other in ("per-layer", "one pass") for a, b in zip(rows["whole"], rows[other]))
    speed = {v: [w / t for w, t in zip(secs["whole"], secs[v])] for v in ("per-layer", "one pass")}
    lines = [f"## Sensitivity profile time (profile_speed.py, {dt.date.today()})", "",
             f"Command: `.venv/bin/python benchmarks/profile_speed.py --model {args.model} --dataset {args.dataset} "
             f"--every {args.every} --repeats {args.repeats}`; {platform.node()}, {os.cpu_count()} cores, 1 thread. "
             f"{len(tasks)} layers x {len(rows['whole']) // max(len(tasks), 1)} ratios, `bn` proxy; the whole model "
             f"per point, the dense prefix reused with one caching pass per layer, and with one pass for the "
             f"layers, in turn, {args.repeats} times. Rows equal: {'yes' if same else 'NO'}.", "",
             "| | whole model (s) | prefix, pass per layer (s; speed-up) | prefix, one pass (s; speed-up) |",
             "| --- | --- | --- | --- |",
             f"| {args.model} on {args.dataset} | {statistics.median(secs['whole']):.1f} | "
             + " | ".join(f"{statistics.median(secs[v]):.1f}; {statistics.median(speed[v]):.2f}x "
                          f"({min(speed[v]):.2f}-{max(speed[v]):.2f})" for v in ("per-layer", "one pass")) + " |"]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
