"""Run the task suite (benchmarks/suite/README.md) and report it.

Every (task, arm, seed) is one real `rank-search launch`; a finished sweep is summarised once into
``results/TASK/ARM-sSEED.json`` and never run again, an interrupted one is resumed. The report is
computed from those summaries alone.

    .venv/bin/python benchmarks/suite/run.py --tasks resnet20-digits-channel --seeds 1
    .venv/bin/python benchmarks/suite/run.py --report-only --out benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE.parent)]  # the project and benchmarks/ (for _report)

from _report import emit  # noqa: E402
from analysis.hypervolume import hypervolume  # noqa: E402
from analysis.pareto import pareto_mask  # noqa: E402

TASKS = ("lenet5w-mnist-tucker2", "resnet20-digits-channel", "lenet5w-digits-channel",
         "lenet5w-mnist-spatial", "resnet32-digits-tiled")
HELD_OUT = ("lenet5w-mnist-spatial", "resnet32-digits-tiled")
LEVELS = (2.0, 4.0, 8.0, 16.0)
MARGIN = 0.05  # the log hypervolume's floor: dense accuracy minus 5 pt
REACH = 0.95  # a trial reaches a compression level within 5% (the allocation's tolerance)
TRIALS = 16
# --searcher oneshot: the front points it fine-tunes (its --num-samples); a task whose scheme the
# nested model lacks (tiled) runs it in the channel scheme on the same model and data
ONESHOT_POINTS = 4
# oneshot-long: the nested training at six times a trial's epochs (the suite's trials train 6); at
# the space's rate that is where ResNet-20's front met the grid's on the tuning tasks (docs/nested.md)
LONG_NESTED_EPOCHS = 36
# oneshot-mid: four times a trial's epochs, between oneshot's 18 (three times) and oneshot-long's 36; the
# CIFAR ResNets' default since 3ce31c5 (models.nested_epochs_factor), so their arm with the default
MID_NESTED_EPOCHS = 24
NESTED_SCHEMES = ("channel", "spatial", "tucker2")


def arms(trials: int) -> dict[str, tuple[dict, list[str], bool]]:
    """Arm name -> (changes to the space's ``ranks``, extra launch flags, whether the arm gets the
    uniform grid's trial-hours of the same task and seed as its ``--budget-hours``)."""
    # gap fills and parent weighting were on by default until the ablation below made them opt-in;
    # the arms measured before keep them, so a rerun of one is the sweep its summary came from
    extras = ["--refine-extra", "gap-fill", "--refine-extra", "parent-weighting"]
    mo = ["--scheduler", "mo-asha", *extras]
    return {
        "default": ({}, [], False),
        "uniform-grid": ({"allocations": ["uniform"]}, ["--warm-start", str(trials)], False),
        # the default search given the grid's CPU-hours instead of 16 trials (`--budget-hours`)
        "default-budget": ({}, [], True),
        # the default before the ablation: gap fills and parent weighting on
        "refine-extras": ({}, extras, False),
        # the same cost as the grid, spent by MO-ASHA (more trials, most stopped early)
        "mo-asha": ({}, mo, True),
        # the same, each trial compared at a rung with the trials of its own method only
        "mo-asha-method": ({}, ["--scheduler", "mo-asha-method", *extras], True),
        # MO-ASHA with one part of the then default search off at a time (the ablation)
        "mo-asha-no-profile": ({"allocations": ["uniform"]}, mo, True),
        "mo-asha-no-fill": ({}, ["--scheduler", "mo-asha", "--refine-extra", "parent-weighting"], True),
        "mo-asha-no-share": ({}, [*mo, "--ablate", "method-share"], True),
        "mo-asha-no-weighting": ({}, ["--scheduler", "mo-asha", "--refine-extra", "gap-fill"], True),
        "mo-asha-no-warm-start": ({}, [*mo, "--warm-start", "0"], True),
        # train once, search many (issue 31): a nested model, its one-shot front, a few points fine-tuned
        "oneshot": ({}, ["--searcher", "oneshot"], False),
        # the same with a longer nested training (`--nested-epochs`): more cost, a better front?
        "oneshot-long": ({}, ["--searcher", "oneshot", "--nested-epochs", str(LONG_NESTED_EPOCHS)], False),
        "oneshot-mid": ({}, ["--searcher", "oneshot", "--nested-epochs", str(MID_NESTED_EPOCHS)], False),
        # the default with distillation from the dense reference and data-aware decompositions (issue 30)
        "distill": ({}, [], False),
        # the default with data-aware decompositions only (issue 30)
        "data-init": ({}, [], False),
        # distill with the sequential data-aware fit and DISTILL_SEQ's temperature (issue 30)
        "distill-seq": ({}, [], False),
    }


DISTILL = {"weight": 0.5, "temperature": 4.0}  # the values benchmarks/distill_init.py measures
DISTILL_SEQ = {"weight": 0.5, "temperature": 1.0}  # distill_init.py: no collapse at T 1 (LeNet-5 wide)
DATA_AWARE = {"posthoc", "deeptwist"}  # the methods with init_decomposition
DATA_AWARE_SCHEMES = ("channel", "tucker2")  # the schemes with a data-aware form (docs/training.md)


def data_init_space(space: dict, posthoc_init: str = "data") -> dict:
    """The space the data-init arm runs: the task's, with ``init_decomposition: data`` where the
    method has it and its scheme a data-aware form (channel, tucker2); posthoc's ``posthoc_init``."""
    methods = {}
    for name, knobs in space["methods"].items():
        knobs = dict(knobs or {})
        if name in DATA_AWARE and knobs.get("scheme", "channel") in DATA_AWARE_SCHEMES:
            knobs["init_decomposition"] = posthoc_init if name == "posthoc" else "data"
        methods[name] = knobs
    return {**space, "methods": methods}


DISTILL_ARMS = {"distill": (DISTILL, "data"), "distill-seq": (DISTILL_SEQ, "data_sequential")}  # posthoc's init


def distill_space(space: dict, arm: str) -> dict:
    """The space a distill arm runs: ``data_init_space`` with the arm's posthoc init and distillation."""
    distill, posthoc_init = DISTILL_ARMS[arm]
    return {**data_init_space(space, posthoc_init), "distill": dict(distill)}


def oneshot_space(space: dict) -> dict:
    """The space the oneshot arm runs: the task's, its methods replaced by the nested method in the
    channel scheme where the task plans in a scheme the nested model lacks."""
    schemes = {(knobs or {}).get("scheme", "channel") for knobs in space["methods"].values()}
    if schemes <= set(NESTED_SCHEMES):
        return space
    return {**space, "methods": {"nested": {"scheme": "channel"}}}


# ---- running ----------------------------------------------------------------------------------

def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cli() -> list[str]:
    return [sys.executable, "-m", "rank_search"]


def run_sweep(storage: Path, task: str, arm: str, seed: int, trials: int, log: Path, budget: float | None) -> Path:
    """Launch (or resume) one sweep; returns its folder once it has finished. ``budget``: its
    trial-hours, for the arms that run to a budget instead of ``trials``."""
    ranks, flags, _ = arms(trials)[arm]
    name = f"{task}-{arm}-s{seed}"
    path = storage / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "a", encoding="utf-8") as out:
        if (path / "rank_search_sweep.yaml").is_file():  # the sweep record: resume finishes it
            cmd = [*_cli(), "resume", str(path)]
        else:
            if path.exists():  # a launch cut before it wrote its record: nothing to keep
                import shutil

                shutil.rmtree(path)
            with open(HERE / "spaces" / f"{task}.yaml", encoding="utf-8") as fh:
                space = yaml.safe_load(fh)
            space = {**space, "name": name, "seed": seed, "ranks": {**space["ranks"], **ranks}}
            if arm.startswith("oneshot"):
                space = oneshot_space(space)
                trials = ONESHOT_POINTS
            elif arm in DISTILL_ARMS:
                space = distill_space(space, arm)
            elif arm == "data-init":
                space = data_init_space(space)
            space_file = storage / f"{name}.yaml"
            space_file.write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
            count = ["--budget-hours", f"{budget:.6f}"] if budget is not None else ["--num-samples", str(trials)]
            cmd = [*_cli(), "launch", "--space", str(space_file), *count,
                   "--searcher-seed", str(seed), "--train-seed", str(seed), "--storage", str(storage),
                   "--name", name, "--max-concurrent", "2", *flags]
        print(f"{dt.datetime.now():%H:%M:%S} {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return path


def summarise(path: Path, task: str, arm: str, seed: int, wall: float) -> dict:
    """What the report needs of one finished sweep, in plain JSON."""
    from analysis.loading import epoch_history, in_trial_order, load_experiment
    from analysis.quality import METHOD_COLUMN

    exp = load_experiment(str(path))
    t = in_trial_order(exp.trials)
    with open(path / "dense.yaml", encoding="utf-8") as fh:
        dense = yaml.safe_load(fh)
    ref = float(dense.get("seconds_total", 0.0))
    profile = 0.0
    if "profile_task_seconds" in dense:  # a profile measured in parallel parts: their summed time
        ref -= float(dense["profile_seconds"])
        profile = float(dense["profile_task_seconds"])
    with open(path / "rank_search_sweep.yaml", encoding="utf-8") as fh:
        allocations = (yaml.safe_load(fh)["space"].get("ranks") or {}).get("allocations") or ["sensitivity", "uniform"]
    if "sensitivity" not in allocations:
        # a uniform allocation never reads the profile; a sweep that measured one anyway (an old
        # launch) is charged without it, as one that skips it would cost
        profile = 0.0
    # --searcher oneshot: the nested model's training and the one-shot search, before any trial
    oneshot = float(dense.get("oneshot_seconds", 0.0))

    def val(row, key):
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and v != v) else (float(v) if key != METHOD_COLUMN else v)

    def history(folder: str) -> dict:
        h = epoch_history(str(path), folder)
        return {"val_history": [e.get("val_accuracy") for e in h],
                "epoch_seconds": [e.get("time_this_iter_s") for e in h]}

    rows = [{"trial_id": str(r["trial_id"]), "status": str(r["status"]), "method": val(r, METHOD_COLUMN),
             "macs_compression": val(r, "macs_compression"), "val_accuracy": val(r, "val_accuracy"),
             "test_accuracy": val(r, "test_accuracy"), "seconds": val(r, "time_total_s") or 0.0,
             "epochs": val(r, "epochs_run") or 0.0, "stopped_rung": val(r, "stopped_rung"),
             **history(r["folder"])} for _, r in t.iterrows()]
    return {"task": task, "arm": arm, "seed": seed, "commit": _git_commit(), "date": str(dt.date.today()),
            "machine": f"{platform.node()}, {os.cpu_count()} cores", "wall_seconds": wall,
            "dense": {"val_accuracy": float(dense["val_accuracy"]), "test_accuracy": float(dense["test_accuracy"]),
                      "source": dense.get("source"), "epochs": (dense.get("run") or {}).get("epochs")},
            "reference_cpu_seconds": ref + profile + oneshot, "profile_cpu_seconds": profile,
            "oneshot_cpu_seconds": oneshot, "trials": rows}


