"""Your own model: ``package.module:builder`` imports ``builder`` (which runs that module's code,
like any import) and calls it with ``in_channels``, ``num_classes`` and ``image_size``."""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from typing import Callable

from torch import nn

from ..errors import RankSearchError

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
BUILDER_ARGS = ("in_channels", "num_classes", "image_size")


def is_own_model(name: str) -> bool:
    """Whether ``name`` names a builder by import path (``module:attr``) rather than the registry."""
    return ":" in name


def _in_cwd(top: str) -> bool:
    cwd = os.getcwd()
    return cwd not in sys.path and (os.path.isfile(os.path.join(cwd, top + ".py"))
                                    or os.path.isdir(os.path.join(cwd, top)))


def _import(module: str, name: str):
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == top and _in_cwd(top):
            # A console script's sys.path lacks the current folder that ``python -m`` has
            # (uvicorn resolves ``module:app`` the same way); Ray adds it for its workers.
            sys.path.append(os.getcwd())
            return _import(module, name)
        raise RankSearchError(f"model {name!r}: module {module!r} does not import: "
                              f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # the module's own code failed (SyntaxError, ImportError, ...)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RankSearchError(f"model {name!r}: module {module!r} does not import: "
                              f"{type(exc).__name__}: {first}") from None


def resolve_builder(name: str) -> Callable[..., nn.Module]:
    """The callable that ``package.module:builder`` names.

    Raises:
        RankSearchError: a malformed name, a module that does not import, a missing attribute or
            one that is not callable, or a callable that cannot take the three keyword arguments.
    """
    match = _SPEC.match(name)
    if not match:
        raise RankSearchError(f"own model must be package.module:builder (Python identifiers), got {name!r}")
    module_name, attr = match.groups()
    obj = _import(module_name, name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            defined = sorted(k for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith("_")
                             and v.__module__ == getattr(obj, "__name__", None))
            hint = f"; functions defined there: {', '.join(defined[:8])}" if defined else ""
            raise RankSearchError(f"model {name!r}: module {module_name!r} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RankSearchError(f"model {name!r}: {attr!r} is a {type(obj).__name__}, not a callable builder")
    try:
        inspect.signature(obj).bind(**{k: 0 for k in BUILDER_ARGS})
    except TypeError as exc:
        raise RankSearchError(f"model {name!r}: the builder must accept keyword arguments "
                              f"{', '.join(BUILDER_ARGS)} ({exc})") from None
    except ValueError:  # no signature to inspect (a builtin): calling it will tell
        pass
    return obj


def build_own(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Import and call the builder; its result must be an ``nn.Module``."""
    model = resolve_builder(name)(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    if not isinstance(model, nn.Module):
        raise RankSearchError(f"model {name!r}: the builder returned a {type(model).__name__}, "
                              "not a torch.nn.Module")
    return model
