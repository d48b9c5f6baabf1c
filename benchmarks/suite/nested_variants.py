"""Nested-training variants on suite tasks (issue 31): per task, variant and seed, a nested model
trained as `launch --searcher oneshot` trains it (from the suite's dense reference of that task and
seed, the sweep's ``nested_epochs``, ``nested_settings``: the model's rate) but
with the variant's settings (``epochs=N`` sets its epochs, ``compose_share=X`` the layers' form
rule), then searched (`--allocations`, as the sweep: each evaluated once); the log HV of its
front on validation, and of that front on test (no fine-tuning; floors as the suite report's). A
diverged training counts as an empty front. No Ray; one torch thread.

    .venv/bin/python benchmarks/suite/nested_variants.py --storage runs/suite \\
        --tasks resnet20-digits-channel --variant independent=nested.draw=independent --variant shared=nested.draw=shared

The dense references are the `oneshot` arm's (`run.py --arms oneshot --storage S` makes them). Each
(task, variant, seed) result is kept in `--cache` and a rerun skips it. Tune on the tuning tasks only.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

from _report import cached_json, emit  # noqa: E402  (benchmarks/_report.py)
from run import MARGIN, log_hv  # noqa: E402  (benchmarks/suite/run.py)


def one(storage: Path, task: str, settings: dict, seed: int, allocations: int) -> dict:
    """``_one`` with the variant's ``compose_share`` (``_nested_model.COMPOSE_SHARE``; ``inf``:
    the factors always) in force for its training and search."""
    from rank_search.methods import _nested_model

    settings, default = dict(settings), _nested_model.COMPOSE_SHARE
    share = settings.pop("compose_share", default)
    try:
        _nested_model.COMPOSE_SHARE = float(share)
    except ValueError:
        raise SystemExit(f"nested_variants.py: compose_share must be a number or inf, got {share!r}") from None
    try:
        return _one(storage, task, settings, seed, allocations)
    finally:
        _nested_model.COMPOSE_SHARE = default


def _one(storage: Path, task: str, settings: dict, seed: int, allocations: int) -> dict:
    import torch
    import yaml
    from search_spaces import get_space

    from rank_search.engine import DivergedError, evaluate
    from rank_search.methods.nested import TruncationSampler
    from rank_search.run import train
    from rank_search.search.oneshot import TruncationSpace, compact_of, front, oneshot_search, sample_allocations
    from rank_search.search import LaunchConfig
    from rank_search.search.oneshot_sweep import nested_epochs, nested_settings, oneshot_scheme
    from rank_search.search.oneshot_tasks import nested_run

    torch.set_num_threads(1)
    space = get_space(str(HERE / "spaces" / f"{task}.yaml"))
    folder = storage / f"{task}-oneshot-s{seed}"
    dense = yaml.safe_load((folder / "dense.yaml").read_text())
    start = time.process_time()
    settings = dict(settings)
    epochs = int(settings.pop("epochs", nested_epochs(space, LaunchConfig(space=task, searcher="oneshot"))))
    knobs = {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("nested.")}
    run_settings = {**nested_settings(space), "train.threads": 1,
                    **{k: v for k, v in settings.items() if not k.startswith("nested.")}}
    try:
        result = train(nested_run(dataclasses.replace(space, seed=seed), oneshot_scheme(space), knobs, run_settings,
                                  epochs, str(folder / "dense.pt")))
    except DivergedError:  # a variant that diverges is a result: its front is empty
        return {"val": 0.0, "test": 0.0, "nested_cpu": time.process_time() - start, "search_cpu": 0.0, "front": 0,
                "rows": [], "diverged": True}
    trained = time.process_time()
    tr = result.trainer
    bn = tr.method.knobs.bn_images
    tspace = TruncationSpace(tr.model, tr.input_shape, TruncationSampler.for_model(tr.model, tr.method.knobs, seed).low)
    points = oneshot_search(tr.model, tr.data, tspace, sample_allocations(tspace, allocations, seed=seed),
                            bn_images=bn, device=tr.device)
    searched = time.process_time()
    rows = []
    for p in front(points):
        compact = compact_of(tr.model, p.plan, tr.data, bn_images=bn, device=tr.device)
        test = evaluate(compact, tr.data.test, tr.device)[0]
        rows.append({"macs_compression": p.compression, "val_accuracy": p.val_accuracy, "test_accuracy": test})
    # floors as the suite report's: the dense reference's validation, and test, accuracy minus the margin
    return {"val": log_hv(rows, dense["val_accuracy"] - MARGIN, "val_accuracy"),
            "test": log_hv(rows, dense["test_accuracy"] - MARGIN, "test_accuracy", "val_accuracy"),
            "nested_cpu": trained - start, "search_cpu": searched - trained, "front": len(rows), "rows": rows}


def _setting(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("=")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        literal = value[:1].isdigit() or value[:1] == "-" or value in ("true", "false")
        settings[key] = json.loads(value) if literal else value
    return name, settings


def main() -> None:
    from rank_search.search.oneshot_sweep import ALLOCATIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, help="the suite's sweep folder holding the oneshot arm's sweeps")
    p.add_argument("--tasks", required=True, help="comma-separated suite tasks")
    p.add_argument("--variant", action="append", required=True,
                   help="NAME=KEY=VALUE[,KEY=VALUE...]: settings of the nested run (e.g. shared=nested.draw=shared; "
                        "epochs=N: its epochs, default the one-shot sweep's; compose_share=X: the nested "
                        "layers' COMPOSE_SHARE, inf for the factors always)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--allocations", type=int, default=ALLOCATIONS, help="as a one-shot sweep (default: %(default)s)")
    p.add_argument("--cache", default="runs/nested_variants", help="folder of the per-run results")
    p.add_argument("--out")
    args = p.parse_args()
    variants = dict(map(_setting, args.variant))
    os.makedirs(args.cache, exist_ok=True)
    lines = [f"## Nested-training variants ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)", "",
             "Command: `.venv/bin/python benchmarks/suite/nested_variants.py --tasks " + args.tasks + " "
             + " ".join(f"--variant {v}" for v in args.variant) + f" --seeds {args.seeds} --allocations "
             f"{args.allocations}`. Front log HV without fine-tuning, median (per seed).", "",
             "| task | variant | val log HV | test log HV | CPU s (nested + search) |", "| --- | --- | --- | --- | --- |"]
    for task in args.tasks.split(","):
        for name, settings in variants.items():
            runs = []
            for seed in range(args.seeds):
                # -r: results with their front rows and the suite's test floor (earlier ones lack both)
                cache = os.path.join(args.cache, f"{task}-{name}-s{seed}-a{args.allocations}-r.json")
                runs.append(cached_json(cache, lambda: one(Path(args.storage), task, settings, seed, args.allocations)))

            def cell(key: str) -> str:
                values = [r[key] for r in runs]
                return f"{statistics.median(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"

            cpu = statistics.median(r["nested_cpu"] + r["search_cpu"] for r in runs)
            diverged = sum(bool(r.get("diverged")) for r in runs)
            note = f" ({diverged} diverged: log HV 0)" if diverged else ""
            lines.append(f"| {task} | {name}{note} | {cell('val')} | {cell('test')} | {cpu:.0f} |")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