def _add_histories(out: Path, path: Path) -> None:
    """Give a summary written before the per-epoch histories were kept its trials' histories (from
    the sweep, where it is still on disk); what it recorded of its run stays as it was."""
    old = json.loads(out.read_text(encoding="utf-8"))
    if all("val_history" in t for t in old["trials"]) or not (path / "rank_search_sweep.yaml").is_file():
        return
    new = summarise(path, old["task"], old["arm"], old["seed"], old["wall_seconds"])
    keep = {k: old[k] for k in ("commit", "date", "machine", "wall_seconds")}
    out.write_text(json.dumps({**new, **keep}, indent=1), encoding="utf-8")


FRONT = "-front"  # ARM-front: a oneshot arm's front before fine-tuning, read from its summaries


def front_points(path: Path) -> list[dict]:
    """The one-shot front of the sweep at ``path`` without fine-tuning: each factorized front
    point exported as the search evaluated it (``export --oneshot``), on validation and test."""
    from rank_search.search.oneshot_export import export_point
    from rank_search.search.oneshot_export import front_points as rows

    out = []
    for row in rows(str(path)):
        m = export_point(str(path), row).metrics
        out.append({"point": row["point"], "macs_compression": m["macs_compression"],
                    "val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"]})
    return out


def _add_front(out: Path, path: Path) -> None:
    """Give a oneshot arm's summary its ``front_points`` (from the sweep, where it is on disk)."""
    s = json.loads(out.read_text(encoding="utf-8"))
    if not s["arm"].startswith("oneshot") or "front_points" in s or not (path / "oneshot.csv").is_file():
        return
    out.write_text(json.dumps({**s, "front_points": front_points(path)}, indent=1), encoding="utf-8")


