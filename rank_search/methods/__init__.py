"""Method plugins, registered in ``METHODS``."""
from __future__ import annotations

from typing import Any, Mapping

from .._registry import Registry
from .base import Method
from .factorized import Factorized
from .full import Full
from .posthoc import Posthoc

METHODS: Registry[type[Method]] = Registry("method")
for _cls in (Full, Posthoc, Factorized):
    METHODS.add(_cls.name, _cls)


def create_method(name: str, knobs: Mapping[str, Any] | None = None, *, ranks: Any = None,
                  scheme: str | None = None) -> Method:
    """Instantiate method ``name`` with its knobs (``{"interval": 5}``), rank spec and scheme."""
    return METHODS.get(name)(knobs, ranks=ranks, scheme=scheme)


__all__ = ["METHODS", "Method", "create_method"]
