"""rank-search: low-rank training of convolutional networks, searched with Ray Tune + Optuna."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
