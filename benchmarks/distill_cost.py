"""What distillation adds to a fine-tuning run's time (issue 30), side by side: `posthoc` from
dense weights at a uniform MACs target, fine-tuned --epochs epochs, (a) without distillation,
(b) with the teacher run on every batch, (c) with its logits computed once per training image
(`engine.distill.teacher_table`, what a loader without augmentation gets). (b) is (c)'s run with
an identity augmentation, so the batches are the same. Rounds interleave the three; one thread.

    .venv/bin/python benchmarks/distill_cost.py --models resnet20,lenet5_wide --rounds 3

Reported: CPU seconds per epoch (the run's seconds over its epochs, the teacher's pass included),
median over rounds, and each way's median per-round ratio to (a).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time

import torch

from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

WAYS = ("off", "every batch", "once per image")


def one(model: str, dataset: str, ranks: dict, epochs: int, way: str, dense: str) -> float:
    """CPU seconds per epoch of one fine-tuning run done ``way``."""
    from rank_search.run import RunSpec, prepare

    settings = {"train.threads": 1, **({} if way == "off" else {"distill.weight": 0.5, "distill.temperature": 4.0})}
    spec = RunSpec(model=model, dataset=dataset, method="posthoc", epochs=epochs, seed=0, init=dense,
                   teacher=None if way == "off" else dense, ranks=ranks, scheme="channel", settings=settings)
    trainer = prepare(spec)
    if way == "every batch":
        trainer.data.train.augment = lambda x, _gen: x  # the same batches, not fixed_inputs
    start = time.process_time()
    trainer.fit()
    return (time.process_time() - start) / epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20,lenet5_wide")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--target", type=float, default=8.0, help="MACs compression (uniform allocation)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    lines = [f"## Distillation's cost per fine-tuning epoch (distill_cost.py, {dt.date.today()})", "",
             f"Command: `.venv/bin/python benchmarks/distill_cost.py --models {args.models} --dataset {args.dataset} "
             f"--target {args.target:g} --epochs {args.epochs} --rounds {args.rounds}` ({platform.node()}, "
             f"{os.cpu_count()} cores, 1 thread). CPU s per epoch, median of rounds; x: median per-round ratio "
             "to no distillation.", "",
             "| model | " + " | ".join(WAYS) + " |", "| --- |" + " --- |" * len(WAYS)]
    from rank_search.allocation import LayerMacs, uniform_allocation
    from rank_search.data import dataset_info
    from rank_search.models import create_model_for
    from rank_search.weights import save_weights

    info = dataset_info(args.dataset)
    for model in args.models.split(","):
        dense_model = create_model_for(model, info)
        ranks = uniform_allocation(LayerMacs(dense_model, (info.in_channels, info.image_size, info.image_size)),
                                   args.target, scheme="channel").to_dict()
        with tempfile.TemporaryDirectory() as tmp:
            dense = os.path.join(tmp, "dense.pt")  # untrained weights: the same arithmetic as trained ones
            save_weights(dense_model, dense)
            seconds = {w: [] for w in WAYS}
            for _ in range(args.rounds):
                for way in WAYS:
                    seconds[way].append(one(model, args.dataset, ranks, args.epochs, way, dense))
        cells = [f"{statistics.median(seconds['off']):.2f} s"]
        for way in WAYS[1:]:
            ratio = statistics.median(s / o for s, o in zip(seconds[way], seconds["off"]))
            cells.append(f"{statistics.median(seconds[way]):.2f} s (x{ratio:.2f})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
