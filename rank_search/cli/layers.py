"""`rank-search layers`: the layers a plan may name, with max ranks, params and MACs; with
``--ranks``, the plan a rank spec resolves to, layers kept dense by the break-even rule shown."""
from __future__ import annotations

import argparse
import json

from ._names import check_model, check_rank_spec
from ._scripting import LazyChoices

DATASETS = LazyChoices.builtin("dataset", "datasets")
COUNTINGS = LazyChoices.builtin("counting", "countings")
SCHEMES = LazyChoices.builtin("scheme", "schemes")
#: The keys of `layers --json` (stable; README) and of each entry of its ``layers`` list.
JSON_KEYS = ("model", "dataset", "input_shape", "counting", "params", "macs", "layers")
LAYER_KEYS = ("name", "type", "weight_shape", "max_rank", "params", "macs", "in_uniform_plan", "trp_decomposed")
#: With ``--ranks``: the extra top-level keys, each layer's extra ``plan`` key and the keys of
#: its value (``plan`` is null for a layer the spec does not name).
PLAN_JSON_KEYS = ("ranks", "scheme", "plan_macs", "plan_macs_compression")
PLAN_KEYS = ("scheme", "rank", "macs", "dense", "force")


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
    p.add_argument("--ranks", help="also resolve a rank spec ('ratio:0.5', 'energy:0.9', '8', ',multiple=N' rounds "
                                   "up; or a plan.yaml) on the freshly initialised model and show its plan: each "
                                   "layer's scheme, rank and MACs, or 'dense: factorized cost >= dense' for a layer "
                                   "whose factorized form would cost at least its dense MACs (force it in a plan "
                                   "file with force: true); default: none, the layers only")
    p.add_argument("--scheme", default="channel", type=SCHEMES, choices=SCHEMES, metavar="SCHEME",
                   help="with --ranks: the scheme of a uniform spec's layers: one of %(choices)s")
    p.add_argument("--json", action="store_true",
                   help=f"print one JSON object (keys: {', '.join(JSON_KEYS)}; each layer: "
                        f"{', '.join(LAYER_KEYS)}) instead of the table")
    p.set_defaults(func=run)


def _rank_text(rank) -> str:
    return "-" if rank is None else "x".join(map(str, rank)) if isinstance(rank, (list, tuple)) else str(rank)


def _plan_entries(model, spec: str, scheme: str, shape, counting: str) -> tuple[dict, int]:
    """{layer: plan entry (PLAN_KEYS)} of the layers ``spec`` names, and the planned model's MACs."""
    from ..cost import BREAK_EVEN_REASON, count_macs
    from ..plan import build_plan
    from ..surgery import compress

    plan = build_plan(model, spec, scheme=scheme)
    total, macs = count_macs(compress(model, plan, decompose=False), shape, counting=counting)
    out = {}
    for name, lp in plan.items():
        mine = sum(v for k, v in macs.items() if k.startswith(name + "."))
        out[name] = {"scheme": lp.scheme, "rank": list(lp.rank) if isinstance(lp.rank, tuple) else lp.rank,
                     "macs": mine, "dense": None, "force": lp.force}
    for name in plan.kept_dense:
        out[name] = {"scheme": None, "rank": None, "macs": macs.get(name, 0), "dense": BREAK_EVEN_REASON,
                     "force": False}
    return out, total


def _plan_text(entry) -> str:
    if entry is None:
        return "-"
    if entry["dense"]:
        return f"dense: {entry['dense']}"
    return f"{entry['scheme']} r={_rank_text(entry['rank'])}" + (" (forced)" if entry["force"] else "")


def run(args: argparse.Namespace) -> int:
    check_model(args.model)  # a bad name or rank spec is refused before torch is imported
    if args.ranks is not None:
        check_rank_spec(args.ranks)
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
    planned = plan_macs = None
    if args.ranks is not None:
        planned, plan_macs = _plan_entries(model, args.ranks, args.scheme, shape, args.counting)
        for e in entries:
            e["plan"] = planned.get(e["name"])
    if args.json:
        out = {"model": args.model, "dataset": args.dataset, "input_shape": list(shape), "counting": args.counting,
               "params": count_params(model), "macs": total_macs, "layers": entries}
        keys = JSON_KEYS
        if planned is not None:
            out.update(ranks=args.ranks, scheme=args.scheme, plan_macs=plan_macs,
                       plan_macs_compression=total_macs / plan_macs if plan_macs else None)
            keys = JSON_KEYS + PLAN_JSON_KEYS
        print(json.dumps({k: out[k] for k in keys}, indent=2))
        return 0
    header = ["", "layer", "type", "weight shape", *[f"max[{s}]" for s in schemes], "params", "MACs"]
    if planned is not None:
        header += ["plan", "plan MACs"]
    rows = [header]
    for e in entries:
        rows.append(["*" if e["name"] in marked else "", e["name"], e["type"], "x".join(map(str, e["weight_shape"])),
                     *[_rank_text(e["max_rank"][s]) for s in schemes], f"{e['params']:,}", f"{e['macs']:,}"])
        if planned is not None:
            rows[-1] += [_plan_text(e["plan"]), f"{(e['plan'] or e)['macs']:,}"]
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
    if planned is not None:
        kept = sum(1 for v in planned.values() if v["dense"])
        print(f"plan {args.ranks} ({args.scheme}): {len(planned) - kept} factorized, {kept} kept dense "
              f"(factorized cost >= dense); {plan_macs:,} MACs, {total_macs / plan_macs:.2f}x fewer")
    return 0