def _front_arm(s: dict) -> dict:
    """The summary of arm ``ARM-front``: the one-shot front's points as zero-cost trials; its cost
    the reference, the nested training and the search (no fine-tuning)."""
    trials = [{"trial_id": f"point{p['point']}", "status": "TERMINATED", "method": "nested",
               "macs_compression": p["macs_compression"], "val_accuracy": p["val_accuracy"],
               "test_accuracy": p["test_accuracy"], "seconds": 0.0, "epochs": 0.0, "stopped_rung": None,
               "val_history": [], "epoch_seconds": []} for p in s["front_points"]]
    return {**s, "arm": s["arm"] + FRONT, "trials": trials}


def summary_path(results: Path, task: str, arm: str, seed: int) -> Path:
    return results / task / f"{arm}-s{seed}.json"


def load_summaries(results: Path) -> dict[tuple[str, str, int], dict]:
    out = {}
    for f in sorted(results.glob("*/*.json")):
        s = json.loads(f.read_text(encoding="utf-8"))
        out[(s["task"], s["arm"], int(s["seed"]))] = s
        if "front_points" in s:
            out[(s["task"], s["arm"] + FRONT, int(s["seed"]))] = _front_arm(s)
    return out


# ---- metrics (from summaries only) --------------------------------------------------------------

