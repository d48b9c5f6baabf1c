"""Does BatchNorm re-estimation after the decomposition help `posthoc`? Paired per seed: the same
trained dense reference, the same uniform plan, fine-tuned the same number of epochs with and
without `posthoc.bn_recalibrate` (and measured before any fine-tuning too).

    .venv/bin/python benchmarks/bn_recalibration.py --model resnet20 --seeds 3 --targets 3,5,8

No Ray; one torch thread; results are cached per (seed, setting) under --storage.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics

import torch

from _report import cached_json, emit  # benchmarks/_report.py (the script folder is on sys.path)


def run(spec_kwargs: dict, storage: str, key: str) -> dict:
    from rank_search.run import RunSpec, train

    return cached_json(os.path.join(storage, key + ".json"), lambda: train(RunSpec(**spec_kwargs)).metrics)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--dense-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--targets", default="3,5,8", help="MACs compression targets (uniform allocation)")
    p.add_argument("--storage", default="runs/bn_recalibration")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    from rank_search.allocation import LayerMacs, uniform_allocation
    from rank_search.data import dataset_info
    from rank_search.models import create_model_for
    from rank_search.run import RunSpec, train
    from rank_search.weights import save_weights

    info = dataset_info(args.dataset)
    shape = (info.in_channels, info.image_size, info.image_size)
    targets = [float(t) for t in args.targets.split(",")]
    settings = {"train.threads": 1}
    rows: dict[tuple[float, str], list[float]] = {}
    for seed in range(args.seeds):
        dense_path = os.path.join(storage, f"dense-{args.model}-s{seed}.pt")
        if not os.path.isfile(dense_path):
            result = train(RunSpec(model=args.model, dataset=args.dataset, method="full", epochs=args.dense_epochs,
                                   seed=seed, settings=settings))
            save_weights(result.trainer.model, dense_path)
        torch.manual_seed(seed)
        model = create_model_for(args.model, info)
        macs = LayerMacs(model, shape)
        for target in targets:
            plan = uniform_allocation(macs, target, scheme="channel")
            ranks = plan.to_dict()
            for name, extra in (("plain", {}), ("bn", {"posthoc.bn_recalibrate": True})):
                m = run(dict(model=args.model, dataset=args.dataset, method="posthoc", ranks=ranks,
                             epochs=args.finetune_epochs, seed=seed, init=dense_path,
                             settings={**settings, **extra}), storage, f"{args.model}-t{target:g}-{name}-s{seed}")
                rows.setdefault((target, name), []).append(m["test_accuracy"])
                rows.setdefault((target, name + "-macs"), []).append(m["macs_compression"])
    lines = [f"## BatchNorm re-estimation for posthoc ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
             "", f"Command: `.venv/bin/python benchmarks/bn_recalibration.py --model {args.model} --dataset "
                 f"{args.dataset} --seeds {args.seeds} --dense-epochs {args.dense_epochs} --finetune-epochs "
                 f"{args.finetune_epochs} --targets {args.targets}`. One dense reference per seed "
                 f"({args.dense_epochs} epochs), the uniform allocation at each target, posthoc from it with "
                 f"{args.finetune_epochs} fine-tuning epoch(s), with and without `posthoc.bn_recalibrate` "
                 "(512 training images); test accuracy, one torch thread.", "",
             "| target | MACs x | plain (per seed) | bn_recalibrate (per seed) | paired diff median (min, max) |",
             "| --- | --- | --- | --- | --- |"]
    for target in targets:
        plain, bn = rows[(target, "plain")], rows[(target, "bn")]
        diffs = [b - a for a, b in zip(plain, bn)]
        lines.append(f"| {target:g}x | {statistics.median(rows[(target, 'plain-macs')]):.2f} | "
                     f"{', '.join(f'{v:.4f}' for v in plain)} | {', '.join(f'{v:.4f}' for v in bn)} | "
                     f"{statistics.median(diffs):+.4f} ({min(diffs):+.4f}, {max(diffs):+.4f}) |")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
