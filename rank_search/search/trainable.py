"""The Ray Tune trainable: one trial = one engine run, reported and checkpointed every epoch.

A restored or retried trial continues from its last epoch checkpoint (full engine state). A
diverging trial (NaN/inf loss) reports ``diverged=True`` with ``val_accuracy=0``, compression
1.0 and speed-up 1.0 (no usable compact model) and ends cleanly, so the sweep goes on.

Every report carries the measured latency of the compact model against the dense one
(``run.prepare.latency``: interleaved on the trial's device and threads, at the sweep's
``space.latency_batch_size``, default 1), so ``latency_speedup`` or ``latency_ms`` can be an
objective, and a scheduler can stop a trial at any epoch: Tune requires every searched metric in
every result.
"""
from __future__ import annotations

import os
import socket
import tempfile
from typing import Any, Callable

import torch
from ray import tune
from search_spaces import decode_trial

from .. import schema
from ..cost import compression_metrics, model_cost
from ..engine import DivergedError
from ..run import prepare
from ..run.prepare import accuracy_on_test, compression, latency
from ..run.results import write_checkpoint
from .trial import run_spec


def _cpu_share() -> int:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(round(cpus)))


def _local_init(spec, key: str = "init"):
    """The spec with its ``key`` weights (``init``, ``teacher``) on local disk (``_local_copy``)."""
    path = getattr(spec, key)
    if path is None or not schema.is_uri(path):
        return spec
    import dataclasses

    return dataclasses.replace(spec, **{key: _local_copy(path)})


def _local_nested(spec):
    """The spec with its ``nested.weights`` (a one-shot trial's nested model) on local disk."""
    path = spec.settings.get("nested.weights")
    if not isinstance(path, str) or not schema.is_uri(path):
        return spec
    import dataclasses

    return dataclasses.replace(spec, settings={**spec.settings, "nested.weights": _local_copy(path)})


def _local_copy(path: str) -> str:
    """A weights file on URI storage copied once per machine (under a name fixed by its URI, size
    and modification time, so every worker process finds the copy) into the temporary folder;
    older copies of it are removed."""
    import glob
    import hashlib
    import posixpath

    from ..storage import Location

    folder, name = posixpath.split(path)
    source = Location(folder)
    info = source.fs.get_file_info(source.join(name))
    stamp = f"{path}|{info.size}|{info.mtime_ns}"
    prefix = os.path.join(tempfile.gettempdir(), f"rank-search-{hashlib.sha256(path.encode()).hexdigest()[:16]}-")
    local = f"{prefix}{hashlib.sha256(stamp.encode()).hexdigest()[:16]}-{name}"
    if not os.path.isfile(local):
        partial = f"{local}.{os.getpid()}.partial"
        with open(partial, "wb") as fh:
            fh.write(source.read_bytes(name))
        os.replace(partial, local)
        for old in glob.glob(f"{glob.escape(prefix)}*-{glob.escape(name)}"):
            if old != local:  # a copy of an earlier version of the same reference
                try:
                    os.remove(old)
                except OSError:
                    pass
    return local


def _experiment_now(like: str) -> str:
    """Where this trial's experiment folder is now (a path, or a URI in the scheme of ``like``)."""
    import pyarrow.fs as pafs

    storage = tune.get_context().get_storage()
    fs_path = storage.experiment_fs_path
    if isinstance(storage.storage_filesystem, pafs.LocalFileSystem):
        return f"file://{fs_path}" if like.startswith("file://") else fs_path
    scheme = like.split("://", 1)[0] if schema.is_uri(like) else storage.storage_filesystem.type_name
    return f"{scheme}://{fs_path}"


def rank_search_trainable(config: dict[str, Any], *, progress: Callable[[int], None] | None = None) -> None:
    """Tune function trainable (current ``ray.tune`` API: ``tune.report`` / ``tune.get_checkpoint``).

    Args:
        config: the trial's flat config, handed to the trial codec (``search_spaces.decode_trial``).
        progress: ``fn(epochs finished)`` on every progress line of the run (tests inject faults).
    """
    import ray

    torch.set_num_threads(_cpu_share())
    trial = decode_trial(config)
    if trial.dense or trial.profile:
        trial = trial.moved_to(_experiment_now(trial.dense or trial.profile))
    spec = _local_nested(_local_init(_local_init(run_spec(trial)), "teacher"))
    finished = [0]  # epochs finished so far, read by the progress hook
    trainer = prepare(spec, progress=(lambda message: progress(finished[0])) if progress is not None else None)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(torch.load(os.path.join(d, schema.ENGINE_STATE_FILE), weights_only=True))
        finished[0] = trainer.epoch
    batch = trial.latency_batch_size
    target = trial.target_report()
    where = {schema.HOSTNAME: socket.gethostname(), schema.NODE_ID: ray.get_runtime_context().get_node_id()}

    def on_epoch(tr, result) -> None:
        metrics = {
            schema.EPOCH: result.epoch,
            schema.VAL_ACCURACY: result.val_accuracy,
            schema.VAL_LOSS: result.val_loss,
            schema.TRAIN_LOSS: result.train_loss,
            schema.DIVERGED: False,
            schema.EPOCH_SECONDS: result.seconds,
            **where,
            **target,
            **compression(tr),
            **latency(tr, batch_size=batch),
        }
        final = tr.epoch == tr.epochs
        if final:
            metrics[schema.TEST_ACCURACY] = accuracy_on_test(tr)
        with tempfile.TemporaryDirectory() as d:
            write_checkpoint(d, tr, spec, metrics=metrics if final else None)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        finished[0] = result.epoch

    try:
        trainer.fit(on_epoch)
    except DivergedError as exc:
        dense_cost = model_cost(trainer.dense, trainer.input_shape)
        tune.report({
            schema.EPOCH: exc.epoch + 1, schema.VAL_ACCURACY: 0.0, schema.DIVERGED: True,
            schema.TRAIN_LOSS: float("nan"), schema.VAL_LOSS: float("nan"), **where, **target,
            **compression_metrics(dense_cost, dense_cost),
            **latency(trainer, batch_size=batch, compact=False),
        })
