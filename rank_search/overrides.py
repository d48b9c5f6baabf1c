"""`--set KEY=VALUE` overrides: YAML-scalar parsing and validated, type-coerced updates of frozen
dataclass settings (the CLI and trainable boundary)."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

import yaml

from .errors import RankSearchError


def parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars: ``5`` -> int, ``1e-4`` -> float, ``false`` -> bool."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '1e-4' as a string
        except ValueError:
            return value
    return value


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["trp.interval=5", ...]`` -> ``{"trp.interval": 5}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise RankSearchError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(val.strip())
    return out


def _coerce(cls_name: str, field: dataclasses.Field, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] or ``X | None``
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(cls_name, field, inner[0], value)
    where = f"{cls_name}.{field.name}"
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise RankSearchError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise RankSearchError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RankSearchError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        return str(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RankSearchError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(cls_name, field, item, v) if item is not Any else v for v in value)
    return value


def replace_validated(obj: Any, updates: Mapping[str, Any], *, prefix: str = "") -> Any:
    """``dataclasses.replace`` with type coercion and unknown-key errors listing the valid keys."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        if key not in fields:
            valid = ", ".join(prefix + k for k in fields) or "(none)"
            raise RankSearchError(f"unknown setting {prefix + key!r}; valid settings: {valid}")
        changes[key] = _coerce(prefix.rstrip(".") or cls.__name__, fields[key], hints[key], value)
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as exc:
        raise RankSearchError(str(exc)) from None


def split_prefixed(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``settings`` under ``prefix.``, without the prefix."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in settings.items() if k.startswith(head)}


def to_plain(obj: Any) -> Any:
    """A dataclass as plain YAML-safe data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    return obj
