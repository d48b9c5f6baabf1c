"""Data-aware decomposition and distillation for `posthoc` (issue 30). Paired per seed: one
trained dense reference, the uniform allocation at each MACs target, then

- accuracy before any fine-tuning, with each `posthoc.init_decomposition` of --inits;
- accuracy after each fine-tuning length in --epochs, for weight/data init x distillation off and on
  at each of --temperatures (`distill.weight` --distill-weight, the reference teaching), at the data
  set's rate and at each of --lrs;
- the median seconds per fine-tuning epoch of each, and the decomposition's own seconds.

    .venv/bin/python benchmarks/distill_init.py --models resnet20,lenet5_wide --seeds 3 --targets 2,4,8,16
    .venv/bin/python benchmarks/distill_init.py --quick      # 1 model, 1 seed, 2 targets, 1 epoch

No Ray; one torch thread; every run is cached under --storage (a rerun skips what is done).
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time

import torch

from _report import cached_json, emit  # benchmarks/_report.py (the script folder is on sys.path)



def _dense(model: str, dataset: str, seed: int, epochs: int, storage: str) -> str:
    from rank_search.run import RunSpec, train
    from rank_search.weights import save_weights

    path = os.path.join(storage, f"dense-{model}-{dataset}-e{epochs}-s{seed}.pt")
    if not os.path.isfile(path):
        result = train(RunSpec(model=model, dataset=dataset, method="full", epochs=epochs, seed=seed,
                               settings={"train.threads": 1}))
        save_weights(result.trainer.model, path)
    return path


def _dense_accuracy(path: str, model: str, dataset: str, seed: int) -> dict:
    """Test accuracy of the dense reference at ``path`` (the teacher)."""
    from rank_search.engine import evaluate
    from rank_search.run import RunSpec, prepare

    trainer = prepare(RunSpec(model=model, dataset=dataset, method="full", epochs=1, seed=seed, init=path))
    return {"test_accuracy": evaluate(trainer.model, trainer.data.test, trainer.device)[0]}


def _before(spec_kwargs: dict) -> dict:
    """Test accuracy of the decomposed model before fine-tuning, and the decomposition's seconds."""
    from rank_search.engine import evaluate
    from rank_search.run import RunSpec, prepare

    trainer = prepare(RunSpec(**spec_kwargs))
    start = time.perf_counter()
    trainer.method.on_epoch_start(trainer, 0)  # posthoc from dense weights: the decomposition
    seconds = time.perf_counter() - start
    return {"test_accuracy": evaluate(trainer.model, trainer.data.test, trainer.device)[0], "seconds": seconds}


def _after(spec_kwargs: dict) -> dict:
    """Test accuracy after fine-tuning; a run that diverges is recorded as such (accuracy NaN)."""
    from rank_search.engine.trainer import DivergedError
    from rank_search.run import RunSpec, train

    try:
        result = train(RunSpec(**spec_kwargs))
    except DivergedError:
        return {"test_accuracy": float("nan"), "macs_compression": float("nan"), "epoch_seconds": float("nan")}
    return {"test_accuracy": result.metrics["test_accuracy"], "macs_compression": result.metrics["macs_compression"],
            "epoch_seconds": statistics.median(r.seconds for r in result.trainer.history)}


def _cell(values: list[float], base: list[float] | None) -> str:
    diverged = sum(math.isnan(v) for v in values)
    if diverged:
        return f"{diverged} of {len(values)} diverged"
    text = f"{statistics.median(values):.4f}"
    if base is None or values is base:
        return text
    diffs = [v - b for v, b in zip(values, base) if not math.isnan(b)]
    if not diffs:
        return text
    return f"{text} ({statistics.median(diffs):+.4f} [{min(diffs):+.4f}, {max(diffs):+.4f}])"


BASELINE = ("weight", 0.0, 0.0, None)  # today's posthoc: weight init, no distillation, the data set's rate


def _label(init: str, weight: float, temp: float, lr: float | None) -> str:
    return init + (f", distill {weight:g} T {temp:g}" if weight else "") + (f", lr {lr:g}" if lr else "")


