"""Trace-driven replay of MO-ASHA on the suite's full-fidelity sweeps (fifo arms).

Each trial of a finished fifo sweep is replayed in its start order on ``--workers`` simulated
workers, epoch by epoch with the epoch times it really took; at every rung the trial is judged by
``rank_search.search.mo_asha.decide`` on the validation accuracies the trials really reported at
that epoch, and a stopped trial frees its worker. Reported per rule: the CPU share of the fifo
sweep it spends, and the validation log HV of the trials it lets finish against the fifo sweep's.
The trials themselves do not change (a real sweep's searcher would react to the stops), so this
chooses rung settings on the tuning tasks cheaply; real sweeps confirm them.

    .venv/bin/python benchmarks/suite/replay.py --arms uniform-grid,default
    .venv/bin/python benchmarks/suite/replay.py --signal   # how well a rung's accuracy predicts the last
    .venv/bin/python benchmarks/suite/replay.py --headroom # the grid's log HV over the union of all arms
    .venv/bin/python benchmarks/suite/replay.py --ablation # each part of the search switched off
    .venv/bin/python benchmarks/suite/replay.py --setup-share --storage runs/suite  # reference + profile
"""
from __future__ import annotations

import argparse
import heapq
import math
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

from run import HELD_OUT, MARGIN, TASKS, _usable, cpu_seconds, fmt, load_summaries, log_hv  # noqa: E402


def replay(s: dict, *, grace: int, eta: int, compressed_end: bool, floor: float | None, workers: int = 2,
           by_method: bool = False) -> dict:
    """The trials of summary ``s`` under MO-ASHA (``by_method``: each trial compared with the
    trials of its own method only); returns the replayed summary (same shape)."""
    from rank_search.search.mo_asha import CONTINUE, decide, rung_epochs

    trials = [t for t in s["trials"] if t["val_history"] and t["macs_compression"]]
    epochs = max(len(t["val_history"]) for t in trials)
    rungs = set(rung_epochs(epochs, grace=grace, eta=eta))
    records: dict[tuple, list] = {}
    ref = (floor, 0.0) if floor is not None else (None, 0.0)
    free = [0.0] * workers  # when each worker is next free
    heapq.heapify(free)
    events = []  # (time, order, trial index, epoch)
    run_to = {}
    order = 0
    for i, t in enumerate(trials):
        start = heapq.heappop(free)
        clock = start
        for e, secs in enumerate(t["epoch_seconds"], start=1):
            clock += secs or 0.0
            events.append((clock, order, i, e))
            order += 1
        heapq.heappush(free, clock)  # provisional: the worker is free once the trial ends or stops
    # decisions in time order; a stop truncates the trial (its worker freed earlier: later trials
    # would start sooner, which changes wall time only, not the CPU seconds counted here)
    events.sort()
    stopped: set[int] = set()
    for _, _, i, e in events:
        if i in stopped or e not in rungs:
            continue
        t = trials[i]
        mine = [t["val_history"][e - 1], math.log(t["macs_compression"])]
        group = records.setdefault((e, t["method"] if by_method else None), [])
        action = decide(group, mine, eta=eta, ref=ref, compressed=1 if compressed_end else None)
        group.append(mine)
        if action != CONTINUE:
            stopped.add(i)
            run_to[i] = e
    out = []
    for i, t in enumerate(trials):
        n = run_to.get(i, len(t["val_history"]))
        finished = i not in stopped
        out.append({**t, "seconds": sum(x or 0.0 for x in t["epoch_seconds"][:n]), "epochs": n,
                    "val_accuracy": t["val_accuracy"] if finished else t["val_history"][n - 1],
                    "test_accuracy": t["test_accuracy"] if finished else None})
    return {**s, "trials": out}