def _usable(s: dict) -> list[dict]:
    return [r for r in s["trials"] if r["macs_compression"] and r["val_accuracy"] is not None
            and r["test_accuracy"] is not None]


def log_hv(rows: list[dict], floor: float, metric: str, front_by: str | None = None) -> float:
    """Log hypervolume of ``rows`` in ``metric`` above ``floor``; with ``front_by``, of the front
    chosen on that metric (the validation front measured on test)."""
    if front_by and rows:
        keep = pareto_mask(np.array([[r["macs_compression"], r[front_by]] for r in rows], float), ["max", "max"])
        rows = [r for r, k in zip(rows, keep) if k]
    pts = np.array([[np.log2(r["macs_compression"]), r[metric]] for r in rows], float).reshape(-1, 2)
    pts = pts[(pts[:, 0] > 0) & (pts[:, 1] > floor)]
    return float(hypervolume(pts, ["max", "max"], (0.0, floor))) if len(pts) else 0.0


def cpu_seconds(s: dict, first: int | None = None) -> float:
    rows = s["trials"] if first is None else s["trials"][:first]
    return s["reference_cpu_seconds"] + sum(r["seconds"] for r in rows)


def picked_test(rows: list[dict], level: float) -> float:
    """Test accuracy of the best-validation trial reaching ``level`` (no selection on test)."""
    rows = [r for r in rows if r["macs_compression"] >= level * REACH]
    if not rows:
        return float("nan")
    return max(rows, key=lambda r: (r["val_accuracy"], r["macs_compression"]))["test_accuracy"]


