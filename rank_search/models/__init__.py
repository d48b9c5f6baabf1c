"""Model zoo: every builder is ``fn(*, in_channels, num_classes, image_size) -> nn.Module``.

A name with a colon, ``package.module:builder``, is your own builder: it is imported (running that
module's code, like any import) and called the same way, wherever a model is built by name.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from rank_search._registry import Registry
from rank_search.errors import RankSearchError

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")
register_model = MODELS.register


def create_model(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build a registered model, or your own one.

    Args:
        name: Registered model name (see :func:`list_models`), or ``package.module:builder``.
        in_channels: Number of input image channels (1 or 3).
        num_classes: Number of output classes.
        image_size: Input height/width in pixels (square images).

    Returns:
        A freshly initialised ``nn.Module``.

    Raises:
        ValueError: For an unknown model name (the message lists the valid names), an own
            builder that does not import, is missing or does not return an ``nn.Module``.
    """
    from ._own import build_own, is_own_model

    if is_own_model(name):
        return build_own(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    try:
        builder = MODELS.get(name)
    except RankSearchError as exc:
        raise RankSearchError(f"{exc}; or your own builder as package.module:function") from None
    return builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


def create_model_for(name: str, data) -> nn.Module:
    """Build model ``name`` for a data set: ``data`` is anything with ``in_channels``,
    ``num_classes`` and ``image_size`` (a ``DatasetInfo``, loaded ``DataSplits``, a checkpoint's
    metadata read into an object)."""
    return create_model(name, in_channels=data.in_channels, num_classes=data.num_classes,
                        image_size=data.image_size)


def _measured(name: str, attribute: str):
    """A registered builder's ``attribute`` (a value measured for that model), else None."""
    return getattr(MODELS.get(name), attribute, None) if name in MODELS else None


def nested_lr(name: str) -> float | None:
    """The learning rate measured best for training model ``name`` as a nested-rank model (a
    builder's ``nested_lr`` attribute; docs/nested.md), or None where none was measured (your own
    builders included): the one-shot sweep then trains at the space's central rate."""
    return _measured(name, "nested_lr")


def nested_epochs_factor(name: str) -> int | None:
    """The nested training's epochs for model ``name``, as a multiple of a trial's, where one was
    measured (a builder's ``nested_epochs_factor`` attribute; docs/nested.md), else None: the
    one-shot sweep then uses ``search.oneshot_sweep.NESTED_EPOCHS_FACTOR``."""
    return _measured(name, "nested_epochs_factor")


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching the glob ``pattern``."""
    return MODELS.names(pattern)


# Imported for their registration side effects.
from rank_search.models import cifar_resnet, lenet, torchvision_models, vgg  # noqa: E402,F401

__all__ = ["MODELS", "ModelBuilder", "create_model", "create_model_for", "list_models", "nested_epochs_factor",
           "nested_lr", "register_model"]
