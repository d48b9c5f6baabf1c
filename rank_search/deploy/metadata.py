"""What a deployed file records about itself: the input it expects (shape, pixel scale,
normalisation), the model and plan it came from, and the BatchNorm layers folded."""
from __future__ import annotations

from typing import Any, Mapping

from .. import __version__, schema


def input_normalization(dataset: str) -> dict[str, Any]:
    """How the data set's images become the model's input: ``(pixels * scale - mean) / std``
    per channel, as the rank-search loaders do it (``scale`` 1/255 for 8-bit images)."""
    if dataset == "mnist5k":
        from ..data.mnist import MNIST_MEAN as mean, MNIST_STD as std

        scale = 1 / 255
    elif dataset in ("cifar10", "cifar100"):
        from ..data import cifar

        mean, std = (cifar.CIFAR10_MEAN, cifar.CIFAR10_STD) if dataset == "cifar10" else (
            cifar.CIFAR100_MEAN, cifar.CIFAR100_STD)
        scale = 1 / 255
    elif dataset == "imagefolder":
        from ..data.imagefolder import IMAGENET_MEAN as mean, IMAGENET_STD as std

        scale = 1 / 255
    elif dataset in ("digits", "synthetic"):
        # our choice: these two compute their statistics when loaded (digits from its fixed
        # train split, synthetic from its noise level); both are embedded, so load and read them
        from ..data import load_dataset

        loader = load_dataset(dataset).test
        mean, std = loader._mean.flatten().tolist(), loader._std.flatten().tolist()
        scale = 1 / 16 if dataset == "digits" else 1.0
    else:
        return {"scale": None, "mean": None, "std": None,
                "note": f"unknown for data set {dataset!r}: feed inputs as its loader does"}
    return {"scale": scale, "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "formula": "(pixels * scale - mean) / std, per channel"}


def deploy_metadata(checkpoint: Mapping[str, Any], *, fmt: str, folded: list[tuple[str, str]],
                    source: str) -> dict[str, Any]:
    """The metadata of a deployed file (a plain, YAML- and JSON-safe mapping)."""
    shape = [checkpoint["in_channels"], checkpoint["image_size"], checkpoint["image_size"]]
    return {
        "format": schema.DEPLOY_FILE_FORMAT,
        "file_format": fmt,
        "model": checkpoint["model"],
        "dataset": checkpoint["dataset"],
        "method": checkpoint["method"],
        "num_classes": checkpoint["num_classes"],
        "input": {"name": schema.DEPLOY_INPUT_NAME, "shape": ["batch", *shape], "layout": "NCHW",
                  "dtype": "float32", **input_normalization(checkpoint["dataset"])},
        "output": {"name": schema.DEPLOY_OUTPUT_NAME, "shape": ["batch", checkpoint["num_classes"]],
                   "meaning": "class logits (argmax = predicted class)"},
        "plan": checkpoint["plan"],
        "batchnorm_folded": {bn: conv for conv, bn in folded},
        "parity_tolerance": schema.PARITY_TOLERANCE,
        "source": source,
        "rank_search_version": __version__,
    }


def flat_props(metadata: Mapping[str, Any]) -> dict[str, str]:
    """A few top-level ``key: text`` entries for viewers that show ONNX metadata_props as a list
    (the full metadata is under ``schema.DEPLOY_METADATA_KEY`` as JSON)."""
    norm = metadata["input"]
    return {"model": str(metadata["model"]), "dataset": str(metadata["dataset"]),
            "method": str(metadata["method"]), "input_shape": "x".join(map(str, norm["shape"])),
            "input_scale": _text(norm.get("scale")), "input_mean": _text(norm.get("mean")),
            "input_std": _text(norm.get("std"))}


def _text(value) -> str:
    if value is None:
        return ""
    return ",".join(f"{v:.6g}" for v in value) if isinstance(value, list) else f"{value:.6g}"
