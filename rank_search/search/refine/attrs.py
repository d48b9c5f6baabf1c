"""The trial system attributes ``refine`` records, and the one it reads from Optuna.

Keys are stored in study journals and Tune's searcher state: never rename them.
"""
from __future__ import annotations

PARENT_KEY = "refine:parent"  # number of the parent trial; -1 for a trial drawn from the priors
FILL_KEY = "refine:fill"  # True for a child that fills the front's widest gap
SHARE_KEY = "refine:share"  # the choice the method share made for an enqueued trial
ENQUEUED_KEY = "fixed_params"  # set by Optuna's ``enqueue_trial``: the parameters the caller fixed
