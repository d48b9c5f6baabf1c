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
from typing import Any

import torch
from ray import tune

from .. import schema
from ..cost import compression_metrics, model_cost
from ..engine import DivergedError
from ..errors import RankSearchError
from ..run import prepare
from ..run.prepare import accuracy_on_test, compression, latency
from ..run.results import write_checkpoint
from .trial import spec_from_config


def _cpu_share() -> int:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(round(cpus)))


CRASH_ENV = "RANK_SEARCH_INJECT_CRASH"


def _maybe_inject_crash(finished_epochs: int) -> None:
    """Test hook: with ``RANK_SEARCH_INJECT_CRASH=EXPERIMENT:EPOCH:MARKER_DIR`` set for the Ray
    workers, each trial of that experiment crashes once during the epoch after EPOCH, well after
    that epoch's checkpoint was reported. A marker file per trial in MARKER_DIR (a folder every
    attempt sees, unlike Tune's per-attempt staging folders) makes it once, so tests can check
    that a retry resumes from the checkpoint."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, at, marker_dir = spec.split(":", 2)
    ctx = tune.get_context()
    if ctx.get_experiment_name() != name or finished_epochs != int(at):
        return
    marker = os.path.join(marker_dir, f"crashed-{ctx.get_trial_id()}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"injected crash in epoch {finished_epochs + 1} ({CRASH_ENV})")


def _local_init(spec):
    """The spec with its ``init`` weights on local disk (a dense reference on URI storage is
    copied into the trial's temporary folder once)."""
    if spec.init is None or not schema.is_uri(spec.init):
        return spec
    import dataclasses
    import posixpath

    from ..storage import Location

    folder, name = posixpath.split(spec.init)
    local = os.path.join(tempfile.gettempdir(), f"rank-search-{abs(hash(spec.init))}-{name}")
    if not os.path.isfile(local):
        with open(local + ".partial", "wb") as fh:
            fh.write(Location(folder).read_bytes(name))
        os.replace(local + ".partial", local)
    return dataclasses.replace(spec, init=local)


def _experiment_now(like: str) -> str:
    """Where this trial's experiment folder is now (a path, or a URI in the scheme of ``like``)."""
    import pyarrow.fs as pafs

    storage = tune.get_context().get_storage()
    fs_path = storage.experiment_fs_path
    if isinstance(storage.storage_filesystem, pafs.LocalFileSystem):
        return f"file://{fs_path}" if like.startswith("file://") else fs_path
    scheme = like.split("://", 1)[0] if schema.is_uri(like) else storage.storage_filesystem.type_name
    return f"{scheme}://{fs_path}"


def _references_here(config: dict[str, Any]) -> dict[str, Any]:
    """The trial config with the sweep's dense reference and profile read from the experiment
    folder where it is now: the config names the folder the sweep was launched in, which a user
    may have moved or copied (off a cluster, say) before `resume`."""
    import posixpath

    from .trial import DENSE_KEY, PROFILE_KEY

    dense, profile = config.get(DENSE_KEY), config.get(PROFILE_KEY)
    if not dense and not profile:
        return config
    here = _experiment_now(str(dense or profile))
    out = dict(config)
    if dense and posixpath.basename(str(dense)) == schema.DENSE_WEIGHTS_FILE:
        out[DENSE_KEY] = posixpath.join(here, schema.DENSE_WEIGHTS_FILE)
    if profile:
        out[PROFILE_KEY] = here
    return out


def latency_batch_size(config: dict[str, Any]) -> int:
    """The batch size the trial's latency is measured at (``space.latency_batch_size``, default 1)."""
    value = config.get(schema.LATENCY_BATCH_SIZE_KEY)
    if value is None:
        return schema.DEFAULT_LATENCY_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RankSearchError(f"{schema.LATENCY_BATCH_SIZE_KEY} must be an integer >= 1, got {value!r}")
    return value


def target_metric(config: dict[str, Any]) -> str:
    """The name a budget-driven trial reports its target under: ``target_macs_compression``, or
    ``target_latency_speedup`` under ``ranks.budget: latency``."""
    latency = config.get(schema.SPACE_PREFIX + "budget") == "latency"
    return schema.TARGET_LATENCY_SPEEDUP if latency else schema.TARGET_MACS_COMPRESSION


def rank_search_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable (current ``ray.tune`` API: ``tune.report`` / ``tune.get_checkpoint``)."""
    import ray

    torch.set_num_threads(_cpu_share())
    spec = _local_init(spec_from_config(_references_here(config)))
    batch = latency_batch_size(config)
    finished = [0]  # epochs finished so far, read by the progress hook
    trainer = prepare(spec, progress=lambda message: _maybe_inject_crash(finished[0]))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(torch.load(os.path.join(d, schema.ENGINE_STATE_FILE), weights_only=True))
        finished[0] = trainer.epoch
    target = {target_metric(config): float(config[schema.TARGET_KEY])} if schema.TARGET_KEY in config else {}
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
            schema.TRAIN_LOSS: float("nan"), schema.VAL_LOSS: float("nan"), **where, **target, **compression_metrics(dense_cost, dense_cost),
            **latency(trainer, batch_size=batch, compact=False),
        })
