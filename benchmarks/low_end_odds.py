"""How often a 16-trial search can be expected to beat random search at 64 trials on one seed,
from the trials both already ran (benchmarks/RESULTS.md, search quality on resnet20).

The log hypervolume above dense - 5 pt is made where models stay above that floor: on resnet20 at
one epoch of fine-tuning, at 2-3x MACs compression, and its largest part (the strip from 1x to 2x)
is credited with the best validation accuracy there. A front's best accuracy in a band is the
maximum of the trials in it, so an arm with many trials in the band gets its lucky ones.

For each seed this script pools the validation accuracies of the trials in the band: the
default arm's (from every storage folder given, one trial per distinct configuration) and random
search's at 64 trials. It then draws, many times, as many trials from each pool as one sweep of
each arm has there, and counts how often the default's best beats random's (ties count half).
The default's trials are not independent draws (a refinement follows its parent's result), so
this is an estimate of the odds at the default's trial quality and count, not a replay.

    .venv/bin/python benchmarks/low_end_odds.py runs/sq_r20_ref runs/sq_r20_gate runs/sq_r20_reflect runs/sq_r20_share3
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_quality as sq  # noqa: E402  (the benchmark's own sweep reader)

PARAMS = ("config/method", "config/budget.target", "config/budget.allocation", "config/train.lr")


def band(path: str, low: float, high: float):
    t = sq.sweep_trials(os.path.realpath(path))
    return t[(t["macs_compression"] >= low * sq.REACH) & (t["macs_compression"] < high)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("storage", nargs="+", help="search_quality.py storage folders; the first gives the random arm")
    ap.add_argument("--prefix", default="resnet20_mnist")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--band", type=float, nargs=2, default=(2.0, 3.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--random", default="random-per-layer-dense-64")
    ap.add_argument("--draws", type=int, default=20000)
    args = ap.parse_args()
    low, high = args.band
    rng = np.random.default_rng(0)
    print(f"Trials at {low:g}-{high:g}x MACs compression (within the allocation's 5%), validation accuracy.\n")
    print("| seed | default trials in the band per sweep (median) | default pool | default pool median / best "
          "| random-64 trials in the band | random median / best | P(default's best > random's best) "
          "| same, were the default's trials random's |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    odds = []
    for s in range(args.seeds):
        name = f"{args.prefix}-default-16-s{s}"
        sweeps = [os.path.join(d, name) for d in args.storage if os.path.isdir(os.path.join(d, name))]
        frames = [band(p, low, high) for p in sweeps]
        counts = [len(f) for f in frames]
        pool = {}
        for f in frames:  # one trial per distinct configuration: a seeded trial repeats its result
            for _, row in f.iterrows():
                pool[tuple(str(row.get(k)) for k in PARAMS)] = float(row["val_accuracy"])
        d = np.array(list(pool.values()))
        r = band(os.path.join(args.storage[0], f"{args.prefix}-{args.random}-s{s}"), low, high)["val_accuracy"].to_numpy(float)
        n_d, n_r = int(np.median(counts)), len(r)

        def p_win(a: np.ndarray) -> float:
            x = rng.choice(a, (args.draws, n_d)).max(axis=1)
            y = rng.choice(r, (args.draws, n_r)).max(axis=1)
            return float(np.mean(x > y) + 0.5 * np.mean(x == y))

        p, same = p_win(d), p_win(r)
        odds.append(p)
        print(f"| {s} | {n_d} | {len(d)} | {np.median(d):.3f} / {d.max():.3f} | {n_r} | {np.median(r):.3f} / {r.max():.3f} "
              f"| {p:.2f} | {same:.2f} |")
    probs = np.array(odds)
    # the number of seeds of five (or of --seeds) the default wins, were each seed a coin with these odds
    dist = np.array([1.0])
    for q in probs:
        dist = np.convolve(dist, [1 - q, q])
    print(f"\nSeeds on which the default's best in the band beats random's, expected: {probs.sum():.1f} of "
          f"{len(probs)}; the chance of every seed {dist[-1]:.2f}, of at least {len(probs) - 2}: "
          f"{dist[len(probs) - 2:].sum():.2f}.")


if __name__ == "__main__":
    main()