def cpu_to_reach(s: dict, target: float, floor: float) -> float:
    """CPU seconds until the trials so far (in start order) reach log HV ``target``; nan if never."""
    rows = s["trials"]
    for k in range(1, len(rows) + 1):
        if log_hv(_usable({"trials": rows[:k]}), floor, "val_accuracy") >= target - 1e-12:
            return cpu_seconds(s, k)
    return float("nan")


def hv_at_cpu(s: dict, budget: float, floor: float) -> float:
    """Log HV of the trials that had finished within ``budget`` CPU seconds (start order)."""
    rows, spent = [], s["reference_cpu_seconds"]
    for r in s["trials"]:
        spent += r["seconds"]
        if spent > budget * (1 + 1e-9):
            break
        rows.append(r)
    return log_hv(_usable({"trials": rows}), floor, "val_accuracy")


def fmt(v: float, spec: str = ".4f") -> str:
    return "-" if v != v else format(v, spec)


def _spread(diffs: list[float]) -> float:
    """Half the range of the paired differences over seeds (0 for one seed)."""
    return (max(diffs) - min(diffs)) / 2 if diffs else float("nan")


def _paired(summaries: dict, task: str, arm: str, baseline: str, floor_of) -> tuple[list[float], list[float]]:
    """Per seed run by both ``arm`` and ``baseline``: the share of the baseline's CPU-hours ``arm``
    needs to reach its validation log HV (nan: never), and ``arm``'s log HV at the baseline's
    CPU-hours minus the baseline's."""
    reach, diffs = [], []
    for sd in sorted(sd for (t, a, sd) in summaries if t == task and a == arm and (task, baseline, sd) in summaries):
        mine, g = summaries[(task, arm, sd)], summaries[(task, baseline, sd)]
        floor = floor_of(sd, g)
        ghv, gcpu = log_hv(_usable(g), floor, "val_accuracy"), cpu_seconds(g)
        reach.append(cpu_to_reach(mine, ghv, floor) / gcpu)
        diffs.append(hv_at_cpu(mine, gcpu, floor) - ghv)
    return reach, diffs


