"""Read sweeps from disk and analyse them: Pareto fronts, hypervolume, plots, reports.

Never imports torch or ray: runs on a laptop against a copied experiment folder.
"""
from __future__ import annotations
