"""What the latency budget sees (issue 9): each model's layer latency table (``ranks.budget:
latency``, ``rank_search.layer_latency``) at batch 1 and 64, one thread, eager, as a sweep times
it before its trials. Per model, scheme and batch: how many eligible layers are measured no
faster than dense at *every* rank below MACs break-even (the latency budget keeps them dense,
the MACs rule would factorize them), the predicted speed-up with every layer at its fastest,
and the seconds the table took.

    .venv/bin/python benchmarks/layer_latency.py --models lenet5_wide,resnet20,vgg16_cifar --out FILE

Random weights (speed does not depend on them); the machine's load shifts the milliseconds but
each rank is timed interleaved with its dense layer, so the ratios hold.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform

import torch

from _report import emit
from rank_search.allocation import max_compression
from rank_search.layer_latency import LayerLatency, measure_layer_latency
from rank_search.models import create_model
from rank_search.plan import scheme_for

SHAPES = {"lenet5_wide": (1, 28), "resnet20": (3, 32), "resnet56": (3, 32), "vgg16_cifar": (3, 32),
          "resnet18": (3, 224)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lenet5_wide,resnet20,vgg16_cifar")
    p.add_argument("--schemes", default="channel,tucker2")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--out", help="append the markdown section to this file")
    args = p.parse_args()
    torch.set_num_threads(1)
    schemes = args.schemes.split(",")
    lines = [f"### Layer latency tables ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, 1 thread, eager)", "",
             f"Command: `.venv/bin/python benchmarks/layer_latency.py --models {args.models} --schemes {args.schemes} "
             f"--batches {args.batches}`.", "",
             "| model | batch | scheme | eligible layers | never faster than dense | predicted speed-up at the fastest "
             "| MACs compression at rank 1 | table seconds |", "|---|---|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        channels, side = SHAPES[name]
        torch.manual_seed(0)
        model = create_model(name, in_channels=channels, num_classes=1000 if name == "resnet18" else 10,
                             image_size=side).eval()
        shape = (channels, side, side)
        for batch in (int(b) for b in args.batches.split(",")):
            table = measure_layer_latency(model, shape, schemes, batch_size=batch, threads=1)
            cost = LayerLatency(model, table)
            for scheme in schemes:
                slow = [n for n, layer in cost.layers.items()
                        if all(cost.factorized(n, scheme_for(layer, scheme), r) >= cost.dense[n]
                               for r in cost.timed(n, scheme_for(layer, scheme)))]
                reach = max_compression(model, shape, scheme=scheme, latency=table)
                macs = max_compression(model, shape, scheme=scheme)
                lines.append(f"| {name} | {batch} | {scheme} | {len(cost.layers)} | {len(slow)} | {reach:.2f}x | "
                             f"{macs:.1f}x | {table.meta['seconds']:.0f} |")
                print(lines[-1], flush=True)
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
