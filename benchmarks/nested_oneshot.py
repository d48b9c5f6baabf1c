"""Train once, search many (issue 31). Per seed: a dense reference; a `nested` model trained from
it; a one-shot search over many per-layer allocations (truncation, BatchNorm re-estimation,
validation); at each target MACs compression, the front point of best validation accuracy at or
above it, tested before and after a short fine-tune. Paired with `posthoc` at the uniform
allocation of the same target, from the same reference, fine-tuned as long.

    .venv/bin/python benchmarks/nested_oneshot.py --model resnet20 --dataset digits --seeds 3

No Ray; one torch thread; CPU seconds are the process's (``time.process_time``) per phase.
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


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def finetune(compact, trainer, epochs: int, seed: int) -> float:
    """Test accuracy of ``compact`` after ``epochs`` epochs of plain training (0: as it is)."""
    from rank_search.engine import Trainer, evaluate
    from rank_search.methods import create_method

    if epochs:
        tuner = Trainer(compact, create_method("full"), trainer.data, trainer.config, epochs=epochs, seed=seed)
        tuner.fit()
        compact = tuner.model
    return evaluate(compact, trainer.data.test, trainer.device)[0]


def one_seed(args, seed: int, storage: str) -> dict:
    from rank_search.allocation import LayerMacs, uniform_allocation
    from rank_search.methods.nested import TruncationSampler
    from rank_search.run import RunSpec, train
    from rank_search.search.oneshot import TruncationSpace, compact_of, front, oneshot_search, sample_allocations
    from rank_search.weights import save_weights

    common = dict(model=args.model, dataset=args.dataset, seed=seed,
                  settings={"train.threads": 1, "train.batch_size": args.batch_size})
    dense, cpu_dense = timed(lambda: train(RunSpec(method="full", epochs=args.dense_epochs, **common)))
    dense_path = os.path.join(storage, f"dense-{args.model}-{args.dataset}-s{seed}.pt")
    save_weights(dense.trainer.model, dense_path)
    nested_common = {**common, "settings": {**common["settings"], "nested.min_ratio": args.min_ratio}}
    nested, cpu_nested = timed(lambda: train(RunSpec(method="nested", epochs=args.nested_epochs, ranks="ratio:0.25",
                                                     scheme=args.scheme, init=dense_path, **nested_common)))
    tr = nested.trainer
    sampler = TruncationSampler.for_model(tr.model, tr.method.knobs, seed)
    space = TruncationSpace(tr.model, tr.input_shape, sampler.low)
    plans = sample_allocations(space, args.allocations, seed=seed)
    points, cpu_search = timed(lambda: oneshot_search(tr.model, tr.data, space, plans, bn_images=args.bn_images,
                                                      screen_images=args.screen_images, device=tr.device))
    kept = front([p for p in points if p.bn_images == args.bn_images])
    out = {"dense_test": dense.metrics["test_accuracy"], "cpu": {"dense": cpu_dense, "nested": cpu_nested,
           "search": cpu_search, "finetune": 0.0, "posthoc": 0.0}, "evaluated": len(points), "front": len(kept)}
    macs = LayerMacs(dense.trainer.model, tr.input_shape)
    for target in args.target_list:
        eligible = [p for p in kept if p.compression >= target]
        if eligible:
            best = max(eligible, key=lambda p: p.val_accuracy)
            compact = compact_of(tr.model, best.plan, tr.data, bn_images=args.bn_images, device=tr.device)
            before = finetune(compact, tr, 0, seed)
            after, cpu = timed(lambda: finetune(compact, tr, args.finetune_epochs, seed))
            out["cpu"]["finetune"] += cpu
            out[f"oneshot-{target:g}"] = (best.compression, best.val_accuracy, before, after)
        plan = uniform_allocation(macs, target, scheme=args.scheme)
        base, cpu = timed(lambda: train(RunSpec(method="posthoc", epochs=args.finetune_epochs, ranks=plan.to_dict(),
                                                scheme=args.scheme, init=dense_path, **common)))
        out["cpu"]["posthoc"] += cpu
        out[f"posthoc-{target:g}"] = (base.metrics["macs_compression"], base.metrics["test_accuracy"])
    return out


def _cells(values) -> str:
    return f"{statistics.median(values):.4f} ({', '.join(f'{v:.3f}' for v in values)})" if values else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--scheme", default="channel", help="channel or tucker2")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--dense-epochs", type=int, default=6)
    p.add_argument("--nested-epochs", type=int, default=12)
    p.add_argument("--min-ratio", type=float, default=0.05, help="nested.min_ratio")
    p.add_argument("--allocations", type=int, default=400, help="allocations the one-shot search evaluates")
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--bn-images", type=int, default=512)
    p.add_argument("--screen-images", type=int, default=0, help="BatchNorm images of a first screening pass (0: none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--targets", default="2,4,8,16", help="MACs compression targets")
    p.add_argument("--storage", default="runs/nested_oneshot", help="folder for the dense references")
    p.add_argument("--out")
    args = p.parse_args()
    args.target_list = [float(t) for t in args.targets.split(",")]
    torch.set_num_threads(1)
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    runs = [one_seed(args, seed, storage) for seed in range(args.seeds)]
    lines = [f"## Nested ranks, one-shot search ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)", "",
             f"Command: `.venv/bin/python benchmarks/nested_oneshot.py --model {args.model} --dataset {args.dataset} "
             f"--scheme {args.scheme} --seeds {args.seeds} --dense-epochs {args.dense_epochs} --nested-epochs "
             f"{args.nested_epochs} --min-ratio {args.min_ratio} --allocations {args.allocations} --screen-images "
             f"{args.screen_images} --finetune-epochs {args.finetune_epochs} --targets {args.targets}`. "
             f"Test accuracy, median (per seed); dense: {_cells([r['dense_test'] for r in runs])}.", "",
             "| target | one-shot MACs x | one-shot val | one-shot test | after fine-tune | posthoc uniform MACs x | "
             "posthoc uniform test |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in args.target_list:
        one = [r[f"oneshot-{t:g}"] for r in runs if f"oneshot-{t:g}" in r]
        base = [r[f"posthoc-{t:g}"] for r in runs]
        cells = [_cells([o[i] for o in one]) for i in range(4)] + [_cells([b[i] for b in base]) for i in range(2)]
        lines.append("| " + " | ".join([f"{t:g}x"] + cells) + " |")
    cpu = {k: statistics.median(r["cpu"][k] for r in runs) for k in runs[0]["cpu"]}
    lines += ["", "CPU seconds per seed, median: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
              + f"; allocations evaluated {runs[0]['evaluated']}, on the front (median) "
              f"{statistics.median(r['front'] for r in runs):g}."]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
