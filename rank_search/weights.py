"""Dense weights in and out: the one loader behind ``train --init`` (and the search's dense
reference), checked key by key and shape by shape against the model it loads into."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping

import torch
from torch import nn

from .errors import RankSearchError

#: how many mismatched keys an error names (the rest are counted)
SHOWN_KEYS = 3


def _state_dict_of(data: Any, *, what: str, path: str) -> Mapping[str, torch.Tensor]:
    """A bare ``state_dict``, or the one under ``state_dict`` / ``model`` (a ``compact.pt`` of a
    ``full`` run, or a training checkpoint of another tool)."""
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            inner = data.get(key)
            if isinstance(inner, Mapping):
                data = inner
                break
        if all(isinstance(k, str) for k in data) and all(isinstance(v, torch.Tensor) for v in data.values()):
            return data
    raise RankSearchError(f"{what} {path!r} holds no state_dict (a mapping of parameter names to tensors, "
                          f"bare or under 'state_dict' or 'model'), got {type(data).__name__}")


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def nonfinite_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of ``state`` whose floating-point tensor holds a NaN or an infinity."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
            and not bool(torch.isfinite(v).all())]


def check_finite(state: Mapping[str, torch.Tensor], *, what: str, path: str) -> None:
    """Refuse weights holding NaN or infinite values (a diverged run's, or a damaged file) in one
    line, rather than a trial or an export failing on them later."""
    bad = nonfinite_keys(state)
    if bad:
        raise RankSearchError(f"{what} {path!r} holds non-finite values (NaN or inf) in {len(bad)} tensor(s): "
                              f"{_listed(bad)}")


def load_weights(model: nn.Module, path: str, *, what: str = "--init") -> nn.Module:
    """Load a ``state_dict`` file into ``model`` in place and return the model.

    The file is read with ``torch.load(weights_only=True, map_location="cpu")``. Every key of the
    model must be in the file with the same shape, and the file must hold no other key.

    Args:
        model: the freshly built model the weights are for.
        path: a ``state_dict`` saved with ``torch.save``, bare or under ``state_dict``/``model``
            (torchvision's ImageNet weight files are bare state_dicts).
        what: how the caller names the file in errors (``--init``, ``dense_reference``, ...).

    Raises:
        RankSearchError: one line naming ``what``, the path and the first few missing,
            unexpected or mismatched keys.
    """
    if not os.path.isfile(path):
        raise RankSearchError(f"{what} {path!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise RankSearchError(f"{what} {path!r} cannot be read safely (torch.load weights_only=True): "
                              f"{type(exc).__name__}: {first}") from None
    state = _state_dict_of(data, what=what, path=path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape: {_listed(mismatched)}")
    if problems:
        raise RankSearchError(f"{what} {path!r} does not fit the model ({len(expected)} keys): "
                              + "; ".join(problems))
    check_finite(state, what=what, path=path)
    model.load_state_dict(state)
    return model


def save_weights(model: nn.Module, path: str) -> None:
    """Write ``model.state_dict()`` (on the CPU) to ``path`` atomically: a failure leaves no
    half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RankSearchError(f"folder of {path!r} does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a plain file's mode, not mkstemp's private 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["load_weights", "save_weights"]
