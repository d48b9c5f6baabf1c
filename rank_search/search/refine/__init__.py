"""The ``refine`` searcher: an Optuna sampler in parts (parent selection, mutation, gap fill,
method share), see docs/refine.md."""
from __future__ import annotations

from .attrs import FILL_KEY, PARENT_KEY, SHARE_KEY
from .sampler import FrontSampler
from .settings import FillSettings, RefineSettings, ShareSettings

__all__ = ["FILL_KEY", "PARENT_KEY", "SHARE_KEY", "FillSettings", "FrontSampler", "RefineSettings", "ShareSettings"]
