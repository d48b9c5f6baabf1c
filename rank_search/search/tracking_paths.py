"""Where each experiment tracker of ``launch --log-to`` writes (no Ray): read by ``tracking``
(the checks, the builder, the launch line) and by ``tracking_callbacks`` (the callbacks)."""
from __future__ import annotations

import os

MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"


def local_folder(path: str) -> str:
    """The local folder of an experiment at ``path`` (a folder or a ``file://`` URI)."""
    return path[len("file://"):] if path.startswith("file://") else path


def mlflow_tracking_uri(experiment: str) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store inside the experiment folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.join(local_folder(experiment), MLFLOW_DB)}"
