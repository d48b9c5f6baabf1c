"""Method benchmark on the embedded MNIST subset: accuracy at matched compression, training
time per epoch relative to `full`, and compact-vs-dense CPU inference latency.

1. Accuracy: every method at about 2x, 4x and 8x MACs compression (a uniform rank ratio found
   by bisection on the exact compact cost, per method scheme), several seeds; median test
   accuracy and the achieved compression (measured from the trained compact model).
2. Epoch time: one epoch of each method at its default interval vs `full`, interleaved,
   median of --timing-repeats, as a ratio. LRPET and DeepTwist run twice more, with their
   `svd=randomized` knob (the default is the exact SVD), at the 4x and the 8x plan, each next to
   its exact twin: the epoch-time ratio exact / randomized (paired per repeat) and the time
   spent inside the projections, measured in the epoch itself.
3. Latency: the compact model (4x plan) vs the dense model on CPU at batch 1 and 64, median
   of many forward passes, next to the MACs ratio.

    .venv/bin/python benchmarks/methods.py --epochs 4 --seeds 3 --out benchmarks/RESULTS.md

Every finished accuracy run is kept as one JSON file under --storage
(``acc/e<epochs>/<method>-t<target>-s<seed>.json``) and every finished timing repeat as
``timing/rep<i>.json``; a run or repeat already there is loaded instead of re-run, so an
interrupted benchmark continues where it stopped (delete the files to measure again).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rank_search.cost import count_macs
from rank_search.data import dataset_info
from rank_search.methods import METHODS
from rank_search.models import create_model
from rank_search.plan import uniform_plan
from rank_search.run import RunSpec, train
from rank_search.surgery import compress
from _report import emit  # benchmarks/_report.py (the script folder is on sys.path)

MODEL, DATASET = "lenet5_wide", "mnist5k"
METHOD_ORDER = ["full", "posthoc", "factorized", "trp", "lrpet", "deeptwist", "elrt"]
TARGETS = (2.0, 4.0, 8.0)
SETTINGS = {"train.batch_size": 32, "train.lr": 0.02, "train.threads": 1}
SVD_METHODS = {"lrpet": "_project_weights", "deeptwist": "distort"}  # method -> its projection
SVD_TARGETS = (4.0, 8.0)  # plans at which exact and randomized SVD are timed side by side


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save_json(path: Path, data) -> None:
    """Write ``data`` atomically (a partial file never looks finished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def load_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dense_model(device: str = "cpu"):
    info = dataset_info(DATASET)
    return create_model(MODEL, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size).to(device), (info.in_channels, info.image_size, info.image_size)


def ratio_for(target: float, scheme: str) -> tuple[float, float]:
    """Uniform rank ratio whose compact model is closest to ``target`` MACs compression."""
    model, shape = dense_model()
    dense = count_macs(model, shape)[0]

    def compression(r: float) -> float:
        return dense / count_macs(compress(model, uniform_plan(model, f"ratio:{r}", scheme=scheme)), shape)[0]

    lo, hi = 1e-3, 1.0  # compression decreases with the ratio
    for _ in range(14):
        mid = (lo + hi) / 2
        if compression(mid) > target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda r: abs(compression(r) - target))
    return best, compression(best)


def run_path(storage: Path, method: str, target: float | None, seed: int, epochs: int) -> Path:
    return storage / "acc" / f"e{epochs}" / f"{method}-t{target or 1:g}-s{seed}.json"


