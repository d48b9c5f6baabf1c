"""Sweep figures. Each plot is a pure ``_get_<plot>_info()`` (plain data, tested) plus a renderer
that returns a matplotlib ``Figure`` (no pyplot, Agg canvas); ``save_figure`` writes PNG + SVG."""
from __future__ import annotations

from ._common import save_figure
from ._hypervolume import HypervolumeInfo, _get_hypervolume_info, plot_hypervolume
from ._learning_curves import LearningCurvesInfo, _get_learning_curves_info, plot_learning_curves
from ._pareto_front import ParetoFrontInfo, _get_pareto_front_info, plot_pareto_front
from ._rank_heatmap import RankHeatmapInfo, _get_rank_heatmap_info, plot_rank_heatmap
from ._sensitivity import SensitivityInfo, _get_sensitivity_info, plot_sensitivity

__all__ = [
    "HypervolumeInfo", "LearningCurvesInfo", "ParetoFrontInfo", "RankHeatmapInfo", "SensitivityInfo",
    "_get_hypervolume_info", "_get_learning_curves_info", "_get_pareto_front_info", "_get_rank_heatmap_info",
    "_get_sensitivity_info", "plot_hypervolume", "plot_learning_curves", "plot_pareto_front", "plot_rank_heatmap",
    "plot_sensitivity", "save_figure",
]
