"""`rank-search evaluate`: test accuracy, params, MACs and latency of a compact.pt, an ONNX or a
torch.export file."""
from __future__ import annotations

import argparse
import json
import os

from .. import schema
from ..errors import RankSearchError
from ._scripting import LazyChoices

DATASETS = LazyChoices.builtin("dataset", "datasets")


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test accuracy, params, MACs and latency of a model file",
                       description="Measure a compact.pt, an ONNX file (onnxruntime) or a torch.export archive "
                                   "on the test split of a data set: top-1 accuracy, the parameters stored in "
                                   "the file, MACs per image, and the median latency of batches of 1 and 64.")
    p.add_argument("file", metavar="FILE", help="a compact.pt, an .onnx file or a torch.export archive (.pt2)")
    p.add_argument("--dataset", required=True, type=DATASETS, choices=DATASETS, metavar="DATASET",
                   help="the data set the model was trained for: one of %(choices)s")
    p.add_argument("--data-root", help="folder holding the data set files (CIFAR, imagefolder; default: none)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per batch size (their median is reported)")
    p.add_argument("--threads", type=int, help="intra-op threads of torch and onnxruntime (default: torch's, "
                                                "usually the number of cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.file):  # before torch: a missing file is refused at once
        raise RankSearchError(f"model file {args.file!r} does not exist")
    from ..deploy import evaluate_file

    result = evaluate_file(args.file, dataset=args.dataset, data_root=args.data_root, repeats=args.repeats,
                           threads=args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [("file", f"{result[schema.EVAL_FILE]} ({result[schema.EVAL_FORMAT]})"),
            (schema.TEST_ACCURACY, f"{result[schema.TEST_ACCURACY]:.4f} on {args.dataset}"),
            (schema.PARAMS, f"{result[schema.PARAMS]:,}"),
            (schema.MACS, f"{result[schema.MACS]:,} per image")]
    for b in schema.LATENCY_BATCH_SIZES:
        rows.append((schema.latency_key(b), f"{result[schema.latency_key(b)]:.3f}"))
    for key, value in rows:
        print(f"{key:20s} {value}")
    print(f"(latency: median of {result[schema.LATENCY_REPEATS]} runs, {result[schema.LATENCY_THREADS]} threads)")
    return 0
