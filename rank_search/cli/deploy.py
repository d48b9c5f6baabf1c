"""`rank-search deploy`: a compact model (a compact.pt, or the pick of a sweep) -> an ONNX or a
torch.export file that loads without rank-search, checked against PyTorch before it is kept."""
from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

from .. import schema
from ..errors import RankSearchError
from ._scripting import LazyChoices, command


PICKS = LazyChoices.of("pick", "analysis.select", "PICKS")
FORMATS = LazyChoices.of("format", "rank_search.schema", "DEPLOY_FORMATS")


def add_parser(sub) -> None:
    p = sub.add_parser("deploy", help="export a compact model to ONNX or torch.export (checked against PyTorch)",
                       description="Fold BatchNorm into the convolutions before it where that is exact, export "
                                   "with a dynamic batch dimension, record the input normalisation and the plan "
                                   "in the file's metadata and in FILE.yaml, and check the file against the "
                                   "PyTorch compact model (max abs difference <= 1e-4) before keeping it.")
    p.add_argument("source", metavar="SOURCE", help="a compact.pt (from `train` or a trial), or an experiment folder")
    p.add_argument("--format", dest="fmt", required=True, type=FORMATS, choices=FORMATS, metavar="FORMAT",
                   help="one of %(choices)s")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx or model.pt2 (its side-car: OUT.yaml)")
    p.add_argument("--pick", default="knee", type=PICKS, choices=PICKS, metavar="PICK",
                   help="for an experiment, which trial of the Pareto front: one of %(choices)s")
    p.add_argument("--min-accuracy", type=float, metavar="A",
                   help="for an experiment: only trials with val_accuracy >= A (default: no bound)")
    p.add_argument("--max-macs", type=float, metavar="M",
                   help="for an experiment: only trials whose compact model has <= M MACs (default: no bound)")
    p.add_argument("--measure-batch", type=int, metavar="N",
                   help="time each factorized layer's exact forms (itself, merged, dense) at batch N on this "
                        "machine and keep the fastest, which may cost more MACs (default: keep the compact "
                        "model's MACs, merging only where that saves MACs)")
    p.set_defaults(func=run)


@contextmanager
def compact_of(source: str, *, pick: str, min_accuracy: float | None, max_macs: float | None) -> Iterator[tuple[str, str]]:
    """``(local compact.pt path, label)`` of SOURCE: the file itself, or the picked trial's
    (copied to a temporary file when the experiment lies behind a URI)."""
    if os.path.isfile(source):
        yield source, source
        return
    from ..storage import Location
    from ._pick import pick_checkpoint

    if not Location(source).is_dir():
        raise RankSearchError(f"SOURCE {source!r} is neither a compact.pt file nor an experiment folder")
    picked = pick_checkpoint(source, pick=pick, min_accuracy=min_accuracy, max_macs=max_macs)
    rel, loc = picked.compact_weights(), picked.loc
    label = f"{source.rstrip('/')}/{rel} (trial {picked.trial_id}, pick {pick})"
    if loc.local_path() is not None:
        yield loc.local_path(rel), label
        return
    with tempfile.TemporaryDirectory(prefix="rank-search-deploy-") as d:
        path = os.path.join(d, schema.COMPACT_WEIGHTS_FILE)
        with open(path, "wb") as fh:
            fh.write(loc.read_bytes(rel))
        yield path, label


def run(args: argparse.Namespace) -> int:
    if args.measure_batch is not None and args.measure_batch < 1:
        raise RankSearchError(f"--measure-batch must be an integer >= 1, got {args.measure_batch}")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise RankSearchError(f"folder of --out {args.out!r} does not exist: {folder}")
    with compact_of(args.source, pick=args.pick, min_accuracy=args.min_accuracy, max_macs=args.max_macs) as (path, label):
        from ..deploy import deploy  # torch: only once SOURCE is found

        result = deploy(path, fmt=args.fmt, out=args.out, source_label=label, measure_batch=args.measure_batch)
    norm = result.metadata["input"]
    print(f"deployed {label} as {args.fmt}: {args.out} (+ {os.path.basename(result.sidecar)})")
    print(f"  BatchNorm folded: {len(result.folded)} layer(s); batch dimension dynamic; "
          f"max abs difference from PyTorch {result.max_abs_diff:.2g} (<= {schema.PARITY_TOLERANCE:g})")
    if norm.get("mean") is not None:
        print(f"  input: float32 N x {' x '.join(map(str, norm['shape'][1:]))}, "
              f"(pixels * {norm['scale']:.6g} - mean {norm['mean']}) / std {norm['std']}")
    print(f"measure it with: {command('evaluate', args.out, '--dataset', result.metadata['dataset'])}")
    return 0