RULES = {
    "g1e3": dict(grace=1, eta=3, compressed_end=True),
    "g1e3-nocomp": dict(grace=1, eta=3, compressed_end=False),
    "g2e3": dict(grace=2, eta=3, compressed_end=True),
    "g2e3-nocomp": dict(grace=2, eta=3, compressed_end=False),
    "g1e2": dict(grace=1, eta=2, compressed_end=True),
    "g2e2": dict(grace=2, eta=2, compressed_end=True),
    "g3e2": dict(grace=3, eta=2, compressed_end=True),
    "g1e3-method": dict(grace=1, eta=3, compressed_end=True, by_method=True),
    "g1e2-method": dict(grace=1, eta=2, compressed_end=True, by_method=True),
    "g2e3-method": dict(grace=2, eta=3, compressed_end=True, by_method=True),
}


def _rho(rows: list[dict], epoch: int) -> str:
    """Spearman rank correlation of the validation accuracy at ``epoch`` with the last one's."""
    if len(rows) < 3:
        return "-"
    ranks = [np.argsort(np.argsort([t["val_history"][e] for t in rows])) for e in (epoch - 1, -1)]
    return fmt(float(np.corrcoef(*ranks)[0, 1]), ".2f")


def signal(summaries: dict, tasks: list[str], arms: list[str]) -> None:
    """Spearman rank correlation of the validation accuracy at epochs 1 and 3 with the last
    epoch's, over every full-length trial of the fifo ``arms`` (all methods, then each method):
    what a rung can know of where a trial ends."""
    print("| task | trials | rho(epoch 1, last), all | rho(epoch 3, last), all | rho(epoch 1, last) per method |")
    print("| --- | --- | --- | --- | --- |")
    for task in tasks:
        rows = [t for (tk, a, _), s in sorted(summaries.items()) if tk == task and a in arms
                for t in s["trials"] if t["val_history"] and len(t["val_history"]) >= 4]
        if not rows:
            continue
        per = [f"{m} {_rho(mine, 1)} (n {len(mine)})"
               for m in sorted({t["method"] for t in rows}) for mine in [[t for t in rows if t["method"] == m]]]
        print(f"| {task} | {len(rows)} | {_rho(rows, 1)} | {_rho(rows, 3)} | {'; '.join(per)} |")


def headroom(summaries: dict, tasks: list[str]) -> None:
    """Per task and seed: the uniform grid's validation log HV over that of the union of every
    arm's finished trials (the best front the suite knows)."""
    print("| task | grid / union of all arms, per seed |")
    print("| --- | --- |")
    for task in tasks:
        seeds = sorted({sd for (t, a, sd) in summaries if t == task and a == "uniform-grid"})
        ratios = []
        for sd in seeds:
            arms = {a: s for (t, a, x), s in summaries.items() if t == task and x == sd}
            floor = (arms.get("default") or arms["uniform-grid"])["dense"]["val_accuracy"] - MARGIN
            union = log_hv([r for s in arms.values() for r in _usable(s)], floor, "val_accuracy")
            grid = log_hv(_usable(arms["uniform-grid"]), floor, "val_accuracy")
            ratios.append(grid / union if union else float("nan"))
        print(f"| {task} | {', '.join(fmt(r, '.2f') for r in ratios)} |")


ABLATIONS = ("mo-asha-no-profile", "mo-asha-no-fill", "mo-asha-no-share", "mo-asha-no-weighting",
             "mo-asha-no-warm-start")


