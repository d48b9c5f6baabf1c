"""The registry every kind of named thing uses (models, data sets, methods, schemes, search
spaces), public for packages beside ``rank_search``: a strict name -> object map whose
duplicate names raise and whose unknown names raise a ``ValueError`` listing the valid ones."""
from __future__ import annotations

from ._registry import Registry

__all__ = ["Registry"]
