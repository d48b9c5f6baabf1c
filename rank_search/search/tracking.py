"""Experiment trackers a sweep reports to (``launch --log-to``): MLflow, TensorBoard, Weights & Biases.

Each is a Ray Tune logger callback that runs in the driver (``tracking_callbacks``); this module
holds what needs no Ray: the names, the package check, where each one writes, and the builder
``make_callbacks``. By default everything stays inside the experiment folder EXP:

- ``mlflow``: the SQLite store ``EXP/mlflow.db`` (artifacts under ``EXP/mlartifacts``), or the
  server or store ``MLFLOW_TRACKING_URI`` names; one MLflow experiment named after the sweep,
  one run per trial with its parameters and every epoch's metrics. A resumed trial goes on in
  its run. *Our choice*: SQLite, not ``EXP/mlruns``: MLflow 3 refuses its file store by default.
- ``tensorboard``: ``EXP/tensorboard/<trial folder>``: ``tensorboard --logdir EXP/tensorboard``.
  (Tune also writes its own event files into each trial folder while tensorboardX is installed.)
- ``wandb``: offline runs under ``EXP/wandb`` unless ``WANDB_MODE`` is set (``wandb sync`` uploads
  them later); the project is the sweep name, one run per trial.

The settings are resolved each time the sweep starts, launch or resume (Tune keeps the callbacks
in ``tuner.pkl``), so a moved experiment writes where it is now.
"""
from __future__ import annotations

import importlib.util
import os

from ..errors import RankSearchError
from ..schema import is_uri
# where each tracker writes, shared with the callbacks (re-exported: callers read them here)
from .tracking_paths import (MLFLOW_ARTIFACTS, MLFLOW_DB, TENSORBOARD_DIR, WANDB_DIR,  # noqa: F401
                             local_folder, mlflow_tracking_uri)

#: tracker -> the module it imports (the package that provides it)
PACKAGES: dict[str, str] = {"mlflow": "mlflow", "tensorboard": "tensorboardX", "wandb": "wandb"}
EXTRA = "tracking"  # pyproject's optional extra holding the packages


def check_trackers(names: tuple[str, ...] | list[str], *, storage: str | None = None) -> None:
    """Each tracker in ``names`` can run here: its package is installed and, for an experiment on
    a URI ``storage``, it has somewhere to write. Imports nothing; raises ``RankSearchError``."""
    for name in names:
        if name not in PACKAGES:
            raise RankSearchError(f"--log-to must be one of {', '.join(PACKAGES)}, got {name!r}")
        module = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise RankSearchError(f"--log-to {name} needs the {module!r} package: "
                                  f"pip install 'rank-search[{EXTRA}]'")
    remote = storage is not None and is_uri(storage) and not storage.startswith("file://")
    if remote and "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise RankSearchError(f"--log-to mlflow with --storage {storage!r} needs MLFLOW_TRACKING_URI (a tracking "
                              "server): the default SQLite store inside the experiment needs a local folder")
    if remote and "tensorboard" in names:
        raise RankSearchError(f"--log-to tensorboard writes EXP/{TENSORBOARD_DIR}, a local folder; with --storage "
                              f"{storage!r} read Tune's event files in each trial folder instead")


def check_recorded_trackers(path: str) -> None:
    """``check_trackers`` for the trackers an experiment at ``path`` was launched with (its sweep
    record), before ``resume`` unpickles their callbacks; a record without any passes."""
    from .sweep_record import read_sweep_record

    if is_uri(path) and not path.startswith("file://"):
        return  # read by `resume` itself; Tune's own error names a missing package there
    log_to = read_sweep_record(local_folder(path))["launch"].get("log_to") or []
    if isinstance(log_to, list):
        check_trackers(log_to)


def describe(names: tuple[str, ...], *, experiment: str) -> str:
    """One line: where each tracker of ``names`` writes for the experiment at ``experiment``, and how to look."""
    folder = local_folder(experiment)
    uri = mlflow_tracking_uri(folder)
    mode = os.environ.get("WANDB_MODE", "offline")
    where = {"mlflow": f"mlflow at {uri} (mlflow ui --backend-store-uri {uri})",
             "tensorboard": f"tensorboard --logdir {os.path.join(folder, TENSORBOARD_DIR)}",
             "wandb": f"wandb {mode} in {os.path.join(folder, WANDB_DIR)}"
                      + (" (upload later with wandb sync)" if mode == "offline" else "")}
    return "; ".join(where[name] for name in names)


def make_callbacks(names: tuple[str, ...], *, sweep: str, storage: str | None = None) -> list:
    """The Tune logger callbacks of the trackers ``names`` for the sweep named ``sweep``."""
    check_trackers(names, storage=storage)
    if not names:
        return []
    from . import tracking_callbacks as cb

    build = {"mlflow": lambda: cb.MLflowTracker(experiment_name=sweep),
             "tensorboard": cb.TensorBoardTracker,
             "wandb": lambda: cb.WandbTracker(project=sweep)}
    return [build[name]() for name in names]
