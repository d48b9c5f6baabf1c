"""How much of its MACs compression a compact model realises as CPU speed-up (issue 9).

For each model, scheme and MACs target (a uniform rank ratio found by bisection on the exact
compact MACs, as in ``benchmarks/methods.py``), the dense model and its compact model are built
with random weights (speed does not depend on training), put in eval mode and timed against each
other in one interleaved loop (warm-up, then dense and compact alternately, median of the
per-pair ratios), one thread: eager PyTorch and ONNX Runtime (``intra_op_num_threads=1``).
The realised share is speed-up / MACs compression (1.0: the compact model is as much faster as
it has fewer MACs).

Two variants of the same measurement:

* ``before``: what the code gave before issue 9's fixes: eager = the compact model as
  ``compress`` builds it (BatchNorm kept) against the dense model as built; ONNX = both
  BatchNorm-folded (``fold_batchnorm``, what ``deploy`` did) and exported.
* ``after``: both models through ``rank_search.deploy.prepare_for_inference`` with
  ``measure_batch=MEASURE_BATCH`` (BatchNorm folded, channels_last, each factorized layer in its
  fastest exact form as timed; ``deploy(..., measure_batch=16)``), eager and exported. The default
  ``deploy`` does the same without the timing (a layer is merged only where that saves MACs).
* ``block16``: ``after`` with every rank rounded up to a multiple of BLOCK (the plan spec
  ``ratio:R,multiple=16``) and the plans' break-even rule applied (a layer whose rounded
  factorization costs at least the dense layer's MACs stays dense). oneDNN and ONNX Runtime's
  MLAS vectorise convolutions over 16 output channels, so a rank below a multiple of 16 pays
  for the full block; this variant asks what share a CPU-shaped plan realises (its MACs
  compression is what the rounding leaves, which may fall short of the target).

    .venv/bin/python benchmarks/compact_speed.py --variant before --storage runs/compact_speed
    .venv/bin/python benchmarks/compact_speed.py --variant after --storage runs/compact_speed
    .venv/bin/python benchmarks/compact_speed.py --variant block16 --storage runs/compact_speed
    .venv/bin/python benchmarks/compact_speed.py --report --storage runs/compact_speed --out FILE

Every finished configuration is one JSON file under ``--storage/<variant>/``; a rerun loads it
instead of measuring again, so an interrupted run continues (delete the files to re-measure).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rank_search.cost import count_macs
from rank_search.models import create_model
from rank_search.plan import build_plan, uniform_plan
from rank_search.surgery import compress

MODELS = {"resnet20": 32, "resnet56": 32, "vgg16_cifar": 32, "resnet18": 224}  # name -> image size
SCHEMES = ("channel", "spatial", "tucker2", "tiled")
TARGETS = (2.0, 4.0, 8.0)
BATCHES = (1, 64)
VARIANTS = ("before", "after")  # the two compared cell by cell in the report
BLOCK = 16  # channels per vector block of the CPU convolution kernels (block16 variant)
ALL_VARIANTS = VARIANTS + ("block16",)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def save_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def dense_model(name: str) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    size = MODELS[name]
    torch.manual_seed(0)
    classes = 1000 if name == "resnet18" else 10
    model = create_model(name, in_channels=3, num_classes=classes, image_size=size).eval()
    return model, (3, size, size)


def compact_for(model, shape, scheme: str, target: float, *, block: int = 1) -> tuple[torch.nn.Module, float]:
    """The uniform-ratio compact model closest to ``target`` MACs compression (random factors:
    ``decompose=False``), and its exact MACs compression. ``block > 1``: ranks rounded up to a
    multiple of ``block``, layers at or above break-even kept dense (``build_plan``)."""
    dense = count_macs(model, shape)[0]
    cache: dict[float, float] = {}

    def plan_at(r: float):
        if block > 1:
            return build_plan(model, f"ratio:{r},multiple={block}", scheme=scheme)
        return uniform_plan(model, f"ratio:{r}", scheme=scheme)

    def compression(r: float) -> float:
        if r not in cache:
            cache[r] = dense / count_macs(compress(model, plan_at(r), decompose=False), shape)[0]
        return cache[r]

    lo, hi = 1e-3, 1.0  # compression decreases with the ratio
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if compression(mid) > target else (lo, mid)
    best = min((lo, hi), key=lambda r: abs(compression(r) - target))
    torch.manual_seed(1)
    return compress(model, plan_at(best), decompose=False).eval(), compression(best)


def prepare(model, example, variant: str):
    """The eager module a user runs under ``variant`` and the one that is exported."""
    from rank_search.deploy import fold_batchnorm

    if variant == "before":
        return model, fold_batchnorm(model, example)[0]
    from rank_search.deploy import prepare_for_inference
    from rank_search.deploy.export import MEASURE_BATCH

    fast = prepare_for_inference(model, example, measure_batch=MEASURE_BATCH).module
    return fast, fast


def onnx_session(model, example):
    """An ONNX Runtime session (1 thread) of ``model`` exported as ``deploy`` does."""
    import onnxruntime as ort

    from rank_search.deploy.export import export_program

    program = export_program(model, example)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(program, f=path, input_names=["input"], output_names=["logits"],
                              external_data=False, dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def interleaved(dense_fn, compact_fn, x, *, repeats: int, warmup: int) -> dict:
    """Dense and compact timed alternately (order swapped each pair): medians and the median of
    the per-pair ratios (load on the machine hits both sides of a pair alike)."""
    for _ in range(warmup):
        dense_fn(x)
        compact_fn(x)
    d, c = [], []
    for i in range(repeats):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            fn, out = (dense_fn, d) if which == 0 else (compact_fn, c)
            start = time.perf_counter()
            fn(x)
            out.append(time.perf_counter() - start)
    return {"dense_ms": 1e3 * statistics.median(d), "compact_ms": 1e3 * statistics.median(c),
            "speedup": statistics.median(a / b for a, b in zip(d, c)), "repeats": repeats}


def repeats_for(name: str, batch: int, quick: bool) -> tuple[int, int]:
    reps, warm = (40, 5) if batch == 1 else (12, 2)
    if name == "resnet18":
        reps, warm = (15, 3) if batch == 1 else (3, 1)
    return (max(3, reps // 3), max(1, warm // 2)) if quick else (reps, warm)


def measure(name: str, scheme: str, target: float, batches, variant: str, storage: Path, quick: bool,
            dense_cache: dict) -> None:
    paths = {b: storage / variant / f"{name}-{scheme}-t{target:g}-b{b}.json" for b in batches}
    todo = [b for b in batches if not paths[b].exists()]
    if not todo:
        return
    torch.set_num_threads(1)
    model, shape = dense_model(name)
    compact, macs_x = compact_for(model, shape, scheme, target, block=BLOCK if variant == "block16" else 1)
    example = torch.randn(2, *shape)
    if (name, variant) not in dense_cache:
        dense_eager, dense_export = prepare(model, example, variant)
        dense_cache.clear()
        dense_cache[(name, variant)] = (dense_eager, onnx_session(dense_export, example))
    dense_eager, dense_ort = dense_cache[(name, variant)]
    compact_eager, compact_export = prepare(compact, example, variant)
    compact_ort = onnx_session(compact_export, example)
    for batch in todo:
        reps, warm = repeats_for(name, batch, quick)
        x = torch.randn(batch, *shape)
        with torch.inference_mode():
            eager = interleaved(dense_eager, compact_eager, x, repeats=reps, warmup=warm)
        ort = interleaved(dense_ort, compact_ort, x.numpy(), repeats=reps, warmup=warm)
        row = {"model": name, "scheme": scheme, "target": target, "batch": batch, "variant": variant,
               "macs_x": macs_x, "eager": eager, "ort": ort, "threads": 1,
               "load_avg": os.getloadavg()[0], "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        save_json(paths[batch], row)
        log(f"{variant} {name} {scheme} {target:g}x b{batch}: MACs {macs_x:.2f}x, eager {eager['speedup']:.2f}x "
            f"(share {eager['speedup'] / macs_x:.2f}), ORT {ort['speedup']:.2f}x (share {ort['speedup'] / macs_x:.2f})")


def load_rows(storage: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(storage.glob("*/*.json"))]


def report(storage: Path) -> str:
    every = load_rows(storage)
    rows = [r for r in every if r["variant"] in VARIANTS]
    by = {(r["model"], r["scheme"], r["target"], r["batch"], r["variant"]): r for r in rows}
    keys = sorted({k[:4] for k in by}, key=lambda k: (list(MODELS).index(k[0]), SCHEMES.index(k[1]), k[2], k[3]))
    loads = [r["load_avg"] for r in rows]
    lines = [
        "## Compact-model CPU speed: realised share of the MACs compression (issue 9)", "",
        "`.venv/bin/python benchmarks/compact_speed.py --variant before|after --storage runs/compact_speed` "
        f"({len(rows)} configurations measured {min(r['date'] for r in rows)[:10] if rows else ''}; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread for torch and ONNX Runtime). "
        f"**The machine was shared** (2 cores, load average {min(loads, default=0):.0f}-{max(loads, default=0):.0f} "
        "during the runs): absolute times are not quotable, the speed-ups are medians of dense/compact ratios "
        "timed in alternate pairs in one loop, so load hits both sides alike.", "",
        "Random weights (speed does not depend on training); uniform rank ratio per scheme by bisection on the "
        "exact compact MACs. `before`: eager = compact model as `compress` builds it vs the dense model "
        "(BatchNorm kept in both), ONNX = both BatchNorm-folded and exported (the old `deploy`). `after`: both "
        "through `prepare_for_inference(measure_batch=16)`: BatchNorm folded, channels_last weights, each "
        "factorized layer in the fastest of its exact forms timed at batch 16 (`deploy(..., measure_batch=16)`). Share = speed-up / MACs compression.", "",
        "| model | scheme | target | batch | MACs x | eager speed-up before / after | eager share before / after "
        "| ORT speed-up before / after | ORT share before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(k, rt, share):
        vals = []
        for v in VARIANTS:
            r = by.get((*k, v))
            vals.append("-" if r is None else f"{r[rt]['speedup'] / (r['macs_x'] if share else 1):.2f}")
        return " / ".join(vals)

    for k in keys:
        r = by.get((*k, "after")) or by.get((*k, "before"))
        lines.append(f"| {k[0]} | {k[1]} | {k[2]:g}x | {k[3]} | {r['macs_x']:.2f} | {cell(k, 'eager', False)} | "
                     f"{cell(k, 'eager', True)} | {cell(k, 'ort', False)} | {cell(k, 'ort', True)} |")
    lines += ["", "Median realised share per model and batch (over schemes and targets):", "",
              "| model | batch | eager before | eager after | ORT before | ORT after |", "|---|---|---|---|---|---|"]
    for m in MODELS:
        for b in BATCHES:
            med = []
            for rt in ("eager", "ort"):
                for v in VARIANTS:
                    s = [r[rt]["speedup"] / r["macs_x"] for r in rows if r["model"] == m and r["batch"] == b
                         and r["variant"] == v]
                    med.append(f"{statistics.median(s):.2f} ({len(s)})" if s else "-")
            if any(x != "-" for x in med):
                lines.append(f"| {m} | {b} | {med[0]} | {med[1]} | {med[2]} | {med[3]} |")
    return "\n".join(lines) + "\n" + block_report([r for r in every if r["variant"] == "block16"], by)


def block_report(rows: list[dict], by: dict) -> str:
    """The block16 variant beside ``after`` at the same target (its MACs compression differs)."""
    if not rows:
        return ""
    lines = ["", f"Ranks rounded up to a multiple of {BLOCK} (`--variant block16`, break-even applied), beside "
             "`after` at the same target:", "",
             "| model | scheme | target | batch | MACs x after / block16 | eager speed-up after / block16 "
             "| eager share after / block16 | ORT speed-up after / block16 | ORT share after / block16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = sorted(rows, key=lambda r: (list(MODELS).index(r["model"]), SCHEMES.index(r["scheme"]), r["target"], r["batch"]))
    for r in rows:
        a = by.get((r["model"], r["scheme"], r["target"], r["batch"], "after"))

        def pair(fn) -> str:
            return f"{'-' if a is None else f'{fn(a):.2f}'} / {fn(r):.2f}"

        lines.append(f"| {r['model']} | {r['scheme']} | {r['target']:g}x | {r['batch']} | {pair(lambda x: x['macs_x'])} | "
                     f"{pair(lambda x: x['eager']['speedup'])} | {pair(lambda x: x['eager']['speedup'] / x['macs_x'])} | "
                     f"{pair(lambda x: x['ort']['speedup'])} | {pair(lambda x: x['ort']['speedup'] / x['macs_x'])} |")
    lines += ["", "Median realised share per model and batch, block16 (eager, ORT):", "",
              "| model | batch | eager | ORT |", "|---|---|---|---|"]
    for m in MODELS:
        for b in BATCHES:
            sel = [r for r in rows if r["model"] == m and r["batch"] == b]
            if sel:
                med = [statistics.median(r[rt]["speedup"] / r["macs_x"] for r in sel) for rt in ("eager", "ort")]
                lines.append(f"| {m} | {b} | {med[0]:.2f} ({len(sel)}) | {med[1]:.2f} ({len(sel)}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=ALL_VARIANTS, default="after")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--schemes", default=",".join(SCHEMES))
    p.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--quick", action="store_true", help="a third of the repeats")
    p.add_argument("--storage", default="runs/compact_speed")
    p.add_argument("--report", action="store_true", help="only print the tables of what --storage holds")
    p.add_argument("--out", help="write the markdown section to this file")
    args = p.parse_args()
    storage = Path(args.storage)
    if not args.report:
        batches = [int(b) for b in args.batches.split(",")]
        cache: dict = {}
        for name in args.models.split(","):  # resnet18 is last in the default order (the costly one)
            for scheme in args.schemes.split(","):
                for target in (float(t) for t in args.targets.split(",")):
                    measure(name, scheme, target, batches, args.variant, storage, args.quick, cache)
    text = report(storage)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
