"""Helpers the engine and method tests share (tests/ is on sys.path through its conftest.py)."""
from __future__ import annotations

import pytest


class _Stop(Exception):
    pass


def fit_until(trainer, epochs: int) -> None:
    """Train the first ``epochs`` epochs through ``fit`` (stopped from the epoch callback)."""

    def stop(tr, result) -> None:
        if tr.epoch == epochs:
            raise _Stop

    with pytest.raises(_Stop):
        trainer.fit(stop)
    assert trainer.epoch == epochs
