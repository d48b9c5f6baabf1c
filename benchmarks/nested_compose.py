"""CPU seconds of a nested training epoch by the rule choosing a nested layer's form (issue 31):
the factors, or one dense convolution of the composed prefix once the factors' MACs reach a share
of the dense layer's (``_nested_model.COMPOSE_SHARE``; ``inf``: factors always, today's before).
Per task, every share trains one nested epoch (from the same random init, the same draws) per
round, after one warm-up epoch; the rounds interleave the shares, so machine noise falls on all
alike.

    .venv/bin/python benchmarks/nested_compose.py --rounds 5

No Ray; one torch thread; CPU seconds are the process's (``time.process_time``).
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

#: model, data set, scheme: the models of the suite's tuning tasks, and a spatial one
TASKS = ("resnet20:digits:channel", "lenet5_wide:digits:channel", "lenet5_wide:mnist5k:tucker2",
         "lenet5_wide:digits:spatial")


def epoch_seconds(task: str, share: float, seed: int) -> float:
    from rank_search.methods import _nested_model
    from rank_search.run import RunSpec, train

    model, dataset, scheme = task.split(":")
    _nested_model.COMPOSE_SHARE = share
    start = time.process_time()
    train(RunSpec(method="nested", model=model, dataset=dataset, scheme=scheme, epochs=1, ranks="ratio:0.25",
                  seed=seed, settings={"train.threads": 1, "train.batch_size": 64}))
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="model:dataset:scheme, comma-separated")
    p.add_argument("--shares", default="inf,1,0.5,0.25,0", help="COMPOSE_SHARE values; inf: factors always")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    shares = [float(s) for s in args.shares.split(",")]
    lines = [f"## Nested epoch CPU seconds by form rule ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
             "", f"Command: `.venv/bin/python benchmarks/nested_compose.py --tasks {args.tasks} --shares {args.shares} "
             f"--rounds {args.rounds}`. Median (min-max) over rounds; ratio: median of the per-round ratio to "
             "factors always (`inf`).", "",
             "| task | " + " | ".join(f"share {s:g}" for s in shares) + " |",
             "| --- |" + " --- |" * len(shares)]
    for task in args.tasks.split(","):
        times = {s: [] for s in shares}
        epoch_seconds(task, shares[0], seed=0)  # warm-up: the data set's first load, lazy imports
        for r in range(args.rounds):
            for s in shares:
                times[s].append(epoch_seconds(task, s, seed=r))
        base = times[shares[0]]
        cells = [f"{statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f}), "
                 f"x{statistics.median(a / b for a, b in zip(t, base)):.2f}" for t in times.values()]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
