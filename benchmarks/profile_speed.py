"""Sensitivity profile time: measured on the whole model per point, and reusing the dense prefix
(``measure_profile(reuse_prefix=True)``, the default), side by side, on the same points.

Each repeat runs both in turn on a trained-for-one-epoch model (1 thread, the ``bn`` proxy, the
channel scheme); the rows are checked equal, and the table gives the median ratio and its range.

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
    secs: dict[bool, list[float]] = {False: [], True: []}
    rows = {}
    for _ in range(args.repeats):
        for reuse in (False, True):
            start = time.perf_counter()
            prof = measure_profile(model, data, schemes=["channel"], proxies=("bn",), tasks=tasks, reuse_prefix=reuse)
            secs[reuse].append(time.perf_counter() - start)
            rows[reuse] = prof.rows
    same = all({k: a[k] for k in a if k != "val_loss"} == {k: b[k] for k in b if k != "val_loss"}
               and abs(a["val_loss"] - b["val_loss"]) <= 1e-5 * max(1.0, abs(a["val_loss"]))
               for a, b in zip(rows[False], rows[True]))
    ratios = [a / b for a, b in zip(secs[False], secs[True])]
    lines = [f"## Sensitivity profile time (profile_speed.py, {dt.date.today()})", "",
             f"Command: `.venv/bin/python benchmarks/profile_speed.py --model {args.model} --dataset {args.dataset} "
             f"--every {args.every} --repeats {args.repeats}`; {platform.node()}, {os.cpu_count()} cores, 1 thread. "
             f"{len(tasks)} layers x {len(rows[True]) // max(len(tasks), 1)} ratios, `bn` proxy; whole model per "
             f"point against the dense prefix reused, in turn, {args.repeats} times. Rows equal: "
             f"{'yes' if same else 'NO'}.", "",
             "| | whole model (s, median) | prefix reused (s, median) | speed-up (median, range) |",
             "| --- | --- | --- | --- |",
             f"| {args.model} on {args.dataset} | {statistics.median(secs[False]):.1f} | "
             f"{statistics.median(secs[True]):.1f} | {statistics.median(ratios):.2f}x "
             f"({min(ratios):.2f}-{max(ratios):.2f}) |"]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
