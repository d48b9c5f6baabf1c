"""Where ``FrontSampler`` lived before ``refine`` was split into parts (``search/refine/``).

Pickles of a sweep's searcher (Tune's searcher state) name this module; it stays importable.
"""
from __future__ import annotations

from .refine import FILL_KEY, PARENT_KEY, SHARE_KEY, FrontSampler

__all__ = ["FILL_KEY", "PARENT_KEY", "SHARE_KEY", "FrontSampler"]
