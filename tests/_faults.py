"""Fault injection for sweep tests, kept out of the product trainable.

``crash_once`` wraps the real trainable so that each trial of one experiment crashes once, during
the epoch after ``at_epoch`` (well after that epoch's checkpoint was reported). A marker file per
trial in ``markers`` (a folder every attempt sees, unlike Tune's per-attempt staging folders)
makes it once, so a test can check that the retry resumes from the checkpoint.

Use ``install`` in a test's driver: the wrapper replaces ``rank_search_trainable`` where
``tune_setup.make_trainable`` looks it up, and this module is pickled by value, so Ray workers
run it without importing ``tests``.
"""
from __future__ import annotations

import os
import sys


def crash_once(*, experiment: str, at_epoch: int, markers: str):
    def rank_search_trainable(config):  # the product trainable's name, as Tune records it
        from ray import tune

        from rank_search.search.trainable import rank_search_trainable as real

        def maybe_crash(finished_epochs: int) -> None:
            ctx = tune.get_context()
            if ctx.get_experiment_name() != experiment or finished_epochs != at_epoch:
                return
            marker = os.path.join(markers, f"crashed-{ctx.get_trial_id()}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError(f"injected crash in epoch {finished_epochs + 1}")

        real(config, progress=maybe_crash)

    return rank_search_trainable


def install(monkeypatch, **kwargs) -> None:
    """Make every sweep launched from this process use ``crash_once(**kwargs)``."""
    import ray.cloudpickle

    import rank_search.search.trainable as trainable

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(trainable, "rank_search_trainable", crash_once(**kwargs))
