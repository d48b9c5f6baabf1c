"""Experiment folders written by hand in the layout Tune and rank-search leave on disk, for
tests that need no Ray: finished trials with run records and real compact.pt files, and
booby-trapped pickles."""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from rank_search import schema


def hand_made(root: Path, *, trials: dict[str, str] | None = None, epochs: int = 2, num_samples: int = 2) -> Path:
    """An experiment folder as Tune and rank-search lay it out: the sweep record, a state snapshot
    and finished trials, each with a run record and a real compact.pt in its last checkpoint."""
    import torch

    from rank_search.checkpoint import save_compact
    from rank_search.models import create_model
    from rank_search.plan import build_plan
    from rank_search.surgery import compress

    exp = root / "exp"
    exp.mkdir(parents=True)
    record = {"launch": {"space": "tiny", "num_samples": num_samples, "name": "exp", "storage": str(root),
                         "objectives": ["val_accuracy:max", "macs_compression:max"], "searcher": "nsga2"},
              "space": {"name": "tiny", "model": "lenet5", "dataset": "synthetic", "epochs": epochs}}
    (exp / schema.SWEEP_FILE).write_text(yaml.safe_dump(record))
    trials = trials if trials is not None else {"a": "TERMINATED", "b": "TERMINATED"}
    model = create_model("lenet5", in_channels=1, num_classes=10, image_size=8)
    plan = build_plan(model, "ratio:0.5", scheme="channel")
    compact = compress(model, plan)
    for i, tid in enumerate(trials):
        folder = exp / f"trial_{tid}"
        folder.mkdir()
        config = {"method": "factorized", "rank.all": 0.5, "space.epochs": epochs, "space.model": "lenet5"}
        (folder / "params.json").write_text(json.dumps(config, sort_keys=True))
        lines = []
        for epoch in range(1, epochs + 1):
            ckpt = folder / f"checkpoint_{epoch - 1:06d}"
            ckpt.mkdir()
            (ckpt / schema.RUN_FILE).write_text(yaml.safe_dump({"run": {"method": "factorized", "seed": 0}}))
            row = {schema.EPOCH: epoch, schema.VAL_ACCURACY: 0.5 + 0.1 * i + 0.01 * epoch,
                   schema.MACS_COMPRESSION: 2.0 - 0.5 * i, schema.DIVERGED: False, "trial_id": tid,
                   "checkpoint_dir_name": ckpt.name, "done": False, "timestamp": 100 + 10 * epoch,
                   "time_this_iter_s": 10.0}
            if epoch == epochs:
                row[schema.TEST_ACCURACY] = 0.5
                save_compact(str(ckpt / schema.COMPACT_WEIGHTS_FILE), compact, plan=plan, model="lenet5",
                             dataset="synthetic", method="factorized", in_channels=1, num_classes=10, image_size=8)
            lines.append(json.dumps(row))
        (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    data = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_{tid}"}),
             json.dumps({"num_failures": 0, "start_time": 1.0})] for tid, status in trials.items()]
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}))
    (exp / "tuner.pkl").write_bytes(b"")
    assert torch  # the compact files above are real
    return exp


class _Trap:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def booby_trap(exp: Path, marker: Path) -> None:
    """Replace every pickle Tune keeps (tuner.pkl, the searcher and search-generator states) and
    every trial's compact.pt with files whose unpickling runs code."""
    import pickle

    import torch

    payload = pickle.dumps(_Trap(marker))
    for name in ("tuner.pkl", "searcher-state-2026-01-01_00-00-00.pkl", "search_gen_state-2026-01-01_00-00-00.json"):
        (exp / name).write_bytes(payload)
    for compact in exp.glob(f"trial_*/checkpoint_*/{schema.COMPACT_WEIGHTS_FILE}"):
        torch.save({"format": schema.COMPACT_FILE_FORMAT, "trap": _Trap(marker)}, compact)
    assert not marker.exists()
