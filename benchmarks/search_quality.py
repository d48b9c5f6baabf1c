"""Search quality on the `demo` space: hypervolume of nsga2 vs tpe vs random at equal trial
budgets (and how many trials random needs to match nsga2), and per-layer searched plans vs
uniform-ratio plans at matched MACs compression.

Each sweep is a real `rank-search launch` (private local Ray, 2 concurrent trials); the
hypervolume uses the analysis package (reference: accuracy 0, compression 1.0 = dense).

    .venv/bin/python benchmarks/search_quality.py --seeds 3 --trials 16 --random-trials 24 --epochs 2
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys

import numpy as np
import yaml

from analysis.hypervolume import hypervolume, hypervolume_progress
from analysis.loading import in_trial_order, load_experiment
from analysis.summary import front, usable_trials
from search_spaces import get_space
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

OBJ = [("val_accuracy", "max"), ("macs_compression", "max")]
REF = (0.0, 1.0)
LEVELS = (2.0, 3.0, 4.0, 6.0)


def sweep(storage: str, name: str, space: str, searcher: str, seed: int, trials: int, epochs: int) -> str:
    path = os.path.join(storage, name)
    if not os.path.isdir(path):
        cmd = [sys.executable, "-m", "rank_search", "launch", "--space", space, "--num-samples", str(trials),
               "--epochs", str(epochs), "--searcher", searcher, "--seed", str(seed), "--storage", storage,
               "--name", name]
        print(f"running {name}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def points(path: str) -> np.ndarray:
    exp = load_experiment(path)
    t = in_trial_order(usable_trials(exp))
    return t[[m for m, _ in OBJ]].to_numpy(dtype=float)


def best_accuracy_at(path: str, level: float) -> float:
    """Best validation accuracy among finished trials with MACs compression >= level."""
    t = usable_trials(load_experiment(path))
    t = t[t["macs_compression"] >= level]
    return float(t["val_accuracy"].max()) if len(t) else float("nan")


def uniform_space(storage: str, epochs: int) -> str:
    plain = get_space("demo").to_plain()
    plain["ranks"]["grouping"] = "uniform"
    plain["name"] = "demo_uniform"
    path = os.path.join(storage, "demo_uniform.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(plain, fh)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--random-trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--storage", default="runs/search_quality")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    os.makedirs(args.storage, exist_ok=True)
    storage = os.path.abspath(args.storage)
    seeds = list(range(args.seeds))
    hv: dict[str, list[float]] = {"nsga2": [], "tpe": [], "random": []}
    progress_random: list[list[float]] = []
    paths: dict[tuple[str, int], str] = {}
    for seed in seeds:
        for searcher in hv:
            n = args.random_trials if searcher == "random" else args.trials
            path = sweep(storage, f"{searcher}-s{seed}", "demo", searcher, seed, n, args.epochs)
            paths[(searcher, seed)] = path
            pts = points(path)
            prog = hypervolume_progress(pts, [d for _, d in OBJ], REF)
            hv[searcher].append(float(prog[min(args.trials, len(prog)) - 1]))
            if searcher == "random":
                progress_random.append([float(v) for v in prog])
    uni = uniform_space(storage, args.epochs)
    for seed in seeds:
        paths[("uniform", seed)] = sweep(storage, f"uniform-s{seed}", uni, "nsga2", seed, args.trials, args.epochs)

    target = statistics.median(hv["nsga2"])
    need = []
    for prog in progress_random:
        hit = next((k + 1 for k, v in enumerate(prog) if v >= target), None)
        need.append(hit)
    lines = [
        f"## Search quality on `demo` ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
        "",
        f"Command: `.venv/bin/python benchmarks/search_quality.py --seeds {args.seeds} --trials {args.trials} "
        f"--random-trials {args.random_trials} --epochs {args.epochs}`. Each sweep is a real `rank-search launch` "
        f"of the `demo` space ({args.epochs} epochs per trial, per-layer ranks, all methods); objectives "
        "val_accuracy (max) and macs_compression (max); hypervolume reference (accuracy 0, compression 1.0).",
        "",
        f"| searcher | hypervolume after {args.trials} trials, per seed | median |",
        "| --- | --- | --- |",
        *[f"| {s} | {', '.join(f'{v:.4f}' for v in vals)} | **{statistics.median(vals):.4f}** |"
          for s, vals in hv.items()],
        "",
        f"Trials random search needed to reach the nsga2 median ({target:.4f}), per seed, within "
        f"{args.random_trials}: {', '.join(str(n) if n else f'not reached (>{args.random_trials})' for n in need)}.",
        "",
        "Per-layer searched plans (`per_layer`, the nsga2 sweeps above) vs one uniform ratio (`uniform`, nsga2, "
        "same budget): best validation accuracy among trials reaching at least the given MACs compression, "
        "median over seeds.",
        "",
        "| MACs compression >= | per-layer | uniform | difference |",
        "| --- | --- | --- | --- |",
    ]
    for level in LEVELS:
        per = [best_accuracy_at(paths[("nsga2", s)], level) for s in seeds]
        uni_acc = [best_accuracy_at(paths[("uniform", s)], level) for s in seeds]
        pm, um = float(np.nanmedian(per)), float(np.nanmedian(uni_acc))
        lines.append(f"| {level:g}x | {pm:.4f} | {um:.4f} | {pm - um:+.4f} |")
    text = "\n".join(lines) + "\n"
    emit(text, args.out)


if __name__ == "__main__":
    main()
