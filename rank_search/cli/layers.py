"""`rank-search layers`: the layers a plan may name, with max ranks, params and MACs."""
from __future__ import annotations

import argparse
import json

from ._scripting import LazyChoices

DATASETS = LazyChoices.of("dataset", "rank_search.data", "DATASETS")
COUNTINGS = LazyChoices.of("counting", "rank_search.cost", "COUNTINGS")
#: The keys of `layers --json` (stable; README) and of each entry of its ``layers`` list.
JSON_KEYS = ("model", "dataset", "input_shape", "counting", "params", "macs", "layers")
LAYER_KEYS = ("name", "type", "weight_shape", "max_rank", "params", "macs", "in_uniform_plan", "trp_decomposed")


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="list a model's eligible layers (to write a plan)",
                       description="Print every Conv2d/Linear of the model with its max rank per scheme, params "
                                   "and MACs. Layers marked '*' are in a uniform plan by default; the others "
                                   "(stem, classifier) may be named in a plan file.")
    p.add_argument("--model", required=True, help="model name (`rank-search list models`), or your own builder "
                                                  "package.module:function")
    p.add_argument("--dataset", default="mnist5k", type=DATASETS, choices=DATASETS, metavar="DATASET",
                   help="sets input channels, classes and image size: one of %(choices)s")
    p.add_argument("--data-root", help="folder holding the data set files (CIFAR, imagefolder; default: none)")
    p.add_argument("--counting", default="all", type=COUNTINGS, choices=COUNTINGS, metavar="COUNTING",
                   help="all: every Conv2d and Linear, '*' marks a uniform plan's layers; trp: the TRP authors' "
                        "counting, '*' marks the stride-1 3x3 convs they decompose and MACs count convolutions "
                        "only (no classifier)")
    p.add_argument("--json", action="store_true",
                   help=f"print one JSON object (keys: {', '.join(JSON_KEYS)}; each layer: "
                        f"{', '.join(LAYER_KEYS)}) instead of the table")
    p.set_defaults(func=run)


def _rank_text(rank) -> str:
    return "-" if rank is None else "x".join(map(str, rank)) if isinstance(rank, (list, tuple)) else str(rank)


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
    uniform, trp = set(eligible_layers(model)), set(trp_layers(model))
    marked = trp if args.counting == "trp" else uniform
    schemes = SCHEMES.names()
    entries = []
    for name, layer in candidate_layers(model).items():
        maxes = {}
        for s in schemes:
            cls = get_scheme(s)
            top = None if cls.unsupported_reason(layer) else cls.max_rank(layer)
            maxes[s] = list(top) if isinstance(top, tuple) else top
        entries.append({"name": name, "type": type(layer).__name__, "weight_shape": list(layer.weight.shape),
                        "max_rank": maxes, "params": sum(p.numel() for p in layer.parameters()),
                        "macs": macs.get(name, 0), "in_uniform_plan": name in uniform, "trp_decomposed": name in trp})
    if args.json:
        out = {"model": args.model, "dataset": args.dataset, "input_shape": list(shape), "counting": args.counting,
               "params": count_params(model), "macs": total_macs, "layers": entries}
        print(json.dumps({k: out[k] for k in JSON_KEYS}, indent=2))
        return 0
    header = ["", "layer", "type", "weight shape", *[f"max[{s}]" for s in schemes], "params", "MACs"]
    rows = [header]
    for e in entries:
        rows.append(["*" if e["name"] in marked else "", e["name"], e["type"], "x".join(map(str, e["weight_shape"])),
                     *[_rank_text(e["max_rank"][s]) for s in schemes], f"{e['params']:,}", f"{e['macs']:,}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if args.counting == "trp":
        print(f"\n{args.model} on {args.dataset} {shape}: {count_params(model):,} params, {total_macs:,} MACs of "
              f"the convolutions (the TRP authors' counting); {len(marked)} stride-1 non-1x1 convs after the "
              "stem, which they decompose (*)")
    else:
        print(f"\n{args.model} on {args.dataset} {shape}: {count_params(model):,} params, {total_macs:,} MACs; "
              f"{len(marked)} layers in a uniform plan (*)")
    return 0
