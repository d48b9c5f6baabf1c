"""`rank-search launch` and `rank-search resume`: run a sweep with Ray Tune + Optuna."""
from __future__ import annotations

import argparse
import os
import sys

from .. import schema
from ..errors import RankSearchError
from ._names import check_space
from ._scripting import LazyChoices, command

EXIT_INTERRUPTED = 130
EXIT_TRIALS_FAILED = 1


def _resources(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, _, amount = item.partition("=")
        try:
            out[name] = float(amount)
        except ValueError:
            name = ""
        if not name:
            raise RankSearchError(f"--resource expects NAME=AMOUNT, got {item!r}")
    return out


SEARCHERS = LazyChoices.of("searcher", "rank_search.search.settings", "SEARCHERS")
SCHEDULERS = LazyChoices.of("scheduler", "rank_search.search.settings", "SCHEDULERS")
TRACKERS = LazyChoices.of("tracker", "rank_search.search.settings", "LOG_TO")


def _launch_defaults() -> dict:
    """The defaults of ``LaunchConfig``, the one owner of each launch setting's default (no torch)."""
    import dataclasses

    from ..search.settings import LaunchConfig

    return {f.name: f.default for f in dataclasses.fields(LaunchConfig) if f.default is not dataclasses.MISSING}


def add_parser(sub) -> None:
    d = _launch_defaults()
    p = sub.add_parser("launch", help="start a rank search sweep (Ray Tune + Optuna)",
                       description="Run a multi-objective search (validation accuracy vs compression) over "
                                   "methods, knobs and per-layer ranks. Local by default (a private Ray). "
                                   "Two seeds: --searcher-seed drives the Optuna sampler (which configs are "
                                   "tried), --train-seed every trial's training (weights, data order).")
    p.add_argument("--space", required=True, help="shipped space name (`rank-search list spaces`: demo, "
                                                  "resnet20_cifar10, ...) or a space.yaml file")
    p.add_argument("--num-samples", type=int, help=f"number of trials (default: {d['num_samples']}; with "
                                                    "--budget-hours, at most this many, default 1000)")
    p.add_argument("--ablate", action="append", metavar="PART",
                   help="switch a part of the refine searcher off, to measure what it adds (ablation studies; "
                        "repeatable): method-share (default: none)")
    p.add_argument("--refine-extra", action="append", metavar="PART",
                   help="switch on an opt-in part of the refine searcher (repeatable): gap-fill (fill the "
                        "front's widest compression gap every other trial) or parent-weighting (draw half the "
                        "parents by hypervolume contribution); neither paid on the task suite (default: none)")
    p.add_argument("--budget-hours", type=float, metavar="H",
                   help="stop starting trials once the sweep has spent H trial-hours (every trial's time plus "
                        "the dense reference and profile; running trials finish): same-cost comparisons "
                        "(default: none, --num-samples ends the sweep)")
    p.add_argument("--epochs", type=int, help="epoch budget per trial (default: the space's `epochs`)")
    p.add_argument("--searcher", default=d["searcher"], type=SEARCHERS, choices=SEARCHERS, metavar="SEARCHER",
                   help="the Optuna sampler: one of %(choices)s; oneshot trains a nested model once from the "
                        "dense reference (3x --epochs, at the model's measured rate), searches its rank truncations "
                        "in one shot and fine-tunes at most --num-samples points of their front (a third of --epochs "
                        "each, at a tenth of its rate) as the trials; the space's methods must plan in channel, "
                        "spatial or tucker2 (docs/nested.md) (default: %(default)s)")
    p.add_argument("--scheduler", default=d["scheduler"], type=SCHEDULERS, choices=SCHEDULERS, metavar="SCHEDULER",
                   help="one of %(choices)s (fifo: every trial trains its full budget; mo-asha: "
                        "trials stop early at geometric epoch rungs unless they rank on the Pareto front of their "
                        "rung; mo-asha-method: the same within each method, the better of the two with "
                        "--budget-hours and long trials; asha: early stopping on val_accuracy only; "
                        "docs/search.md says when each wins; default: %(default)s)")
    p.add_argument("--max-concurrent", type=int, metavar="K",
                   help="at most K trials at once (default: as resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=d["cpus_per_trial"],
                   help="CPUs Ray reserves per trial; a trial runs that many torch threads")
    p.add_argument("--gpus-per-trial", type=float, default=d["gpus_per_trial"],
                   help="GPUs Ray reserves per trial, fractions allowed (e.g. 0.5)")
    p.add_argument("--resource", action="append", metavar="NAME=AMOUNT",
                   help="extra custom Ray resource per trial (e.g. a node label); repeatable (default: none)")
    p.add_argument("--objectives", default=",".join(schema.format_objectives(d["objectives"])),
                   help="comma-separated METRIC:max|min")
    p.add_argument("--address", default=d["address"], help="local (a private Ray) | auto | HOST:PORT")
    p.add_argument("--storage", help="experiment root: a folder or a URI like s3://bucket/path (default: ./runs); "
                                     "required on a cluster")
    p.add_argument("--name", help="experiment name (default: SPACE-DATE-TIME)")
    p.add_argument("--searcher-seed", dest="seed", type=int, default=d["seed"], metavar="SEARCHER_SEED",
                   help="seed of the Optuna sampler: which configs are tried (not the training seed)")
    p.add_argument("--train-seed", dest="train_seed", type=int, metavar="TRAIN_SEED",
                   help="training seed of every trial and of the dense reference: weights, data order, "
                        "augmentation, as `train --seed` (default: the space's `seed`, 0 if it sets none)")
    p.add_argument("--seed", dest="deprecated_seed", type=int, metavar="SEED",
                   help="deprecated alias of --searcher-seed (not the training seed of `train --seed`)")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the data set files (CIFAR, imagefolder) for every trial and the dense "
                        "reference, as `train --data-root`; kept in the sweep record for resume (default: the "
                        "space's `data_root`)")
    p.add_argument("--download", action="store_true",
                   help="download the data set (CIFAR) into the data root once, in this process, before Ray "
                        "starts; on a cluster the data root must be a folder every node reads")
    p.add_argument("--max-failures", type=int, default=d["max_failures"],
                   help="retries of a crashed trial from its checkpoint")
    p.add_argument("--dense", metavar="CKPT", help="trained dense weights (a state_dict of the space's model) to use "
                                                   "as the dense reference (default: the sweep trains one)")
    p.add_argument("--profile", metavar="DIR", help="a sensitivity profile measured on the --dense weights "
                   "(`rank-search profile --dense CKPT --out DIR`, or an earlier sweep's folder): a budget-driven "
                   "space allocates from it instead of measuring one (default: the sweep measures it)")
    p.add_argument("--min-compression", type=float, metavar="X",
                   help="lowest target MACs compression searched, in a budget-driven space (default: the space's)")
    p.add_argument("--max-compression", type=float, metavar="Y",
                   help="highest target MACs compression searched, in a budget-driven space (default: the space's)")
    p.add_argument("--warm-start", type=int, metavar="N",
                   help="trials enqueued before the sampler takes over (default: half the budget, every method "
                        "at least once; 0 = none)")
    p.add_argument("--nested-epochs", type=int, metavar="N",
                   help="with --searcher oneshot: epochs of the nested model's training, its main cost (default: "
                        "four times the space's epochs for the CIFAR ResNets, else three times; docs/nested.md)")
    p.add_argument("--nested-lr", type=float, metavar="LR",
                   help="with --searcher oneshot: the nested model's learning rate (default: the one measured for "
                        "the model, 0.1 for the CIFAR ResNets and 0.01 for lenet5_wide, else the space's central "
                        "train.lr; docs/nested.md)")
    p.add_argument("--log-to", action="append", type=TRACKERS, choices=TRACKERS, metavar="TRACKER",
                   help="also send every trial's parameters and metrics to %(choices)s; repeatable. Inside the "
                        "experiment folder by default: mlflow.db (or MLFLOW_TRACKING_URI), tensorboard/, wandb/ "
                        "(offline unless WANDB_MODE is set); needs pip install 'rank-search[tracking]'")
    p.set_defaults(func=run_launch)

    r = sub.add_parser("resume", help="finish an interrupted sweep (loads Ray's pickles: only your own experiments)",
                       description="Continue unfinished and errored trials from their checkpoints with the "
                                   "searcher state restored; finished trials are kept as they are. The "
                                   "experiment may have been moved or copied since launch. Trust: resume "
                                   "loads Ray Tune's pickled state (tuner.pkl, the searcher files), and "
                                   "unpickling runs code, so resume only experiments that you or your "
                                   "cluster wrote. status, export and analyze unpickle nothing.")
    r.add_argument("experiment", metavar="EXP_DIR", help="the experiment folder or URI, wherever it is now")
    r.set_defaults(func=run_resume)


