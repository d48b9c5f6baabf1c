"""The method registry (a module of its own so method files can import it without cycles)."""
from __future__ import annotations

from .._registry import Registry

METHODS: Registry[type] = Registry("method")


def register_method(cls: type) -> type:
    """Class decorator: register a ``Method`` subclass under its ``name``."""
    METHODS.add(cls.name, cls)
    return cls


