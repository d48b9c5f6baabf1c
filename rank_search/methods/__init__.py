"""Method plugins, registered in ``METHODS``.

Each module of this package holds one method and registers it with ``@register_method``;
every module is imported here, so adding a method means adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping

from ._registry import METHODS, register_method
from .base import Method


def create_method(name: str, knobs: Mapping[str, Any] | None = None, *, ranks: Any = None,
                  scheme: str | None = None) -> Method:
    """Instantiate method ``name`` with its knobs (``{"interval": 5}``), rank spec and scheme."""
    return METHODS.get(name)(knobs, ranks=ranks, scheme=scheme)


for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Method", "create_method", "register_method"]
