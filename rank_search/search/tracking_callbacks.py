"""The Tune logger callbacks behind ``launch --log-to`` (see ``tracking`` for where each writes).

Module-level classes: Tune pickles the run config, callbacks included, into ``tuner.pkl`` and
``resume`` brings them back. Each resolves its destination from the trial's folder when the
first trial starts, not when it was built, so a moved experiment writes where it is now.
"""
from __future__ import annotations

import os

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import LoggerCallback

from .. import schema
from . import tracking_paths

# Tune's bookkeeping fields, not worth a TensorBoard chart
_NOT_SCALARS = ("config", "pid", "timestamp", "time_total_s", "training_iteration", "done")


def _experiment(trial) -> str:
    """The experiment folder a trial lives in (``trial.path`` is its folder on the storage)."""
    return os.path.dirname(trial.path.rstrip("/"))


class MLflowTracker(MLflowLoggerCallback):
    """Ray's MLflow logger, set up when the first trial starts (``tracking_paths.mlflow_tracking_uri``),
    with its experiment's artifacts inside the experiment folder; a trial restarted by
    ``resume`` goes on in the MLflow run it had (found by its ``trial_name`` tag)."""

    def setup(self, *args, **kwargs) -> None:
        self._started = False  # see _start: the experiment folder is known from the first trial

    def _start(self, trial) -> None:
        import mlflow

        folder = tracking_paths.local_folder(_experiment(trial))
        self.tracking_uri = tracking_paths.mlflow_tracking_uri(folder)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            client = mlflow.MlflowClient(self.tracking_uri)
            if client.get_experiment_by_name(self.experiment_name) is None:
                client.create_experiment(self.experiment_name,
                                         artifact_location=os.path.join(folder, tracking_paths.MLFLOW_ARTIFACTS))
        super().setup()
        self._started = True

    def log_trial_start(self, trial) -> None:
        if not self._started:
            self._start(trial)
        # Private on purpose: Ray's callback keeps trial -> run id in ``_trial_runs`` and starts a
        # new run for a trial it does not hold; after `resume` we hand it the trial's old run.
        # Where a Ray version keeps it otherwise, a resumed trial just gets a new run.
        runs = getattr(self, "_trial_runs", None)
        if isinstance(runs, dict) and trial not in runs:
            run = self._find_run(str(trial))
            if run is not None:
                runs[trial] = run
        super().log_trial_start(trial)

    def _find_run(self, trial_name: str) -> str | None:
        import mlflow

        experiment_id = getattr(self.mlflow_util, "experiment_id", None)  # set by Ray's setup
        if experiment_id is None:
            return None
        client = mlflow.MlflowClient(self.tracking_uri)
        runs = client.search_runs([experiment_id],
                                  filter_string=f"tags.trial_name = '{trial_name}'", max_results=1)
        if not runs:
            return None
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if not self._started or trial not in getattr(self, "_trial_runs", {}):
            self.log_trial_start(trial)
        super().log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if self._started and trial in getattr(self, "_trial_runs", {}):
            super().log_trial_end(trial, failed)


class TensorBoardTracker(LoggerCallback):
    """Each trial's numeric results as TensorBoard scalars in ``EXP/tensorboard/<trial folder>``,
    and its parameters with its last metrics as hyperparameters when it ends."""

    def __init__(self) -> None:
        self._writers: dict = {}
        self._last: dict = {}

    def log_trial_start(self, trial) -> None:
        from tensorboardX import SummaryWriter

        if trial in self._writers:
            self._writers[trial].close()
        name = os.path.basename(trial.path.rstrip("/"))
        folder = os.path.join(tracking_paths.local_folder(_experiment(trial)), tracking_paths.TENSORBOARD_DIR, name)
        self._writers[trial] = SummaryWriter(folder, flush_secs=30)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._writers:
            self.log_trial_start(trial)
        step = result.get("training_iteration", iteration)
        scalars = {k: float(v) for k, v in result.items() if k not in _NOT_SCALARS
                   and schema.is_number(v)}
        writer = self._writers[trial]
        for key, value in scalars.items():
            writer.add_scalar(key, value, global_step=step)
        writer.flush()
        self._last[trial] = scalars

    def log_trial_end(self, trial, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:
            return
        last = self._last.pop(trial, {})
        params = {k: v for k, v in (trial.config or {}).items()
                  if isinstance(v, (str, bool, int, float)) or v is None}
        if params and last:
            from tensorboardX.summary import hparams

            for summary in hparams(hparam_dict={k: ("None" if v is None else v) for k, v in params.items()},
                                   metric_dict=last):
                writer.file_writer.add_summary(summary)
        writer.close()


class WandbTracker(WandbLoggerCallback):
    """Ray's W&B logger, offline unless ``WANDB_MODE`` is set, with its runs under ``EXP/wandb``."""

    def setup(self, *args, **kwargs) -> None:
        # Ray asks for an API key unless WANDB_MODE says offline; decided where the sweep runs
        os.environ.setdefault("WANDB_MODE", "offline")
        self.kwargs["mode"] = os.environ["WANDB_MODE"]
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        experiment = tracking_paths.local_folder(_experiment(trial))
        if os.path.isdir(experiment):  # not on a URI experiment: there W&B keeps its default
            self.kwargs["dir"] = experiment  # W&B writes into its own wandb/ folder there
        super().log_trial_start(trial)
