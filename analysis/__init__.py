"""Read sweeps from disk and analyse them: Pareto fronts, hypervolume, quality measures, plots, reports.

Never imports torch or ray: runs on a laptop against a copied experiment folder. The figures
(``analysis.plots``) and the whole report (``analysis.analyze.analyze``) load matplotlib, so they
are not imported here: ``rank-search status`` stays quick.
"""
from __future__ import annotations

from .hypervolume import default_reference, hypervolume, hypervolume_progress
from .loading import (Experiment, NotAnExperimentError, epoch_history, in_trial_order, load_experiment,
                      read_profile, run_record)
from .pareto import front_path, knee_index, pareto_mask
# not ``quality`` itself: the name stays the module's (``analysis.quality.quality``)
from .quality import Quality, best_accuracy_at, dense_accuracy, dense_reference, log_hypervolume
from .summary import front, usable_trials

__all__ = [
    "Experiment", "NotAnExperimentError", "Quality", "best_accuracy_at", "default_reference", "dense_accuracy",
    "dense_reference", "epoch_history", "front", "front_path", "hypervolume", "hypervolume_progress",
    "in_trial_order", "knee_index", "load_experiment", "log_hypervolume", "pareto_mask",
    "read_profile", "run_record", "usable_trials",
]
