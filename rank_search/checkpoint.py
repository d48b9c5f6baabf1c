"""Compact-model files: save and load (``torch.load(weights_only=True)`` safe)."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from . import schema
from .errors import RankSearchError
from .plan import RankPlan

FORMAT = schema.COMPACT_FILE_FORMAT


def save_compact(path: str, compact: nn.Module, *, plan: RankPlan, model: str, dataset: str, method: str,
                 in_channels: int, num_classes: int, image_size: int) -> None:
    """Write the compact weights plus what is needed to rebuild the architecture."""
    torch.save({
        "format": FORMAT,
        "model": model,
        "dataset": dataset,
        "method": method,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": image_size,
        "plan": plan.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in compact.state_dict().items()},
    }, path)


# What a compact checkpoint must hold to rebuild its model, with the types it must have.
_FIELDS = {"model": str, "in_channels": int, "num_classes": int, "image_size": int, "plan": dict, "state_dict": dict}


def _check(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RankSearchError(f"{path!r} is not a rank-search compact checkpoint (format {FORMAT})")
    missing = [k for k in _FIELDS if k not in data]
    if missing:
        raise RankSearchError(f"checkpoint {path!r} lacks {', '.join(missing)}: not a complete compact checkpoint")
    wrong = [f"{k} ({type(data[k]).__name__}, not {t.__name__})" for k, t in _FIELDS.items()
             if not isinstance(data[k], t) or isinstance(data[k], bool)]
    if wrong:
        raise RankSearchError(f"checkpoint {path!r} has fields of the wrong type: {', '.join(wrong)}")
    return data


def _load(source, path: str) -> dict[str, Any]:
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise RankSearchError(f"checkpoint {path!r} cannot be read safely: {type(exc).__name__}") from None
    return _check(data, path)


def read_compact(path: str) -> dict[str, Any]:
    """The raw checkpoint dict; a missing, corrupt, foreign or incomplete file is a one-line error."""
    if not os.path.isfile(path):
        raise RankSearchError(f"checkpoint {path!r} does not exist")
    return _load(path, path)


def read_compact_bytes(data: bytes, *, label: str) -> dict[str, Any]:
    """:func:`read_compact` of a file's bytes (read from a URI, say); ``label`` names it in errors.
    Loaded with ``weights_only=True``: a booby-trapped pickle is refused, not run."""
    import io

    return _load(io.BytesIO(data), label)


def load_compact(path: str) -> nn.Module:
    """Rebuild the compact model of a ``compact.pt`` and load its weights (eval mode)."""
    return compact_from_checkpoint(read_compact(path), path=path)


def compact_from_checkpoint(data: dict[str, Any], *, path: str) -> nn.Module:
    """The compact model of a checkpoint already read with :func:`read_compact` (eval mode).

    The model is rebuilt by name, so an own ``package.module:builder`` must be importable.
    """
    from .models import create_model
    from .surgery import compress

    from .weights import check_finite

    data = _check(data, path)
    check_finite(data["state_dict"], what="checkpoint", path=path)
    try:
        dense = create_model(data["model"], in_channels=data["in_channels"], num_classes=data["num_classes"],
                             image_size=data["image_size"])
        compact = compress(dense, RankPlan.from_dict(data["plan"]), decompose=False)
    except RankSearchError as exc:
        raise RankSearchError(f"checkpoint {path!r}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        raise RankSearchError(f"checkpoint {path!r} does not fit model {data['model']!r}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    try:
        compact.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RankSearchError(f"checkpoint {path!r} does not match its plan: {first}") from None
    return compact.eval()
