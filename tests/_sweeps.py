"""Experiment folders in Tune's layout around real trials, for the export tests that need no Ray
(tests/ is on sys.path through its conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from rank_search import schema
from rank_search.run import RunSpec, train
from rank_search.run.results import write_checkpoint


def fake_sweep(root: Path, spec: RunSpec) -> Path:
    """An experiment folder in Tune's layout around one real trial: its final checkpoint as the
    trainable writes it (run record, metrics with ``epoch``), one result line per epoch."""
    result = train(spec)
    trainer = result.trainer
    exp = root / "exp"
    folder = exp / "trial_a"
    ckpt = folder / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    metrics = {k: v for k, v in result.metrics.items() if k not in (schema.EPOCHS, schema.WALL_SECONDS)}
    metrics[schema.EPOCH] = trainer.epoch
    write_checkpoint(str(ckpt), trainer, spec, metrics=metrics)
    config = {"method": spec.method, "space.epochs": spec.epochs, "space.model": spec.model}
    (folder / "params.json").write_text(json.dumps(config, sort_keys=True))
    lines = [json.dumps({**metrics, schema.EPOCH: e, "trial_id": "a", "checkpoint_dir_name": f"checkpoint_{e - 1:06d}",
                         "done": e == spec.epochs, "timestamp": 100.0 + e, "time_this_iter_s": 1.0, "config": config})
             for e in range(1, spec.epochs + 1)]
    (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    sweep = {"launch": {"name": "fake", "searcher": "nsga2", "seed": 0,
                        "objectives": ["val_accuracy:max", "macs_compression:max"]},
             "space": {"name": "fake", "model": spec.model, "dataset": spec.dataset, "epochs": spec.epochs}}
    (exp / schema.SWEEP_FILE).write_text(yaml.safe_dump(sweep))
    return exp
