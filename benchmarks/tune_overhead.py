"""Tune overhead: the same trials through Ray Tune vs a bare loop, at concurrency 1 and 2.

Every setting runs the identical list of trial configs (fixed ranks and knobs, no searcher
randomness), each trial on 1 CPU thread. Reported: wall time per setting (median over
--repeats), Tune / bare ratio at each concurrency, and the concurrency-2 throughput gain.

    .venv/bin/python benchmarks/tune_overhead.py --trials 8 --epochs 1 --repeats 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

SPACE = dict(model="lenet5_wide", dataset="mnist5k")


def trial_configs(n: int, epochs: int) -> list[dict]:
    from rank_search.data import dataset_info
    from rank_search.groups import group_names
    from rank_search.models import create_model_for

    model = create_model_for(SPACE["model"], dataset_info(SPACE["dataset"]))
    groups = group_names(model, "per_layer")
    methods = ["posthoc", "factorized", "full", "posthoc"]
    configs = []
    for i in range(n):
        cfg = {"method": methods[i % len(methods)], "train.batch_size": 32, "train.lr": 0.02,
               "space.model": SPACE["model"], "space.dataset": SPACE["dataset"], "space.epochs": epochs,
               "space.seed": i, "space.grouping": "per_layer", "space.data_root": None}
        if cfg["method"] == "posthoc":
            cfg["posthoc.finetune_epochs"] = 0
        cfg.update({f"rank.{g}": 0.2 + 0.1 * (i % 4) for g in groups})
        configs.append(cfg)
    return configs


def bare_one(cfg: dict) -> float:
    import torch

    from rank_search.run import train
    from rank_search.search.trial import spec_from_config

    torch.set_num_threads(1)
    return train(spec_from_config(cfg)).metrics["val_accuracy"]


def bare(configs: list[dict], concurrency: int) -> float:
    start = time.perf_counter()
    if concurrency == 1:
        for cfg in configs:
            bare_one(cfg)
    else:
        with mp.get_context("spawn").Pool(concurrency) as pool:
            pool.map(bare_one, configs, chunksize=1)
    return time.perf_counter() - start


def _tune_trainable(config):
    from rank_search.search.trainable import rank_search_trainable

    rank_search_trainable(config["cfg"])


def tuned(configs: list[dict], concurrency: int) -> float:
    from ray import tune

    from rank_search.search.tune_setup import trial_dirname

    storage = tempfile.mkdtemp(prefix="rs-bench-")
    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space={"cfg": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(storage_path=storage, name="bench", verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="append a markdown section to this file")
    args = p.parse_args()
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="rs-ray-"))
    configs = trial_configs(args.trials, args.epochs)
    times: dict[str, list[float]] = {k: [] for k in ("bare1", "tune1", "bare2", "tune2")}
    for r in range(args.repeats):
        # interleave the settings so machine noise hits all of them alike
        for key, fn, conc in (("bare1", bare, 1), ("tune1", tuned, 1), ("bare2", bare, 2), ("tune2", tuned, 2)):
            times[key].append(fn(configs, conc))
            print(f"repeat {r + 1}/{args.repeats} {key}: {times[key][-1]:.1f} s", file=sys.stderr, flush=True)
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        f"### Tune overhead ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
        "",
        f"Command: `.venv/bin/python benchmarks/tune_overhead.py --trials {args.trials} --epochs {args.epochs} "
        f"--repeats {args.repeats}`; {args.trials} fixed trials ({SPACE['model']} on {SPACE['dataset']}, "
        f"{args.epochs} epoch(s), 1 thread each), settings interleaved, medians of {args.repeats}.",
        "",
        "| setting | wall s (median) | all runs |",
        "| --- | --- | --- |",
        *[f"| {k} | {med[k]:.1f} | {', '.join(f'{t:.1f}' for t in times[k])} |" for k in times],
        "",
        f"- Tune / bare loop at concurrency 1: **{med['tune1'] / med['bare1']:.3f}** "
        f"(Tune adds {100 * (med['tune1'] / med['bare1'] - 1):+.1f}%)",
        f"- Tune / bare loop at concurrency 2: **{med['tune2'] / med['bare2']:.3f}** "
        f"(Tune adds {100 * (med['tune2'] / med['bare2'] - 1):+.1f}%)",
        f"- throughput gain of 2-way concurrency under Tune: **{med['tune1'] / med['tune2']:.2f}x** "
        f"(bare loop: {med['bare1'] / med['bare2']:.2f}x)",
        "",
    ]
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
