"""Search quality: the budget-driven default (dense reference, sensitivity profile, target
allocation, warm start, the refine searcher) against today's search (random per-layer ratios, from scratch),
a uniform-ratio grid of the same size and each profile proxy's allocation alone (no search).

Every arm is a real `rank-search launch` (private local Ray, 2 concurrent trials) of a space
derived from one base space (`demo` by default); seed k of every arm trains with seed k (paired
data order and initialisation), the searcher seed is k too. Sweeps stay on disk under
--storage and a rerun skips the finished ones, so a later session can continue.

    .venv/bin/python benchmarks/search_quality.py --seeds 3 --trials 16 --random-trials 64

Reported per arm: log hypervolume (log2 MACs compression x accuracy above the dense reference
minus 5 pt), best test accuracy at >= 2/4/8/16/32x, paired differences to the default per seed,
wall time, trial CPU time (every trial's training time plus the dense reference and profile) and
hypervolume per CPU-hour of trial time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import yaml

from analysis.hypervolume import hypervolume
from analysis.loading import in_trial_order, load_experiment
from analysis.pareto import pareto_mask
from analysis.quality import METHOD_COLUMN
from analysis.summary import usable_trials
from rank_search.allocation import TOLERANCE
from search_spaces import get_space
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

LEVELS = (2.0, 4.0, 8.0, 16.0, 32.0)
MARGIN = 0.05
REACH = 1.0 - TOLERANCE  # a trial reaches a compression within the allocation's 5%


def arms(base: dict, trials: int, random_trials: int) -> dict[str, tuple[dict, list[str]]]:
    """arm name -> (space mapping, extra launch flags)."""
    scratch = {m: {**k, **({"init": "scratch"} if m in ("posthoc", "deeptwist", "trp", "lrpet") else {})}
               for m, k in base["methods"].items()}
    per_layer = {"grouping": "per_layer", "ratio": {"float": [0.05, 0.6]}}
    budget = base["ranks"]
    out = {
        "default": (base, []),
        # from the dense reference with half the epochs (1): the same front in half the CPU time?
        "default-1ep": (base, ["--epochs", "1"]),
        # 1 epoch per trial from the default's (2-epoch) dense reference: the reference is paid once
        "default-1ep-dense": (base, ["--epochs", "1"]),
        # every method from scratch, same search: what the dense reference buys
        "default-scratch": ({**base, "methods": scratch}, []),
        "random-per-layer": ({**base, "methods": scratch, "ranks": per_layer}, ["--searcher", "random",
                                                                                "--warm-start", "0"]),
        # the same random per-layer search with the space's methods as given (from the dense reference):
        # what the search adds when both start from the same trained weights
        "random-per-layer-dense": ({**base, "ranks": per_layer}, ["--searcher", "random", "--warm-start", "0"]),
        "uniform-grid": ({**base, "ranks": {**budget, "allocations": ["uniform"]}}, ["--warm-start", str(trials)]),
    }
    for proxy in ("energy", "bn", "finetune"):
        out[f"alloc-{proxy}"] = ({**base, "ranks": {**budget, "allocations": ["sensitivity"], "proxy": proxy}},
                                 ["--warm-start", str(trials)])
    # the same space searched by NSGA-II (the default searcher before `refine`)
    out["default-nsga2"] = (base, ["--searcher", "nsga2"])
    return out


def sweep(storage: str, name: str, space: dict, flags: list[str], seed: int, trials: int, epochs: int) -> dict:
    """Run (or find) one sweep; returns its path and wall seconds."""
    path = os.path.join(storage, name)
    done = os.path.join(path, "benchmark.json")
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as fh:
            return json.load(fh)
    if os.path.isdir(path):  # an interrupted earlier run of this sweep: start it again
        import shutil

        shutil.rmtree(path)
    space_file = os.path.join(storage, f"{name}.yaml")
    with open(space_file, "w", encoding="utf-8") as fh:
        yaml.safe_dump({**space, "seed": seed, "name": name}, fh, sort_keys=False)
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", space_file, "--num-samples", str(trials),
           "--epochs", str(epochs), "--searcher-seed", str(seed), "--train-seed", str(seed), "--storage", storage,
           "--name", name, "--max-concurrent", "2", *flags]
    print(f"running {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = {"path": path, "seconds": time.perf_counter() - start}
    dense = os.path.join(path, "dense.yaml")
    if os.path.isfile(dense):
        with open(dense, encoding="utf-8") as fh:
            record = yaml.safe_load(fh)
        info["reference_seconds"] = float(record.get("seconds_total", 0.0))  # wall
        if "profile_task_seconds" in record:  # a profile measured in parallel parts: their summed time
            info["reference_cpu_seconds"] = (info["reference_seconds"] - float(record["profile_seconds"])
                                             + float(record["profile_task_seconds"]))
    with open(done, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    return info


@functools.lru_cache(maxsize=None)
def sweep_trials(path: str):
    """A finished sweep's usable trials, read once per run of this script: every table reads the same
    sweeps (the trials-to-reach count alone reads each one up to 64 times). Shared, so callers take
    new frames from it and never modify it."""
    return usable_trials(load_experiment(path))


def dense_accuracy(paths: list[str], metric: str) -> float:
    """The dense reference's accuracy (the default arm's dense.yaml of the same seed)."""
    for p in paths:
        f = os.path.join(p, "dense.yaml")
        if os.path.isfile(f):
            with open(f, encoding="utf-8") as fh:
                return float(yaml.safe_load(fh)[metric])
    return float("nan")


def log_hv(path: str, floor: float, metric: str, first: int | None = None, front_by: str | None = None) -> float:
    """Log hypervolume of a sweep's trials (its first ``first``) in ``metric`` above ``floor``;
    ``front_by``: of the front chosen on that metric instead (the validation front, measured on
    test: what the trials a user would pick hold, without the lift of picking the best of many
    noisy test draws)."""
    t = sweep_trials(path)
    t = in_trial_order(t)
    if first is not None:
        t = t.iloc[:first]
    if front_by is not None and len(t):
        t = t[pareto_mask(np.column_stack([t["macs_compression"].to_numpy(float), t[front_by].to_numpy(float)]),
                          ["max", "max"])]
    pts = np.column_stack([np.log2(t["macs_compression"].to_numpy(float)), t[metric].to_numpy(float)])
    pts = pts[(pts[:, 0] > 0) & (pts[:, 1] > floor)]
    return hypervolume(pts, ["max", "max"], (0.0, floor)) if len(pts) else 0.0


def cpu_seconds(info: dict) -> float:
    """Trial CPU time of a sweep: every trial's training time (1 thread each) plus the dense
    reference and profile; independent of how many trials ran at once."""
    t = sweep_trials(info["path"])
    return float(t["time_total_s"].sum()) + float(info.get("reference_cpu_seconds", info.get("reference_seconds", 0.0)))


def epochs_trained(info: dict) -> int:
    """Training epochs a sweep ran: every trial's plus the dense reference's when the sweep trained
    it (not when it was given one with --dense). A cost measure the machine's load cannot skew."""
    t = sweep_trials(info["path"])
    n = int(t["epochs_run"].sum())
    dense = os.path.join(info["path"], "dense.yaml")
    if os.path.isfile(dense):
        with open(dense, encoding="utf-8") as fh:
            d = yaml.safe_load(fh)
        if d.get("source") == "trained":
            n += int(d["run"]["epochs"])
    return n