def _finish(outcome) -> int:
    from analysis.loading import load_experiment
    from analysis.summary import front, front_text

    exp = load_experiment(outcome.path)
    if outcome.nothing_to_do:
        print(f"nothing to resume: all {outcome.counts.get('TERMINATED', 0)} trials of {outcome.path} finished",
              file=sys.stderr)
    print(front_text(exp))
    print(f"\nexperiment: {outcome.path}")
    counts = outcome.counts
    done = counts.get("TERMINATED", 0)
    if not outcome.complete:
        print(f"sweep interrupted: {done} of {outcome.num_samples} trials finished; resume with:\n"
              f"  {command('resume', outcome.path)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if counts.get("ERROR"):
        print(f"{counts['ERROR']} trial(s) failed after their retries (see error.txt in their folders); "
              f"retry them with: {command('resume', outcome.path)}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    if front(exp).empty:
        print("no trial reported usable objectives (all diverged?): nothing to export; try a smaller "
              "learning rate or other knob ranges", file=sys.stderr)
        return 0
    print(f"next: {command('export', outcome.path, '--out', 'best.yaml')}")
    return 0


def run_launch(args: argparse.Namespace) -> int:
    from ..search import LaunchConfig, parse_objectives

    check_space(args.space)  # a bad space name is refused before torch and ray are imported

    if args.deprecated_seed is not None:
        print("rank-search launch: --seed is deprecated, use --searcher-seed", file=sys.stderr)
        args.seed = args.deprecated_seed

    cfg = LaunchConfig(
        space=args.space, num_samples=_num_samples(args), epochs=args.epochs, searcher=args.searcher,
        scheduler=args.scheduler, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, resources=_resources(args.resource), address=args.address,
        storage=args.storage, name=args.name, seed=args.seed, train_seed=args.train_seed,
        data_root=args.data_root, download=args.download,
        objectives=parse_objectives(args.objectives), max_failures=args.max_failures, dense=args.dense,
        profile=args.profile,
        min_compression=args.min_compression, max_compression=args.max_compression, warm_start=args.warm_start,
        log_to=tuple(args.log_to or ()), budget_hours=args.budget_hours, ablate=tuple(args.ablate or ()),
        refine_extras=tuple(args.refine_extra or ()), nested_epochs=args.nested_epochs,
        nested_lr=args.nested_lr,
    )
    from ..search.tracking import check_trackers

    check_trackers(cfg.log_to, storage=cfg.storage)  # a missing package is refused before any folder is made
    from ..search.sweep import launch

    return _finish(launch(cfg))


def _num_samples(args: argparse.Namespace) -> int:
    if args.num_samples is not None:
        return args.num_samples
    if args.budget_hours is not None:
        from ..search.settings import BUDGET_SAMPLES

        return BUDGET_SAMPLES
    return _launch_defaults()["num_samples"]


def run_resume(args: argparse.Namespace) -> int:
    path = args.experiment
    if not schema.is_uri(path) and not os.path.isfile(os.path.join(path, schema.SWEEP_FILE)):
        # refused before ray and torch are imported (sweep.resume says the same for a URI)
        raise RankSearchError(f"{path!r} is not a rank-search experiment (no {schema.SWEEP_FILE})")
    from ..search.tracking import check_recorded_trackers

    check_recorded_trackers(path)  # before Tune unpickles their callbacks
    from ..search.sweep import resume

    return _finish(resume(args.experiment))
