"""Optuna's NSGA-II sampler in a form Ray Tune can pickle.

Ray Tune pickles the searcher when a ``Tuner`` is built and with every checkpoint of the search.
optuna 5.1's genetic samplers keep a ``threading.Lock`` in their state (their generation cache),
which no pickle takes: ``--searcher nsga2`` failed with "cannot pickle '_thread.lock' object".
This subclass leaves the locks out of its pickled state and makes new ones when unpickled; with
an optuna that holds no lock it pickles as the plain sampler does.
"""
from __future__ import annotations

import threading

from optuna.samplers import NSGAIISampler

_LOCK_TYPE = type(threading.Lock())
_LOCKS_KEY = "_rank_search_locks"


class PicklableNSGAIISampler(NSGAIISampler):
    """``optuna.samplers.NSGAIISampler`` whose locks are dropped when pickled and remade when unpickled."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        locks = [k for k, v in state.items() if isinstance(v, _LOCK_TYPE)]
        for k in locks:
            del state[k]
        state[_LOCKS_KEY] = locks
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        for k in state.pop(_LOCKS_KEY, ()):
            state[k] = threading.Lock()
        self.__dict__.update(state)