def best_at(path: str, level: float, metric: str, pick: str | None = None) -> float:
    """Best ``metric`` among the trials reaching ``level`` (within the allocation's 5%), or with
    ``pick``, the ``metric`` of the trial best on ``pick`` (test accuracy of the trial a user
    picks by validation accuracy: no selection on the test set)."""
    t = sweep_trials(path)
    t = t[t["macs_compression"] >= level * REACH]
    if not len(t):
        return float("nan")
    if pick is None:
        return float(t[metric].max())
    return float(t.sort_values([pick, "macs_compression"], ascending=False)[metric].iloc[0])


def train_dense(storage: str, tag: str, space, seed: int, epochs: int, run: bool = True) -> dict | None:
    """Train (or find) the dense reference of ``seed`` once with `rank-search train` (the space's model,
    data and train settings at their midpoints, 1 thread): every arm of that seed gets it by ``--dense``."""
    out = os.path.join(storage, f"{tag}-dense-e{epochs}-s{seed}")
    metrics = os.path.join(out, "metrics.json")
    if not os.path.isfile(metrics):
        if not run:
            return None
        from rank_search.search.reference import train_settings  # the settings a sweep's own reference uses

        sets = [f"{k}={v}" for k, v in train_settings(space).items()] + ["train.threads=1"]
        cmd = [sys.executable, "-m", "rank_search", "train", "--model", space.model, "--dataset", space.dataset,
               "--method", "full", "--epochs", str(epochs), "--train-seed", str(seed), "--out", out, "--overwrite",
               *[a for kv in sets for a in ("--set", kv)]]
        print(f"training the dense reference of seed {seed} ({epochs} epochs)", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(metrics, encoding="utf-8") as fh:
        m = json.load(fh)
    return {"weights": os.path.join(out, "compact.pt"), "val_accuracy": m["val_accuracy"],
            "test_accuracy": m["test_accuracy"], "seconds": m["wall_seconds"]}


def fmt(v: float, spec: str = ".4f") -> str:
    return "-" if v != v else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="demo")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--random-trials", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--arms", help="comma-separated subset of arms to run")
    p.add_argument("--random-seeds", type=int, help="seeds of the long random sweeps (default --seeds)")
    p.add_argument("--dense-epochs", type=int,
                   help="train one dense reference per seed for this many epochs (rank-search train) and give it "
                        "to every arm by --dense, with the default arm's profile by --profile (default: each arm's "
                        "space trains its own reference at --epochs)")
    p.add_argument("--storage", default="runs/search_quality3")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: report the finished sweeps under --storage (of a run still going on)")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    storage = os.path.abspath(args.storage)
    os.makedirs(storage, exist_ok=True)
    base_space = get_space(args.space)
    base = base_space.to_plain()
    tag = os.path.splitext(os.path.basename(args.space))[0]  # a space path names its sweeps by file name
    plan = arms(base, args.trials, args.random_trials)
    if args.arms:
        plan = {k: v for k, v in plan.items() if k in args.arms.split(",")}
    seeds = list(range(args.seeds))
    runs: dict[tuple[str, int], dict] = {}
    # arms first, seeds inside (a cut-short run still compares the arms that matter most): the
    # default, the uniform grid, today's random search at the same and at the large budget, then
    # each proxy's allocation alone
    randoms = [a for a in ("random-per-layer", "random-per-layer-dense") if a in plan]
    order = [a for a in ("default", "uniform-grid", *randoms) if a in plan]
    jobs = [(arm, seed, args.trials) for arm in order for seed in seeds]
    if args.random_trials > args.trials:
        jobs += [(f"{arm}-big", seed, args.random_trials) for arm in randoms
                 for seed in seeds[: args.random_seeds or len(seeds)]]
    # then the rest, the most telling first
    rest = ["default-1ep", "default-1ep-dense", "alloc-bn", "default-scratch", "alloc-finetune", "alloc-energy", "default-nsga2"]
    rest = [a for a in rest if a in plan] + [a for a in plan if a not in order and a not in rest]
    jobs += [(arm, seed, args.trials) for arm in rest for seed in seeds]
    given: dict[int, dict] = {}
    for arm, seed, n in jobs:
        space, flags = plan[arm.removesuffix("-big")]
        if args.dense_epochs:
            if seed not in given:
                given[seed] = train_dense(storage, tag, base_space, seed, args.dense_epochs, run=not args.report_only)
            if given[seed] is not None:
                flags = [*flags, "--dense", given[seed]["weights"]]
                # the profile of those weights, measured once by the default arm of the seed
                if arm != "default" and space["ranks"].get("allocation") == "sensitivity" and ("default", seed) in runs:
                    flags = [*flags, "--profile", runs[("default", seed)]["path"]]
        elif arm.startswith(("uniform-grid", "alloc-", "default-1ep-dense")) and ("default", seed) in runs:
            # the same dense reference as the default arm of this seed (trained once)
            flags = [*flags, "--dense", os.path.join(runs[("default", seed)]["path"], "dense.pt")]
        name = f"{tag}-{arm.removesuffix('-big')}-{n}-s{seed}"
        if args.report_only:
            done = os.path.join(storage, name, "benchmark.json")
            if os.path.isfile(done):
                with open(done, encoding="utf-8") as fh:
                    runs[(arm, seed)] = json.load(fh)
            continue
        runs[(arm, seed)] = sweep(storage, name, space, flags, seed, n, args.epochs)
    names = list(dict.fromkeys(a for a, _ in runs))
    dense = {s: dense_accuracy([runs[(a, s)]["path"] for a in names if (a, s) in runs], "val_accuracy")
             for s in seeds}
    dense_test = {s: dense_accuracy([runs[(a, s)]["path"] for a in names if (a, s) in runs], "test_accuracy")
                  for s in seeds}
    lines = [
        f"## Search quality: budget-driven default vs random, uniform and allocation alone "
        f"({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
        "",
        f"Command: `.venv/bin/python benchmarks/search_quality.py --space {args.space} --seeds {args.seeds} "
        f"--trials {args.trials} --random-trials {args.random_trials} --epochs {args.epochs}"
        + (f" --random-seeds {args.random_seeds}" if args.random_seeds else "")
        + (f" --dense-epochs {args.dense_epochs}" if args.dense_epochs else "")
        + (f" --arms {args.arms}" if args.arms else "") + f" --storage {os.path.relpath(storage)}`. Every arm is a real "
        f"`rank-search launch` ({args.epochs} epochs per trial, 2 concurrent trials, seed k trains with seed k in "
        "every arm). Arms: **default** = the space as shipped (dense reference, sensitivity profile, searched "
        "target and allocation, warm start, then the `refine` searcher); **default-1ep** = the same with 1 epoch "
        "per trial (and for the dense reference); **default-scratch** = the same with every method from scratch; "
        "**default-1ep-dense** = 1 epoch per trial from the default arm's dense reference (2 epochs, paid once); "
        "**default-nsga2** = the same searched by NSGA-II; **random-per-layer** = today's search before this change "
        "(per-layer ratios in [0.05, 0.6], random sampler, every method from scratch, no warm start), at "
        f"{args.trials} and {args.random_trials} trials; **random-per-layer-dense** = the same with the space's "
        f"methods as given (from the dense reference); **uniform-grid** = {args.trials} uniform-ratio trials at "
        "targets spread over the range (every method in turn), no search; **alloc-PROXY** = the same grid with the "
        "profile allocation of that proxy, no search."
        + (f" Every arm of seed k starts from one dense reference trained for {args.dense_epochs} epochs with seed k "
           "(`rank-search train --method full`, given by `--dense`; its cost is not in the arms' columns: "
           + ", ".join(f"{given[s]['seconds'] / 60:.1f}" for s in seeds if given.get(s)) + " min per seed)."
           if args.dense_epochs and given else ""),
        "",
        f"Log hypervolume: area in (log2 MACs compression, validation accuracy) above the dense reference's "
        f"validation accuracy minus {MARGIN * 100:.0f} pt (dense val accuracy per seed: "
        f"{', '.join(fmt(dense[s]) for s in seeds)}; test: {', '.join(fmt(dense_test[s]) for s in seeds)}).",
        "",
        "| arm | trials | log HV per seed | median | paired diff to default (median) | wall min (median) | "
        "trial CPU min (median) | log HV per CPU-hour | epochs trained (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    hv: dict[str, list[float]] = {}
    seeds_of = {arm: [s for s in seeds if (arm, s) in runs] for arm in names}
    for arm in names:
        vals = [log_hv(runs[(arm, s)]["path"], dense[s] - MARGIN, "val_accuracy") for s in seeds_of[arm]]
        hv[arm] = vals
        secs = [runs[(arm, s)]["seconds"] for s in seeds_of[arm]]
        base_hv = dict(zip(seeds_of.get("default", []), hv.get("default", [])))
        diffs = [v - base_hv[s] for v, s in zip(vals, seeds_of[arm]) if s in base_hv]  # paired by seed
        n = args.random_trials if arm.endswith("-big") else args.trials
        cpu = [cpu_seconds(runs[(arm, s)]) for s in seeds_of[arm]]
        per_cpu_h = statistics.median(vals) / (statistics.median(cpu) / 3600)
        lines.append(f"| {arm} | {n} | {', '.join(fmt(v) for v in vals)} (seeds {', '.join(map(str, seeds_of[arm]))}) | **{fmt(statistics.median(vals))}** | "
                     f"{fmt(statistics.median(diffs) if diffs else float('nan'), '+.4f')} | {statistics.median(secs) / 60:.1f} | "
                     f"{statistics.median(cpu) / 60:.1f} | {fmt(per_cpu_h, '.3f')} | "
                     f"{statistics.median(epochs_trained(runs[(arm, s)]) for s in seeds_of[arm]):g} |")
    if "default" in hv:
        from rank_search.search.warm_start import warm_start_size

        n_warm = warm_start_size(args.trials, len(base["methods"]))
        warm = [log_hv(runs[("default", s)]["path"], dense[s] - MARGIN, "val_accuracy", first=n_warm)
                for s in seeds_of["default"]]
        diffs = [a - b for a, b in zip(hv["default"], warm)]
        lines += ["", f"The default's own warm start (its first {n_warm} trials, enqueued) reaches a log hypervolume "
                      f"of {', '.join(fmt(v) for v in warm)} (median {fmt(statistics.median(warm))}); the searched "
                      f"trials after it add {', '.join(fmt(d, '+.4f') for d in diffs)} per seed."]
        counts = [sweep_trials(runs[("default", s)]["path"])[METHOD_COLUMN].value_counts()
                  for s in seeds_of["default"]]
        lines += ["", "The default's trials per method, per seed: " + "; ".join(
            f"{m} {' / '.join(str(int(c.get(m, 0))) for c in counts)}"
            for m in sorted(set().union(*(c.index for c in counts)))) + "."]
    lines += ["", "The same trials' log hypervolume on the test set (test accuracy above the dense reference's "
                  f"test accuracy minus {MARGIN * 100:.0f} pt): the search selected on validation accuracy, so this "
                  "is what its front holds on images it never saw (the best of many trials near one compression is "
                  "lifted by the validation set's noise; on mnist5k one of its 500 images is 0.2 pt). The test "
                  "front is the best on test, so it is lifted by the test set's noise alike; the validation front "
                  "on test takes the trials on the validation front (what a user picks from) and measures them on "
                  "test, with no selection on the test set.", "",
              "| arm | test log HV per seed | median | paired diff to default (median) | validation front on test, per "
              "seed | median | paired diff to default (median) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    test_hv = {(arm, by): [log_hv(runs[(arm, s)]["path"], dense_test[s] - MARGIN, "test_accuracy", front_by=by)
                           for s in seeds_of[arm]] for arm in names for by in (None, "val_accuracy")}
    for arm in names:
        cells = []
        for by in (None, "val_accuracy"):
            base = dict(zip(seeds_of.get("default", []), test_hv.get(("default", by), [])))
            diffs = [v - base[s] for v, s in zip(test_hv[(arm, by)], seeds_of[arm]) if s in base]
            cells += [", ".join(fmt(v) for v in test_hv[(arm, by)]), f"**{fmt(statistics.median(test_hv[(arm, by)]))}**",
                      fmt(statistics.median(diffs) if diffs else float("nan"), "+.4f")]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    bands = (2.0, 2.5, 3.0, 4.0, 8.0, 16.0, 32.0)
    lines += ["", "Where each arm's trials land and what they hold: trials per MACs compression band (all seeds "
                  "pooled, every method) and their median test accuracy. A front is made of the best of them, so an "
                  "arm with many trials in a band gets the lucky ones there.", "",
              "| arm | " + " | ".join(f"{a:g}-{b:g}x" for a, b in zip(bands, bands[1:])) + " |",
              "| --- | " + " | ".join("---" for _ in bands[1:]) + " |"]
    for arm in names:
        t = [sweep_trials(runs[(arm, s)]["path"]) for s in seeds_of[arm]]
        c = np.concatenate([x["macs_compression"].to_numpy(float) for x in t])
        acc = np.concatenate([x["test_accuracy"].to_numpy(float) for x in t])
        cells = []
        for a, b in zip(bands, bands[1:]):
            inside = (c >= a * REACH) & (c < b * REACH)
            cells.append(f"{int(inside.sum())}: {fmt(float(np.median(acc[inside])))}" if inside.any() else "0")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for big in (f"{a}-big" for a in ("random-per-layer", "random-per-layer-dense")):
        if "default" not in hv or big not in hv:
            continue
        target = statistics.median(hv["default"])
        need = []
        for s in seeds_of[big]:
            path = runs[(big, s)]["path"]
            hit = next((k for k in range(1, args.random_trials + 1)
                        if log_hv(path, dense[s] - MARGIN, "val_accuracy", first=k) >= target), None)
            need.append(hit)
        lines += ["", f"Trials `{big.removesuffix('-big')}` needed to reach the default's median log hypervolume at "
                      f"{args.trials} trials ({fmt(target)}), per seed: "
                      f"{', '.join(str(n) if n else f'not within {args.random_trials}' for n in need)}."]
    tables = (
        ("Best test accuracy among trials reaching the MACs compression (within 5%)", None),
        ("Test accuracy of the trial a user would pick: the best validation accuracy among trials reaching "
         "the MACs compression (within 5%), so no selection on the test set", "val_accuracy"),
    )
    for title, pick in tables:
        lines += ["", f"{title}; median over seeds (paired difference to the default: median, the range "
                      "of the per-seed differences, and on how many seeds the arm is above / below the default):", "",
                  "| arm | " + " | ".join(f">= {lv:g}x" for lv in LEVELS) + " |",
                  "| --- | " + " | ".join("---" for _ in LEVELS) + " |"]
        for arm in names:
            cells = []
            for lv in LEVELS:
                vals = [best_at(runs[(arm, s)]["path"], lv, "test_accuracy", pick) for s in seeds_of[arm]]
                paired = [s for s in seeds_of[arm] if ("default", s) in runs]
                base_vals = [best_at(runs[("default", s)]["path"], lv, "test_accuracy", pick) for s in paired]
                mine = [v for v, s in zip(vals, seeds_of[arm]) if s in paired]
                med = float(np.nanmedian(vals)) if any(v == v for v in vals) else float("nan")
                diffs = [a - b for a, b in zip(mine, base_vals) if a == a and b == b]
                cell = fmt(med)
                if diffs and arm != "default":
                    above, below = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
                    cell += (f" ({statistics.median(diffs):+.4f}; {min(diffs):+.4f}..{max(diffs):+.4f};"
                             f" {above} / {below})")
                cells.append(cell)
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    ref = [runs[("default", s)].get("reference_seconds") for s in seeds if ("default", s) in runs]
    tot = [runs[("default", s)]["seconds"] for s in seeds if ("default", s) in runs]
    if ref and all(r is not None for r in ref):
        share = statistics.median(r / t for r, t in zip(ref, tot))
        lines += ["", f"Dense reference + profile: {statistics.median(ref):.0f} s of the default sweep's "
                      f"{statistics.median(tot):.0f} s wall time (median share {share * 100:.0f}%)."]
    lines.append(f"\nSweeps: `{os.path.relpath(storage)}/`; `rank-search analyze` overlays any of them.")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