def report(summaries: dict, tasks: list[str], arm_names: list[str], baseline: str = "uniform-grid") -> str:
    """The suite's markdown section: one row per task and arm, paired with ``baseline`` by seed."""
    lines = [f"## Task suite ({dt.date.today()})", "",
             "Command: `.venv/bin/python benchmarks/suite/run.py --seeds 3` (summaries in "
             "`benchmarks/suite/results/`; `--report-only` rebuilds this from them). Tasks and held-out rules: "
             "`benchmarks/suite/README.md`. Log HV: (log2 MACs compression x validation accuracy) above the "
             "dense reference minus 5 pt; test HV is the validation front measured on test. CPU-h: every trial's "
             "time plus the dense reference and profile. Paired with the " + baseline + " of the same seed: log HV "
             "at its CPU-hours minus its own (median; spread: half the range over seeds), and the share of its "
             "CPU-hours needed to reach its log HV, per seed (-: never). Test at a level: the test accuracy of "
             "the best-validation trial reaching it (median). Machines: "
             + ", ".join(sorted({s["machine"] for s in summaries.values()})) + ".", "",
             "| task | arm | seeds | val log HV, median (per seed) | test log HV | CPU-h | "
             f"at the {baseline}'s CPU-h, minus it (spread) | CPU share to reach it | test at >= "
             + "/".join(f"{lv:g}" for lv in LEVELS) + "x |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in tasks:
        tag = f"{task} (held out)" if task in HELD_OUT else task
        base_seeds = {sd: summaries[(t, a, sd)] for (t, a, sd) in summaries if t == task and a == "default"}

        def floor_of(sd: int, s: dict, key: str = "val_accuracy") -> float:
            return (base_seeds.get(sd) or s)["dense"][key] - MARGIN

        for arm in arm_names:
            ss = {sd: summaries[(t, a, sd)] for (t, a, sd) in summaries if t == task and a == arm}
            if not ss:
                continue
            seeds = sorted(ss)
            hv = [log_hv(_usable(ss[sd]), floor_of(sd, ss[sd]), "val_accuracy") for sd in seeds]
            thv = [log_hv(_usable(ss[sd]), floor_of(sd, ss[sd], "test_accuracy"), "test_accuracy",
                          front_by="val_accuracy") for sd in seeds]
            cpu = [cpu_seconds(ss[sd]) / 3600 for sd in seeds]
            levels = []
            for lv in LEVELS:
                picks = [picked_test(_usable(ss[sd]), lv) for sd in seeds]
                levels.append(fmt(float(np.nanmedian(picks)), ".3f") if any(v == v for v in picks) else "-")
            paired = ""
            if arm != baseline:
                reach, diffs = _paired(summaries, task, arm, baseline, floor_of)
                if diffs:
                    paired = (f"{fmt(statistics.median(diffs), '+.4f')} ({fmt(_spread(diffs))}) | "
                              + ", ".join(fmt(r, ".2f") for r in reach))
            lines.append(f"| {tag} | {arm} | {len(seeds)} | {fmt(statistics.median(hv), '.3f')} "
                         f"({', '.join(fmt(v, '.3f') for v in hv)}) | {fmt(statistics.median(thv), '.3f')} | "
                         f"{statistics.median(cpu):.3f} | {paired or ' | '} | " + " / ".join(levels) + " |")
    runs = [s for (_, arm, _), s in summaries.items() if not arm.endswith(FRONT)]  # a -front arm ran nothing
    lines += ["", f"Cost of every summarised sweep: {sum(cpu_seconds(s) for s in runs) / 3600:.1f} "
                  f"CPU-hours, {len(runs)} sweeps."]
    return "\n".join(lines) + "\n"


def details(summaries: dict, tasks: list[str], arm_names: list[str], baseline: str,
            base_summaries: dict | None = None) -> str:
    """Per task, arm and seed paired with ``baseline`` (read from ``base_summaries``, another
    results folder's, when given: an arm against itself as another commit ran it): validation log
    HV minus the baseline's (each as run, not at equal CPU), the ratio of their CPU-hours, and for a
    oneshot arm its nested training plus search and its trials, in mean trials of the baseline."""
    lines = []
    for task in tasks:
        for arm in arm_names:
            for sd in sorted(sd for (t, a, sd) in summaries if t == task and a == arm):
                mine, base = summaries[(task, arm, sd)], (base_summaries or summaries).get((task, baseline, sd))
                if base is None or (arm == baseline and base_summaries is None):
                    continue
                floor = base["dense"]["val_accuracy"] - MARGIN
                diff = log_hv(_usable(mine), floor, "val_accuracy") - log_hv(_usable(base), floor, "val_accuracy")
                line = f"{task} {arm} s{sd}: log HV {diff:+.4f}, CPU x{cpu_seconds(mine) / cpu_seconds(base):.2f}"
                if mine.get("oneshot_cpu_seconds"):
                    trial = statistics.mean(r["seconds"] for r in base["trials"])
                    line += (f", nested + search {mine['oneshot_cpu_seconds'] / trial:.1f} and trials "
                             f"{sum(r['seconds'] for r in mine['trials']) / trial:.1f} {baseline} trials")
                lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: all five)")
    p.add_argument("--arms", default="default,uniform-grid", help="comma-separated arms (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default: %(default)s)")
    p.add_argument("--trials", type=int, default=TRIALS, help="trials per sweep (default: %(default)s)")
    p.add_argument("--storage", default="runs/suite", help="where the sweeps live (default: %(default)s)")
    p.add_argument("--results", default=str(HERE / "results"), help="summaries folder (default: results/ here)")
    p.add_argument("--report-only", action="store_true", help="run nothing: report the summaries")
    p.add_argument("--list-arms", action="store_true", help="print the arms and exit")
    p.add_argument("--details", action="store_true", help="with --report-only: per seed, each arm against "
                   "--baseline as run (log HV difference, CPU ratio, a oneshot arm's cost in its trials)")
    p.add_argument("--baseline", default="uniform-grid", help="the arm the others are paired with (default: %(default)s)")
    p.add_argument("--baseline-results", help="with --details: read the baseline from this summaries folder "
                   "(e.g. the same arm as an earlier commit ran it; default: --results)")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    if args.list_arms:
        for name, (ranks, flags, budgeted) in arms(args.trials).items():
            oneshot = f", --num-samples {ONESHOT_POINTS}, the nested method in channel on tiled"
            extra = {"oneshot": oneshot, "oneshot-long": oneshot, "oneshot-mid": oneshot,
                     "data-init": f", init_decomposition data for {', '.join(sorted(DATA_AWARE))}",
                     **{a: f", distill {d}, init_decomposition {i} for posthoc, data for deeptwist"
                        for a, (d, i) in DISTILL_ARMS.items()}}
            print(f"{name}: ranks {ranks or 'as shipped'}, flags {' '.join(flags) or 'none'}{extra.get(name, '')}"
                  + (", --budget-hours: the uniform grid's trial-hours" if budgeted else ""))
        return
    tasks = args.tasks.split(",")
    arm_names = args.arms.split(",")
    for t in tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; tasks: {', '.join(TASKS)}")
    for a in arm_names:
        base = a[:-len(FRONT)] if a.endswith(FRONT) else a
        if base not in arms(args.trials) or (base != a and not base.startswith("oneshot")):
            p.error(f"unknown arm {a!r}; arms: {', '.join(arms(args.trials))}, and oneshot{FRONT}")
        if base != a and not args.report_only:
            p.error(f"arm {a!r} is read from the summaries of {base!r}: run {base}, report {a} with --report-only")
    results, storage = Path(args.results), Path(args.storage).resolve()
    if args.report_only:
        for f in sorted(results.glob("*/*.json")):
            s = json.loads(f.read_text(encoding="utf-8"))
            _add_histories(f, storage / f"{s['task']}-{s['arm']}-s{s['seed']}")
            _add_front(f, storage / f"{s['task']}-{s['arm']}-s{s['seed']}")
    else:
        storage.mkdir(parents=True, exist_ok=True)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        # seeds outermost: a cut-short run still has every task and arm at the first seeds
        for seed in seeds:
            for task in tasks:
                for arm in arm_names:
                    out = summary_path(results, task, arm, seed)
                    if out.is_file():
                        _add_histories(out, storage / f"{task}-{arm}-s{seed}")
                        _add_front(out, storage / f"{task}-{arm}-s{seed}")
                        continue
                    budget = None
                    if arms(args.trials)[arm][2]:
                        grid = summary_path(results, task, "uniform-grid", seed)
                        if not grid.is_file():
                            print(f"skipping {task} {arm} seed {seed}: its budget is the uniform grid's, not run yet",
                                  file=sys.stderr)
                            continue
                        budget = cpu_seconds(json.loads(grid.read_text(encoding="utf-8"))) / 3600
                    start = time.perf_counter()
                    path = run_sweep(storage, task, arm, seed, args.trials, storage / "run.log", budget)
                    s = summarise(path, task, arm, seed, time.perf_counter() - start)
                    if arm.startswith("oneshot"):
                        s["front_points"] = front_points(path)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(s, indent=1), encoding="utf-8")
    names = list(dict.fromkeys([args.baseline, *arm_names]))
    if args.details:
        against = load_summaries(Path(args.baseline_results)) if args.baseline_results else None
        emit(details(load_summaries(results), tasks, names, args.baseline, against), args.out)
        return
    emit(report(load_summaries(results), tasks, names, args.baseline), args.out)


if __name__ == "__main__":
    main()
