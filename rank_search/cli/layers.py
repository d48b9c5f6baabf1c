"""`rank-search layers`: the layers a plan may name, with max ranks, params and MACs."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="list a model's eligible layers (to write a plan)",
                       description="Print every Conv2d/Linear of the model with its max rank per scheme, params "
                                   "and MACs. Layers marked '*' are in a uniform plan by default; the others "
                                   "(stem, classifier) may be named in a plan file.")
    p.add_argument("--model", required=True, help="model name, or your own builder package.module:function")
    p.add_argument("--dataset", default="mnist5k", help="sets input channels, classes and image size")
    p.add_argument("--data-root")
    p.add_argument("--counting", choices=("all", "trp"), default="all",
                   help="all: every Conv2d and Linear, '*' marks a uniform plan's layers; trp: the TRP authors' "
                        "counting, '*' marks the stride-1 3x3 convs they decompose and MACs count convolutions "
                        "only (no classifier)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cost import count_macs, count_params, trp_layers
    from ..data import dataset_info
    from ..layers import SCHEMES, get_scheme
    from ..models import create_model_for
    from ..plan import candidate_layers, eligible_layers

    info = dataset_info(args.dataset, data_root=args.data_root)
    model = create_model_for(args.model, info)
    shape = (info.in_channels, info.image_size, info.image_size)
    total_macs, macs = count_macs(model, shape, counting=args.counting)
    eligible = trp_layers(model) if args.counting == "trp" else eligible_layers(model)
    schemes = SCHEMES.names()
    header = ["", "layer", "type", "weight shape", *[f"max[{s}]" for s in schemes], "params", "MACs"]
    rows = [header]
    for name, layer in candidate_layers(model).items():
        maxes = []
        for s in schemes:
            cls = get_scheme(s)
            if cls.unsupported_reason(layer):
                maxes.append("-")
            else:
                m = cls.max_rank(layer)
                maxes.append("x".join(map(str, m)) if isinstance(m, tuple) else str(m))
        rows.append(["*" if name in eligible else "", name, type(layer).__name__,
                     "x".join(map(str, layer.weight.shape)), *maxes,
                     f"{sum(p.numel() for p in layer.parameters()):,}", f"{macs.get(name, 0):,}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if args.counting == "trp":
        print(f"\n{args.model} on {args.dataset} {shape}: {count_params(model):,} params, {total_macs:,} MACs of "
              f"the convolutions (the TRP authors' counting); {len(eligible)} stride-1 non-1x1 convs after the "
              "stem, which they decompose (*)")
    else:
        print(f"\n{args.model} on {args.dataset} {shape}: {count_params(model):,} params, {total_macs:,} MACs; "
              f"{len(eligible)} layers in a uniform plan (*)")
    return 0