def ablation(summaries: dict, tasks: list[str]) -> None:
    """Per task and ablation arm: its validation log HV and log HV per CPU-hour minus those of
    ``mo-asha`` (every part on, the same CPU budget), paired by seed. A part pays where switching
    it off lowers both."""
    print("| task | part off (arm) | seeds | log HV minus mo-asha, per seed (median) | "
          "log HV per CPU-h minus mo-asha (median) |")
    print("| --- | --- | --- | --- | --- |")
    for task in tasks:
        for arm in ABLATIONS:
            pairs = [(s, summaries[(task, "mo-asha", sd)]) for (t, a, sd), s in sorted(summaries.items())
                     if t == task and a == arm and (task, "mo-asha", sd) in summaries]
            if not pairs:
                continue
            hv, per = [], []
            for off, on in pairs:
                floor = on["dense"]["val_accuracy"] - MARGIN
                a, b = log_hv(_usable(off), floor, "val_accuracy"), log_hv(_usable(on), floor, "val_accuracy")
                hv.append(a - b)
                per.append(a / (cpu_seconds(off) / 3600) - b / (cpu_seconds(on) / 3600))
            print(f"| {task} | {arm[len('mo-asha-no-'):]} | {len(pairs)} | "
                  f"{', '.join(f'{x:+.4f}' for x in hv)} ({statistics.median(hv):+.4f}) | "
                  f"{statistics.median(per):+.2f} |")


def setup_share(summaries: dict, tasks: list[str], storage: Path) -> None:
    """Per task and seed of the ``default`` arm: the dense reference and profile's share of the
    launch's wall time (``dense.yaml``'s ``seconds_total`` in the sweep folder under ``storage``
    over the wall time the summary recorded)."""
    import yaml

    print("| task | dense reference + profile share of the default sweep's wall time, per seed |")
    print("| --- | --- |")
    for task in tasks:
        shares = []
        for (t, a, sd), s in sorted(summaries.items()):
            dense = storage / f"{task}-default-s{sd}" / "dense.yaml"
            if t == task and a == "default" and dense.is_file():
                shares.append(float(yaml.safe_load(dense.read_text())["seconds_total"]) / s["wall_seconds"])
        if shares:
            print(f"| {task} | {', '.join(f'{x:.2f}' for x in shares)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--arms", default="uniform-grid,default")
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--held-out", action="store_true", help="include the held-out tasks (never for tuning)")
    p.add_argument("--signal", action="store_true", help="print the rung-accuracy rank correlations instead")
    p.add_argument("--headroom", action="store_true", help="print the grid's share of the union front instead")
    p.add_argument("--ablation", action="store_true", help="print each ablation arm against mo-asha instead")
    p.add_argument("--setup-share", action="store_true",
                   help="print the dense reference + profile share of the default sweeps' wall time instead")
    p.add_argument("--storage", default="runs/suite", help="where the sweeps live (for --setup-share)")
    args = p.parse_args()
    summaries = load_summaries(Path(args.results))
    tasks = [t for t in TASKS if args.held_out or t not in HELD_OUT]
    if args.signal:
        signal(summaries, tasks, args.arms.split(","))
        return
    if args.headroom:
        headroom(summaries, tasks)
        return
    if args.ablation:
        ablation(summaries, tasks)
        return
    if args.setup_share:
        setup_share(summaries, tasks, Path(args.storage))
        return
    print("| task | arm | rule | seeds | CPU share (median) | log HV replayed / fifo (median) | finished trials |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task in tasks:
        for arm in args.arms.split(","):
            ss = {sd: summaries[(t, a, sd)] for (t, a, sd) in summaries if t == task and a == arm}
            if not ss:
                continue
            for name in args.rules.split(","):
                shares, ratios, fin = [], [], []
                for sd, s in sorted(ss.items()):
                    base = (summaries.get((task, "default", sd)) or s)["dense"]["val_accuracy"] - MARGIN
                    r = replay(s, floor=base, **RULES[name])
                    full = log_hv(_usable(s), base, "val_accuracy")
                    shares.append(cpu_seconds(r) / cpu_seconds(s))
                    ratios.append(log_hv(_usable(r), base, "val_accuracy") / full if full else float("nan"))
                    fin.append(sum(t["test_accuracy"] is not None for t in r["trials"]))
                print(f"| {task} | {arm} | {name} | {len(ss)} | {statistics.median(shares):.2f} | "
                      f"{fmt(statistics.median(ratios), '.3f')} ({', '.join(fmt(x, '.2f') for x in ratios)}) | "
                      f"{statistics.median(fin):g} |")


if __name__ == "__main__":
    main()
