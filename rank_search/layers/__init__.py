"""Factorized layers, one per reshape scheme, registered in ``SCHEMES``."""
from __future__ import annotations

from .._registry import Registry
from .base import FactorizedLayer, Rank
from .channel import ChannelFactorized
from .spatial import SpatialFactorized
from .tiled import TiledFactorized, tile_grid
from .tucker2 import Tucker2Factorized, as_pair

SCHEMES: Registry[type[FactorizedLayer]] = Registry("scheme")
for _cls in (ChannelFactorized, SpatialFactorized, Tucker2Factorized, TiledFactorized):
    SCHEMES.add(_cls.scheme, _cls)


def get_scheme(name: str) -> type[FactorizedLayer]:
    """The factorized-layer class of scheme ``name`` (ValueError lists the valid schemes)."""
    return SCHEMES.get(name)


__all__ = [
    "SCHEMES",
    "ChannelFactorized",
    "FactorizedLayer",
    "Rank",
    "SpatialFactorized",
    "TiledFactorized",
    "Tucker2Factorized",
    "as_pair",
    "get_scheme",
    "tile_grid",
]
