"""Read sweeps from disk and analyse them: Pareto fronts, hypervolume, plots, reports.

Never imports torch or ray: runs on a laptop against a copied experiment folder. The figures
(``analysis.plots``) and the whole report (``analysis.analyze.analyze``) load matplotlib, so they
are not imported here: ``rank-search status`` stays quick.
"""
from __future__ import annotations

from .hypervolume import default_reference, hypervolume, hypervolume_progress
from .loading import Experiment, NotAnExperimentError, epoch_history, in_trial_order, load_experiment, run_record
from .pareto import front_path, knee_index, pareto_mask
from .summary import front, usable_trials

__all__ = [
    "Experiment", "NotAnExperimentError", "default_reference", "epoch_history", "front", "front_path",
    "hypervolume", "hypervolume_progress", "in_trial_order", "knee_index", "load_experiment", "pareto_mask",
    "run_record", "usable_trials",
]
