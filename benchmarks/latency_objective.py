"""Latency objective vs MACs objective: the same space, budget and seeds searched once with
``--objectives val_accuracy:max,macs_compression:max`` (the default) and once with
``val_accuracy:max,latency_speedup:max``, and a third time with the latency objective *and* a
latency budget (``ranks.budget: latency``: the target is a latency speed-up in
``--latency-target``, the ranks allocated from measured layer times); which front is faster at
equal accuracy?

Every trial reports the latency it measured during its own run, on a machine shared with the
other trial, so the speed-ups of the two sweeps were measured under different loads. After both
sweeps of a seed, every trial's compact model (its final ``compact.pt``) and the dense
reference are therefore timed again, all interleaved in one run (``rank_search.latency``), at the
space's latency batch size with 1 thread; the fronts below use these re-measured speed-ups.

    .venv/bin/python benchmarks/latency_objective.py --seeds 3 --trials 16

Reported per arm (medians over seeds, then per seed): the log hypervolume in (log2 measured
speed-up, validation accuracy above the dense reference minus 5 pt); the largest measured
speed-up among trials within 0.5 / 1 / 2 pt of the dense validation accuracy, and the test
accuracy of that trial; the rank correlation of MACs compression and measured speed-up over
all trials. Sweeps stay under --storage; a rerun skips the finished ones.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics

import numpy as np
import torch

from analysis.hypervolume import hypervolume
from analysis.loading import load_experiment
from analysis.summary import usable_trials
from rank_search.checkpoint import load_compact
from rank_search.data import dataset_info
from rank_search.latency import median_forward_ms
from rank_search.models import create_model_for
from rank_search.weights import load_weights
from search_spaces import get_space
from search_quality import dense_accuracy, fmt, sweep  # benchmarks/ is on sys.path
from _report import emit

ARMS = {"macs": "val_accuracy:max,macs_compression:max", "latency": "val_accuracy:max,latency_speedup:max",
        "budget": "val_accuracy:max,latency_speedup:max"}
# the budget arm searches a latency target (ranks.budget: latency, --latency-target), the others the space's
BUDGET_ARMS = ("budget",)
MARGIN = 0.05
WITHIN = (0.005, 0.01, 0.02)  # accuracy drops at which the fastest trial is read off


def remeasure(paths: dict[str, str], space, *, batch_size: int, repeats: int) -> dict[str, list[dict]]:
    """Every usable trial of each sweep, with ``speedup`` = dense / compact median ms, all models
    timed interleaved in one run (1 thread, one random batch)."""
    torch.set_num_threads(1)
    info = dataset_info(space.dataset, data_root=space.data_root)
    dense = create_model_for(space.model, info)
    load_weights(dense, os.path.join(next(iter(paths.values())), "dense.pt"), what="dense reference")
    rows: dict[str, list[dict]] = {}
    models = [dense.eval()]
    for arm, path in paths.items():
        rows[arm] = []
        for _, t in usable_trials(load_experiment(path)).iterrows():
            ckpt = os.path.join(path, str(t["folder"]), str(t["checkpoint"]), "compact.pt")
            rows[arm].append({"val": float(t["val_accuracy"]), "test": float(t["test_accuracy"]),
                              "macs_x": float(t["macs_compression"]),
                              "trial_speedup": float(t.get("latency_speedup", float("nan"))),
                              "index": len(models)})
            models.append(load_compact(ckpt).eval())
    x = torch.randn((batch_size, info.in_channels, info.image_size, info.image_size),
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ms = median_forward_ms(models, x, repeats=repeats, warmup=2)
    for arm in rows:
        for r in rows[arm]:
            r["ms"] = ms[r["index"]]
            r["speedup"] = ms[0] / ms[r["index"]]
    return rows


def log_hv(rows: list[dict], floor: float) -> float:
    pts = np.array([[math.log2(r["speedup"]), r["val"]] for r in rows if r["speedup"] > 1 and r["val"] > floor])
    return hypervolume(pts, ["max", "max"], (0.0, floor)) if len(pts) else 0.0


def fastest_within(rows: list[dict], dense_val: float, drop: float) -> dict | None:
    ok = [r for r in rows if r["val"] >= dense_val - drop - 1e-9]
    return max(ok, key=lambda r: (r["speedup"], r["val"])) if ok else None


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="demo")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--latency-batch", type=int, default=64,
                   help="the batch every trial measures its latency at (the space's latency_batch_size)")
    p.add_argument("--repeats", type=int, default=30, help="timed rounds of the re-measurement")
    p.add_argument("--arms", default=",".join(ARMS), help=f"which of {', '.join(ARMS)} to run (macs always)")
    p.add_argument("--latency-target", default="1.05,1.6",
                   help="LOW,HIGH: the budget arm's latency speed-up target range (log scale)")
    p.add_argument("--storage", default="runs/latency_objective")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    arms = {a: ARMS[a] for a in ARMS if a == "macs" or a in args.arms.split(",")}
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    space = get_space(args.space)
    base = {**space.to_plain(), "latency_batch_size": args.latency_batch}
    tag = os.path.splitext(os.path.basename(args.space))[0]
    seeds = list(range(args.seeds))
    per_seed: dict[int, dict] = {}
    for seed in seeds:
        paths = {}
        for arm, objectives in arms.items():
            plain = base
            if arm in BUDGET_ARMS:
                low, high = (float(v) for v in args.latency_target.split(","))
                plain = {**base, "ranks": {**base["ranks"], "budget": "latency",
                                           "target": {"float": [low, high], "log": True}}}
            info = sweep(storage, f"{tag}-{arm}-{args.trials}-s{seed}", plain, ["--objectives", objectives], seed,
                         args.trials, args.epochs)
            paths[arm] = info["path"]
        rows = remeasure(paths, space, batch_size=args.latency_batch, repeats=args.repeats)
        per_seed[seed] = {"rows": rows, "dense_val": dense_accuracy(list(paths.values()), "val_accuracy")}
    lines = [
        f"## Latency objective vs MACs objective ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__})",
        "",
        f"Command: `.venv/bin/python benchmarks/latency_objective.py --space {args.space} --seeds {args.seeds} "
        f"--trials {args.trials} --epochs {args.epochs} --latency-batch {args.latency_batch} --repeats "
        f"{args.repeats} --arms {','.join(arms)} --latency-target {args.latency_target} --storage "
        f"{os.path.relpath(storage)}`. {len(arms)} `rank-search launch` sweeps per seed of the "
        f"same space (`latency_batch_size: {args.latency_batch}`), {args.trials} trials, {args.epochs} epochs, seed k "
        f"for the searcher and the training in both: **macs** = `--objectives {ARMS['macs']}` (the default), "
        f"**latency** = `--objectives {ARMS['latency']}`, **budget** = the latency objective with `ranks.budget: latency`, "
        f"target speed-up in [{args.latency_target}] (log). Speed-ups re-measured after the sweeps: every trial's "
        f"compact model and the dense reference interleaved in one run (batch {args.latency_batch}, 1 thread, "
        f"median of {args.repeats} rounds).",
        "",
        "| arm | log HV (log2 speed-up x val acc above dense - 5 pt) per seed | median | "
        + " | ".join(f"fastest within {d * 100:g} pt: speed-up (test acc), median" for d in WITHIN)
        + " | Spearman(MACs x, speed-up) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in WITHIN) + " | --- |",
    ]
    for arm in arms:
        hvs = [log_hv(per_seed[s]["rows"][arm], per_seed[s]["dense_val"] - MARGIN) for s in seeds]
        cells = []
        for d in WITHIN:
            picks = [fastest_within(per_seed[s]["rows"][arm], per_seed[s]["dense_val"], d) for s in seeds]
            sp = [q["speedup"] for q in picks if q]
            te = [q["test"] for q in picks if q]
            cells.append(f"{statistics.median(sp):.2f}x ({statistics.median(te):.4f}); per seed "
                         + ", ".join(f"{q['speedup']:.2f}x" if q else "-" for q in picks) if sp else "-")
        allrows = [r for s in seeds for r in per_seed[s]["rows"][arm]]
        rho = spearman([r["macs_x"] for r in allrows], [r["speedup"] for r in allrows])
        lines.append(f"| {arm} | {', '.join(fmt(v) for v in hvs)} | **{fmt(statistics.median(hvs))}** | "
                     + " | ".join(cells) + f" | {rho:.2f} |")
    def diffs(arm: str) -> list[float]:
        return [log_hv(per_seed[s]["rows"][arm], per_seed[s]["dense_val"] - MARGIN)
                - log_hv(per_seed[s]["rows"]["macs"], per_seed[s]["dense_val"] - MARGIN) for s in seeds]

    drift = [abs(r["trial_speedup"] / r["speedup"] - 1) for s in seeds for a in arms for r in per_seed[s]["rows"][a]
             if r["trial_speedup"] == r["trial_speedup"]]
    lines += [""] + [f"Paired difference {arm} - macs in log HV per seed: {', '.join(fmt(d, '+.4f') for d in diffs(arm))} "
                     f"(median {fmt(statistics.median(diffs(arm)), '+.4f')})." for arm in arms if arm != "macs"]
    lines += [f"Dense val accuracy per seed: "
                  f"{', '.join(fmt(per_seed[s]['dense_val']) for s in seeds)}.",
              "", f"The trials' own in-run speed-ups differ from the re-measured ones by a median "
                  f"{statistics.median(drift) * 100:.0f}% (max {max(drift) * 100:.0f}%)." if drift else "",
              f"\nSweeps: `{os.path.relpath(storage)}/`."]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