def _compact(rows: dict, models: list[str], targets: list[float], lengths: list[int], variants: list) -> str:
    """The table without epoch times: a row per model, target and fine-tuning length; the test
    accuracy before fine-tuning (weight / data-aware init) on the first."""
    head = " | ".join(_label(*v) for v in variants)
    inits = list(dict.fromkeys(v[0] for v in variants))
    lines = [f"| model | target | before FT ({' / '.join(inits)}) | FT epochs | {head} |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in variants) + " |"]
    for model in models:
        for target in targets:
            for n, e in enumerate(lengths):
                before = " / ".join(f"{statistics.median(rows[(model, target, i, 'before')]):.4f}"
                                    for i in inits) if n == 0 else ""
                cells = [_cell(rows[(model, target, *v, e)], rows[(model, target, *BASELINE, e)]) for v in variants]
                lines.append(f"| {model} | {target:g}x | {before} | {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _teachers(rows, models)


def _teachers(rows: dict, models: list[str]) -> str:
    """The dense references' (teachers') test accuracy per model: median [min, max] over seeds."""
    parts = [f"{m} {statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]"
             for m in models for v in [rows[(m, "dense")]]]
    return "Dense reference (teacher) test accuracy: " + ", ".join(parts) + ".\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20,lenet5_wide")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds --first-seed .. + --seeds - 1 (default: 0)")
    p.add_argument("--dense-epochs", type=int, default=3)
    p.add_argument("--epochs", default="1,4", help="fine-tuning lengths, comma-separated")
    p.add_argument("--targets", default="2,4,8,16", help="MACs compression targets (uniform allocation)")
    p.add_argument("--scheme", default="channel", choices=["channel", "tucker2"])
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--temperatures", default="4", help="distill.temperature values, comma-separated")
    p.add_argument("--calibration-images", type=int, default=256)
    p.add_argument("--inits", default="weight,data,data_sequential", help="posthoc.init_decomposition values")
    p.add_argument("--lrs", default="", help="fine-tuning rates (train.lr) run besides the data set's, comma-separated")
    p.add_argument("--quick", action="store_true", help="the smoke form: first model, 1 seed, targets 4,8, "
                                                        "1 epoch of fine-tuning, 1 dense epoch")
    p.add_argument("--storage", default="runs/distill_init")
    p.add_argument("--compact", action="store_true",
                   help="one row per model, target and fine-tuning length, one column per init and distillation")
    p.add_argument("--out")
    args = p.parse_args()
    if args.quick:
        args.models, args.seeds, args.targets = args.models.split(",")[0], 1, "4,8"
        args.epochs, args.dense_epochs = "1", 1
    torch.set_num_threads(1)
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    from rank_search.allocation import LayerMacs, uniform_allocation
    from rank_search.data import dataset_info
    from rank_search.models import create_model_for

    info = dataset_info(args.dataset)
    shape = (info.in_channels, info.image_size, info.image_size)
    models = args.models.split(",")
    targets = [float(t) for t in args.targets.split(",")]
    lengths = [int(e) for e in args.epochs.split(",")]
    inits = args.inits.split(",")
    if "weight" not in inits:
        p.error("--inits must include weight, the baseline of the paired differences")
    temperatures = [float(t) for t in args.temperatures.split(",")]
    rates = [None] + [float(r) for r in args.lrs.split(",") if r]
    variants = [(init, w, t, lr) for init in inits for lr in rates
                for w, t in [(0.0, 0.0)] + [(args.distill_weight, t) for t in temperatures]]
    rows: dict[tuple, list[float]] = {}
    for model in models:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            dense = _dense(model, args.dataset, seed, args.dense_epochs, storage)
            got = cached_json(dense[:-3] + ".json", lambda: _dense_accuracy(dense, model, args.dataset, seed))
            rows.setdefault((model, "dense"), []).append(got["test_accuracy"])
            torch.manual_seed(seed)
            macs = LayerMacs(create_model_for(model, info), shape)
            for target in targets:
                ranks = uniform_allocation(macs, target, scheme=args.scheme).to_dict()
                base = dict(model=model, dataset=args.dataset, method="posthoc", ranks=ranks, scheme=args.scheme,
                            seed=seed, init=dense)
                tag = f"{model}-{args.scheme}-t{target:g}-s{seed}"
                for init in inits:
                    knobs = {"train.threads": 1, "posthoc.init_decomposition": init,
                             "posthoc.calibration_images": args.calibration_images}
                    got = cached_json(os.path.join(storage, f"{tag}-{init}-before.json"),
                                      lambda: _before({**base, "epochs": 1, "settings": knobs}))
                    rows.setdefault((model, target, init, "before"), []).append(got["test_accuracy"])
                    rows.setdefault((model, target, init, "decompose_s"), []).append(got["seconds"])
                    for epochs in lengths:
                        for _, weight, temp, lr in (v for v in variants if v[0] == init):
                            settings = {**knobs, **({"distill.weight": weight, "distill.temperature": temp}
                                                    if weight else {}), **({"train.lr": lr} if lr else {})}
                            name = (f"{tag}-{init}-d{weight:g}" + (f"-T{temp:g}" if weight else "")
                                    + (f"-lr{lr:g}" if lr else "") + f"-e{epochs}.json")
                            got = cached_json(os.path.join(storage, name),
                                              lambda: _after({**base, "epochs": epochs, "settings": settings}))
                            key = (model, target, init, weight, temp, lr)
                            rows.setdefault((*key, epochs), []).append(got["test_accuracy"])
                            rows.setdefault((*key, "epoch_s"), []).append(got["epoch_seconds"])
                            if not math.isnan(got["macs_compression"]):
                                rows.setdefault((model, target, "macs"), []).append(got["macs_compression"])
    command = (f"`.venv/bin/python benchmarks/distill_init.py --models {args.models} --dataset {args.dataset} "
               f"--seeds {args.seeds} --dense-epochs {args.dense_epochs} --epochs {args.epochs} --targets "
               f"{args.targets} --scheme {args.scheme} --distill-weight {args.distill_weight:g} --temperatures "
               f"{args.temperatures} --calibration-images {args.calibration_images} --inits {args.inits}"
               + (f" --lrs {args.lrs}`" if args.lrs else "`"))
    if args.compact:
        emit(_compact(rows, models, targets, lengths, variants), args.out)
        return
    lines = [f"## Data-aware decomposition and distillation for posthoc ({dt.date.today()}, {platform.node()}, "
             f"{os.cpu_count()} cores)", "",
             f"Command: {command}. One dense reference per seed and model ({args.dense_epochs} epochs), the uniform "
             f"allocation ({args.scheme}) at each target, posthoc from it. Test accuracy, median over "
             f"{args.seeds} seed(s); in brackets the paired difference to weight init without distillation "
             "(median [min, max]). Epoch s: median seconds per fine-tuning epoch (teacher included), one torch "
             "thread; decompose s: the decomposition (calibration included).", "",
             "| model | target | MACs x | variant | before FT | "
             + " | ".join(f"after {e} ep" for e in lengths) + " | epoch s | decompose s |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in lengths) + " | --- | --- |"]
    for model in models:
        for target in targets:
            for v in variants:
                before = rows[(model, target, v[0], "before")]
                after = [_cell(rows[(model, target, *v, e)], rows[(model, target, *BASELINE, e)]) for e in lengths]
                lines.append(
                    f"| {model} | {target:g}x | {statistics.median(rows[(model, target, 'macs')]):.2f} | "
                    f"{_label(*v)} | "
                    f"{_cell(before, rows[(model, target, 'weight', 'before')])} | {' | '.join(after)} | "
                    f"{statistics.median(rows[(model, target, *v, 'epoch_s')]):.2f} | "
                    f"{statistics.median(rows[(model, target, v[0], 'decompose_s')]):.2f} |")
    emit("\n".join(lines) + "\n\n" + _teachers(rows, models), args.out)


if __name__ == "__main__":
    main()