def accuracy_table(epochs: int, seeds: list[int], methods: list[str], targets: list[float],
                   storage: Path, run: bool = True) -> list[dict]:
    """One row per (method, target); a run stored under ``storage`` is loaded, a missing one is
    trained and stored (or, with ``run=False``, left out of the row)."""
    rows = []
    ratios: dict[tuple[float, str], tuple[float, float]] = {}
    for method in methods:
        cls = METHODS.get(method)
        for target in [None] if not cls.uses_plan else targets:
            ranks, planned = None, 1.0
            if target is not None:
                key = (target, cls.default_scheme)
                if key not in ratios:
                    ratios[key] = ratio_for(target, cls.default_scheme)
                ratio, planned = ratios[key]
                ranks = f"ratio:{ratio:.6f}"
            per_seed = {}
            for seed in seeds:
                path = run_path(storage, method, target, seed, epochs)
                record = load_json(path)
                if record is None and run:
                    settings = dict(SETTINGS)
                    if method == "posthoc":
                        settings["posthoc.finetune_epochs"] = max(1, epochs // 4)
                    spec = RunSpec(model=MODEL, dataset=DATASET, method=method, ranks=ranks, epochs=epochs,
                                   seed=seed, settings=settings)
                    result = train(spec)
                    knobs = result.trainer.method.knobs
                    record = {"spec": spec.to_dict(), "metrics": result.metrics, "planned_macs_x": planned,
                              "knobs": dataclasses.asdict(knobs) if dataclasses.is_dataclass(knobs) else None,
                              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                              "host": platform.node(), "commit": git_commit(),
                              "finished": dt.datetime.now().isoformat(timespec="seconds")}
                    save_json(path, record)
                    m = record["metrics"]
                    log(f"{method:10s} target {target or 1:>3}x seed {seed} e{epochs}: test_acc "
                        f"{m['test_accuracy']:.4f} macs_x {m['macs_compression']:.2f} ({m['wall_seconds']:.0f} s)")
                if record is not None:
                    per_seed[seed] = record
            if not per_seed:
                continue
            ms = [r["metrics"] for r in per_seed.values()]
            rows.append({
                "method": method, "target": target, "planned": planned, "seeds": list(per_seed),
                "test_acc": statistics.median(m["test_accuracy"] for m in ms),
                "test_accs": [m["test_accuracy"] for m in ms],
                "by_seed": {s: r["metrics"]["test_accuracy"] for s, r in per_seed.items()},
                "macs_x": statistics.median(m["macs_compression"] for m in ms),
                "macs_xs": [m["macs_compression"] for m in ms],
                "params_x": statistics.median(m["params_compression"] for m in ms),
                "wall_s": statistics.median(m["wall_seconds"] for m in ms),
                "knobs": next(iter(per_seed.values())).get("knobs"),
            })
    return rows


def timing_variants(methods: list[str]) -> list[tuple[str, str, dict, float]]:
    """(label, method, extra settings, target) timed in each repeat: every method at its
    defaults (4x plan); LRPET and DeepTwist each followed by their ``svd=randomized`` twin and
    by the same pair at the other SVD targets, so that twins run next to each other."""
    variants = []
    for m in methods:
        variants.append((m, m, {}, 4.0))
        if m in SVD_METHODS:
            for target in SVD_TARGETS:
                if target != 4.0:
                    variants.append((f"{m} {target:g}x", m, {}, target))
                variants.append((f"{m} {target:g}x svd=randomized", m, {f"{m}.svd": "randomized"}, target))
    return variants


def projection_ms(trainer, iters: int) -> dict[str, list[float]]:
    """Time one projection of every planned layer (the method's own code, on a copy of the
    trained weights; training state untouched), alternating exact and randomized:
    ``{"exact": [ms, ...], "randomized": [ms, ...]}``."""
    import copy
    import types

    method = trainer.method
    knobs = method.knobs
    attr = SVD_METHODS[method.name]
    fn = getattr(type(method), attr)
    saved = {k: getattr(method, k) for k in ("distortions", "last_distortion_step") if hasattr(method, k)}
    out = {"exact": [], "randomized": []}
    try:
        for i in range(iters):
            for value in ("exact", "randomized") if i % 2 == 0 else ("randomized", "exact"):
                method.knobs = dataclasses.replace(knobs, svd=value)
                model = copy.deepcopy(trainer.model)
                start = time.perf_counter()
                if attr == "distort":
                    fn(method, types.SimpleNamespace(model=model, global_step=trainer.global_step))
                else:
                    fn(method, model, trainer, final=False)
                out[value].append(1e3 * (time.perf_counter() - start))
    finally:
        method.knobs = knobs
        for k, v in saved.items():
            setattr(method, k, v)
    return out


def instrument(method_obj) -> dict | None:
    """Count calls of, and time spent in, the method's projection (LRPET, DeepTwist)."""
    attr = SVD_METHODS.get(method_obj.name)
    if attr is None:
        return None
    fn = getattr(method_obj, attr)
    stats = {"calls": 0, "seconds": 0.0}

    def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stats["calls"] += 1
            stats["seconds"] += time.perf_counter() - start

    setattr(method_obj, attr, wrapped)  # instance attribute: the method's own calls go through it
    return stats


def epoch_times(repeats: int, methods: list[str], storage: Path, svd_iters: int = 10) -> list[dict]:
    """Per repeat: {label: {"seconds", "calls", "proj_seconds"}}; each repeat is stored and reused."""
    from rank_search.run import prepare

    variants = timing_variants(methods)
    ratios: dict[tuple[float, str], float] = {}
    out = []
    for rep in range(repeats):
        path = storage / "timing" / f"rep{rep}.json"
        record = load_json(path)
        if record is not None and all(v[0] in record["times"] for v in variants):
            out.append(record["times"])
            continue
        times = {}
        order = variants if rep % 2 == 0 else variants[::-1]  # interleaved, alternating order
        for label, method, extra, target in order:
            cls = METHODS.get(method)
            ranks = None
            if cls.uses_plan:
                key = (target, cls.default_scheme)
                if key not in ratios:
                    ratios[key] = ratio_for(target, cls.default_scheme)[0]
                ranks = f"ratio:{ratios[key]:.6f}"
            spec = RunSpec(model=MODEL, dataset=DATASET, method=method, ranks=ranks, epochs=2, seed=0,
                           settings={**SETTINGS, **extra})
            trainer = prepare(spec)
            trainer.method.on_train_start(trainer)
            stats = instrument(trainer.method)
            start = time.perf_counter()
            trainer.train_epoch()  # epoch 1 of 2: hooks at their default intervals, no finalize
            times[label] = {"seconds": time.perf_counter() - start,
                            "calls": stats["calls"] if stats else None,
                            "proj_seconds": stats["seconds"] if stats else None,
                            "steps": trainer.global_step}
            if method in SVD_METHODS and not extra and svd_iters > 0:  # the exact variant's trained weights
                times[label]["proj_ms"] = projection_ms(trainer, svd_iters)
            log(f"timing rep {rep} {label}: {times[label]['seconds']:.2f} s"
                + (f" ({stats['calls']} projections, {1e3 * stats['seconds']:.0f} ms)" if stats else ""))
        save_json(path, {"times": times, "torch_threads": torch.get_num_threads(), "host": platform.node(),
                         "commit": git_commit(), "finished": dt.datetime.now().isoformat(timespec="seconds")})
        out.append(times)
    return out


@torch.no_grad()
def latency(model, shape, batch: int, iters: int) -> float:
    model.eval()
    x = torch.randn(batch, *shape)
    for _ in range(5):
        model(x)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        model(x)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def latency_table(iters: int) -> list[dict]:
    rows = []
    model, shape = dense_model()
    dense_macs = count_macs(model, shape)[0]
    for scheme in ("channel", "tucker2"):
        for target in TARGETS:
            ratio, _ = ratio_for(target, scheme)
            compact = compress(model, uniform_plan(model, f"ratio:{ratio}", scheme=scheme))
            macs_x = dense_macs / count_macs(compact, shape)[0]
            for batch in (1, 64):
                d, c = [], []
                for _ in range(3):  # alternate dense/compact rounds
                    d.append(latency(model, shape, batch, iters))
                    c.append(latency(compact, shape, batch, iters))
                rows.append({"scheme": scheme, "target": target, "macs_x": macs_x, "batch": batch,
                             "dense_ms": 1e3 * statistics.median(d), "compact_ms": 1e3 * statistics.median(c)})
                log(f"latency {scheme} {target}x batch {batch}: dense {rows[-1]['dense_ms']:.3f} ms, "
                    f"compact {rows[-1]['compact_ms']:.3f} ms")
    return rows


def render(args, acc, times, lat) -> str:
    seeds = sorted({s for r in acc for s in r["seeds"]}) if acc else list(range(args.seeds))
    lines = [
        f"## Methods on {DATASET} ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, CPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, commit {git_commit()})",
        "",
        f"Command: `.venv/bin/python benchmarks/methods.py --epochs {args.epochs} --seeds {args.seeds}"
        f" --targets {args.targets} --timing-repeats {args.timing_repeats} --parts {args.parts}"
        + (f" --methods {args.methods}" if args.methods != ",".join(METHOD_ORDER) else "")
        + f" --storage {args.storage}`. "
        f"Model `{MODEL}` (4 eligible layers), "
        f"{args.epochs} epochs, batch 32, lr 0.02 cosine, 1 training thread, seeds {seeds}; "
        "uniform rank ratio per method found by bisection on the exact compact MACs; `posthoc` "
        f"spends {max(1, args.epochs // 4)} of the epochs fine-tuning; schemes are each method's default "
        "(channel: posthoc, trp, lrpet; tucker2 with channel for Linear: factorized, deeptwist, elrt); "
        "every other knob at the method's default.",
        "",
    ]
    if acc:
        lines += accuracy_lines(acc)
    if times:
        lines += timing_lines(args, times)
    if lat:
        lines += latency_lines(args, lat)
    return "\n".join(lines) + "\n"


def accuracy_lines(acc) -> list[str]:
    lines = []
    full = next((r for r in acc if r["method"] == "full"), None)
    if full is not None:
        lines += [f"Reference `full` (dense): median test accuracy **{full['test_acc']:.4f}** "
                  f"({', '.join(f'{a:.4f}' for a in full['test_accs'])}).", ""]
    lines += [
        "Paired difference vs posthoc: this method's test accuracy minus `posthoc`'s at the same "
        "target and seed (per seed in seed order, then the median; wins = seeds where it is higher).",
        "",
        "| method | target MACs x | achieved MACs x | params x | median test acc | per seed | "
        "median paired diff vs posthoc | per-seed diffs | wins |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    posthoc = {r["target"]: r["by_seed"] for r in acc if r["method"] == "posthoc"}
    for r in acc:
        if r["method"] == "full":
            continue
        base = posthoc.get(r["target"], {})
        common = [s for s in r["by_seed"] if s in base]
        diffs = [r["by_seed"][s] - base[s] for s in common]
        if diffs and r["method"] != "posthoc":
            diff_txt = (f"{statistics.median(diffs):+.4f} | {', '.join(f'{d:+.4f}' for d in diffs)} | "
                        f"{sum(d > 0 for d in diffs)}/{len(diffs)}")
        else:
            diff_txt = "- | - | -"
        macs = f"{r['macs_x']:.2f}"
        if max(r["macs_xs"]) - min(r["macs_xs"]) > 0.005:
            macs += f" ({min(r['macs_xs']):.2f}-{max(r['macs_xs']):.2f})"
        lines.append(f"| {r['method']} | {r['target']:.0f} | {macs} | {r['params_x']:.2f} | "
                     f"{r['test_acc']:.4f} | {', '.join(f'{a:.4f}' for a in r['test_accs'])} | {diff_txt} |")
    walls = [f"{r['method']}{'' if r['target'] is None else ' %gx' % r['target']} {r['wall_s']:.0f}" for r in acc]
    lines += ["", "Median wall time of one run, s (machine shared with other jobs): " + ", ".join(walls) + "."]
    return lines + [""]


def timing_lines(args, times) -> list[str]:
    labels = list(times[0])
    med = {lab: statistics.median(t[lab]["seconds"] for t in times) for lab in labels}
    base = med["full"] if "full" in med else float("nan")
    n = len(times)
    lines = ["", f"Training time per epoch relative to `full` (one epoch at each method's default interval, "
                  f"4x plan unless named, interleaved in alternating order, median of {n}; "
                  f"full = {base:.2f} s). For LRPET and DeepTwist, the projections of the epoch "
                  "(count, and the time spent inside them, median):", "",
             "| method | median s/epoch | ratio to full | projections | ms in projections | share of epoch |",
             "| --- | --- | --- | --- | --- | --- |"]
    for lab in labels:
        calls = [t[lab]["calls"] for t in times if t[lab].get("calls") is not None]
        if calls:
            proj = statistics.median(t[lab]["proj_seconds"] for t in times)
            extra = f"{statistics.median(calls):g} | {1e3 * proj:.0f} | {proj / med[lab]:.1%}"
        else:
            extra = "- | - | -"
        lines.append(f"| {lab} | {med[lab]:.2f} | {med[lab] / base:.3f} | {extra} |")
    pairs = []
    for m in SVD_METHODS:
        for target in SVD_TARGETS:
            exact = m if target == 4.0 else f"{m} {target:g}x"
            rand = f"{m} {target:g}x svd=randomized"
            if exact in labels and rand in labels:
                pairs.append((m, target, exact, rand))
    if pairs:
        lines += ["", "Cost of the exact SVD (default `svd=exact`) against the `svd=randomized` knob, same "
                      "plan. Epoch time: the two variants timed next to each other in every repeat. "
                      "Projection: one projection of every planned layer by the method's own code on the "
                      f"exact run's trained weights, {args.svd_iters} times per algorithm and repeat, "
                      "alternating (median ms); cost per epoch = (exact - randomized) x the projections "
                      "counted in the epoch, as a share of the median `full` epoch:", "",
                  "| method | plan | epoch time exact / randomized (paired, median) | per repeat | "
                  "one projection, ms exact vs randomized | projections per epoch | exact-SVD cost per epoch |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for m, target, exact, rand in pairs:
            r = [t[exact]["seconds"] / t[rand]["seconds"] for t in times]
            pe = [x for t in times for x in t[exact].get("proj_ms", {}).get("exact", [])]
            pr = [x for t in times for x in t[exact].get("proj_ms", {}).get("randomized", [])]
            calls = statistics.median(t[exact]["calls"] for t in times)
            if pe and pr:
                me, mr = statistics.median(pe), statistics.median(pr)
                proj = f"{me:.1f} vs {mr:.1f} | {calls:g} | {calls * (me - mr) / (1e3 * base):+.2%}"
            else:
                proj = f"- | {calls:g} | -"
            lines.append(f"| {m} | {target:g}x | {statistics.median(r):.3f} | {', '.join(f'{x:.3f}' for x in r)} | "
                         f"{proj} |")
    return lines + [""]


def latency_lines(args, lat) -> list[str]:
    lines = ["", f"CPU inference latency, compact vs dense (median of {args.latency_iters} forward passes "
                  "x 3 alternating rounds):", "",
              "| scheme | MACs x | batch | dense ms | compact ms | speed-up | share of MACs ratio realised |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in lat:
        speed = r["dense_ms"] / r["compact_ms"]
        lines.append(f"| {r['scheme']} | {r['macs_x']:.2f} | {r['batch']} | {r['dense_ms']:.3f} | "
                     f"{r['compact_ms']:.3f} | {speed:.2f}x | {speed / r['macs_x']:.0%} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--latency-iters", type=int, default=50)
    p.add_argument("--svd-iters", type=int, default=10,
                   help="timing: projections timed per SVD algorithm and repeat (LRPET, DeepTwist)")
    p.add_argument("--methods", default=",".join(METHOD_ORDER))
    p.add_argument("--parts", default="accuracy,timing,latency",
                   help="which parts to run (timing and latency need a quiet machine)")
    p.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS),
                   help="MACs compression targets of the accuracy part (comma-separated)")
    p.add_argument("--seed-list", help="explicit comma-separated seeds (overrides --seeds' 0..N-1)")
    p.add_argument("--storage", default="runs/methods_bench",
                   help="folder that keeps every finished run / timing repeat (reused when present)")
    p.add_argument("--no-run", action="store_true",
                   help="only report what --storage holds (accuracy part); train nothing")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    methods = args.methods.split(",")
    parts = args.parts.split(",")
    storage = Path(args.storage)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    targets = [float(t) for t in args.targets.split(",")]
    acc = (accuracy_table(args.epochs, seeds, methods, targets, storage, run=not args.no_run)
           if "accuracy" in parts else [])
    times = epoch_times(args.timing_repeats, methods, storage, args.svd_iters) if "timing" in parts else []
    lat = latency_table(args.latency_iters) if "latency" in parts else []
    text = render(args, acc, times, lat)
    emit(text, args.out)


if __name__ == "__main__":
    main()
