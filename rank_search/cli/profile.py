"""`rank-search profile`: the layer sensitivity profile of a model (sensitivity.csv)."""
from __future__ import annotations

import argparse

from ._names import check_file, check_model
from ._scripting import LazyChoices

DATASETS = LazyChoices.builtin("dataset", "datasets")
SCHEMES = LazyChoices.builtin("scheme", "schemes")


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="measure how sensitive each layer is to its rank (sensitivity.csv)",
                       description="Decompose one eligible layer at a time of a trained dense model, at about ten "
                                   "rank ratios, and measure each proxy of the fine-tuned accuracy: validation "
                                   "accuracy and loss after BatchNorm re-estimation (bn), the same after a few "
                                   "fine-tuning steps (finetune), and the kept spectral energy and relative "
                                   "operator-norm error (energy, no evaluation). Writes sensitivity.csv and "
                                   "sensitivity.yaml to --out; `launch` of a budget-driven space does this itself.")
    p.add_argument("--model", required=True, help="model name or package.module:builder")
    p.add_argument("--dataset", default="mnist5k", type=DATASETS, choices=DATASETS, metavar="DATASET",
                   help="one of %(choices)s (default: mnist5k, embedded)")
    p.add_argument("--data-root", help="folder holding the data set files (CIFAR, imagefolder; default: none)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dense", metavar="CKPT",
                        help="trained dense weights (a state_dict file; default: train them, see --epochs)")
    source.add_argument("--epochs", type=int, default=3, help="train the dense model this many epochs first "
                                                              "(default 3; ignored with --dense)")
    p.add_argument("--scheme", action="append", type=SCHEMES, choices=SCHEMES, metavar="SCHEME",
                   help="scheme to profile, one of %(choices)s; repeatable (default: channel)")
    p.add_argument("--proxies", default="bn,finetune,energy", help="comma-separated, some of: bn, finetune, energy")
    p.add_argument("--ratios", help="comma-separated rank ratios in (0, 1] (default 0.02 ... 1.0, ten values)")
    p.add_argument("--seed", type=int, default=0, help="training seed of the dense model (default 0)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=run)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from ..errors import RankSearchError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise RankSearchError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise RankSearchError(f"{flag} must lie in (0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from ..errors import RankSearchError
    from ..schema import PROFILE_PROXIES
    from ._output import atomic_output_dir, check_out_dir
    from ._progress import Progress

    proxies = tuple(p.strip() for p in args.proxies.split(",") if p.strip())
    bad = [p for p in proxies if p not in PROFILE_PROXIES]
    if bad or not proxies:
        raise RankSearchError(f"--proxies must name some of {', '.join(PROFILE_PROXIES)}, got {args.proxies!r}")
    ratios = _floats(args.ratios, "--ratios") if args.ratios else None
    if args.epochs is not None and args.epochs < 1:
        raise RankSearchError(f"--epochs must be >= 1, got {args.epochs}")
    check_model(args.model)
    if args.dense is not None:
        check_file(args.dense, what="--dense")
    check_out_dir(args.out, overwrite=args.overwrite)
    from ..allocation import save_profile
    from ..profile import DEFAULT_RATIOS, measure_profile
    from ..run import RunSpec, train

    schemes = tuple(args.scheme or ["channel"])
    progress = Progress()
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        spec = RunSpec(model=args.model, dataset=args.dataset, method="full", epochs=args.epochs or 1,
                       seed=args.seed, data_root=args.data_root, init=args.dense)
        if args.dense:
            from ..run import prepare

            trainer = prepare(spec)
            source = {"dense": args.dense}
        else:
            progress.line(f"training the dense {args.model} for {args.epochs} epochs ...")
            trainer = train(spec, progress=progress).trainer
            source = {"dense_epochs": args.epochs}
        profile = measure_profile(trainer.model.cpu(), trainer.data, schemes=schemes,
                                  ratios=ratios or DEFAULT_RATIOS, proxies=proxies,
                                  meta={"model": args.model, "dataset": args.dataset, **source},
                                  progress=progress.line)
        save_profile(tmp, profile)
    print(f"wrote {args.out}/sensitivity.csv ({len(profile.rows)} rows: {len({r['layer'] for r in profile.rows})} "
          f"layers x {len(ratios or DEFAULT_RATIOS)} ratios, proxies {', '.join(proxies)}) and sensitivity.yaml "
          f"in {profile.meta['seconds']:.1f}s")
    return 0
