"""Progress lines while a sweep runs (a module-level Tune callback: Tune pickles it)."""
from __future__ import annotations

import sys

from ray.tune import Callback

from .. import schema


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(result: dict, key: str, spec: str = ".4f") -> str:
    value = result.get(key)
    return format(value, spec) if isinstance(value, (int, float)) else "-"


class ProgressPrinter(Callback):
    """One line per trial epoch and per finished trial."""

    def __init__(self, total: int, epochs: int) -> None:
        self.total, self.epochs, self.finished = total, epochs, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        say(f"  trial {trial.trial_id} {trial.config.get('method', '?'):10s} epoch "
            f"{result.get(schema.EPOCH, '?')}/{self.epochs}  val_acc {_fmt(result, schema.VAL_ACCURACY)}"
            f"  macs_x {_fmt(result, schema.MACS_COMPRESSION, '.2f')}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        # counted from Tune's trial list, so a resumed sweep counts the trials finished before it
        self.finished = 1 + sum(t.status == "TERMINATED" for t in trials if t is not trial)
        last = trial.last_result or {}
        tag = " DIVERGED" if last.get(schema.DIVERGED) else ""
        say(f"[{self.finished}/{self.total}] trial {trial.trial_id} done{tag}: {trial.config.get('method')} "
            f"val_acc {_fmt(last, schema.VAL_ACCURACY)} test_acc {_fmt(last, schema.TEST_ACCURACY)} "
            f"macs_x {_fmt(last, schema.MACS_COMPRESSION, '.2f')}")

    def on_trial_error(self, iteration, trials, trial, **info):
        say(f"  trial {trial.trial_id} failed; Tune retries it from its last checkpoint (max_failures)")
