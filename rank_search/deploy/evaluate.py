"""`rank-search evaluate FILE`: test accuracy, params, MACs and latency of a ``compact.pt``, an
ONNX or a torch.export file, each measured on the file itself."""
from __future__ import annotations

from typing import Any

import torch

from .. import schema
from ..errors import RankSearchError
from .runtime import OpenedModel, open_model


def file_params(opened: OpenedModel) -> int:
    """The learned numbers the file stores: a torch module's parameters; an ONNX file's float
    initializers (for a deployed file both count folded BatchNorm as conv biases)."""
    if opened.onnx_path is not None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(opened.onnx_path)
        return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer
                       if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)))
    return int(sum(p.numel() for p in opened.module.parameters()))


def _torch_macs(module: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one sample, from torch's FLOP counter (convolutions and matrix products;
    2 FLOPs per MAC), which sees an exported graph's ops as well as a module's."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(torch.zeros((1, *shape)))
    return int(counter.get_total_flops()) // 2


def _onnx_macs(path: str, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one sample through every Conv, Gemm and MatMul of an ONNX graph (shapes
    inferred with the batch set to 1)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in model.graph.initializer}
    for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        if not out or not all(out):
            raise RankSearchError(f"cannot count the MACs of ONNX node {node.name!r}: unknown output shape")
        weight = shapes.get(node.input[1])
        if node.op_type == "Conv":  # weight numel (already / groups) x output positions
            total += _prod(weight) * _prod(out[2:])
        else:  # every output element is a K-long dot product
            a = shapes.get(node.input[0])
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[-2] if node.op_type == "Gemm" and trans_a else a[-1]
            total += _prod(out) * k
    return total


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def file_macs(opened: OpenedModel) -> int:
    if opened.onnx_path is not None:
        return _onnx_macs(opened.onnx_path, opened.input_shape)
    return _torch_macs(opened.module, opened.input_shape)


def latency_ms(opened: OpenedModel, batch_size: int, *, repeats: int, warmup: int = 2) -> float:
    """Median wall milliseconds of one forward pass of a ``batch_size`` batch (every repeat run)."""
    from ..latency import median_forward_ms

    x = torch.randn((batch_size, *opened.input_shape), generator=torch.Generator().manual_seed(0))
    return median_forward_ms([opened.forward], x, repeats=repeats, warmup=warmup)[0]


def accuracy_on_test(opened: OpenedModel, data) -> float:
    """Top-1 accuracy on the data set's test split (the loaders' own normalisation)."""
    correct = total = 0
    for x, y in data.test:
        logits = opened.forward(x)
        if logits.dim() != 2 or logits.shape[1] != data.num_classes:
            raise RankSearchError(f"{opened.path!r} gives outputs of shape {tuple(logits.shape)}, but data set "
                                  f"{data.name!r} has {data.num_classes} classes")
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    return correct / max(total, 1)


def evaluate_file(path: str, *, dataset: str, data_root: str | None = None, repeats: int = 10,
                  threads: int | None = None,
                  batch_sizes: tuple[int, ...] = schema.LATENCY_BATCH_SIZES) -> dict[str, Any]:
    """Everything `rank-search evaluate` prints, under the ``schema`` names.

    Args:
        threads: intra-op threads of torch and onnxruntime while measuring (default: torch's).
    """
    for name, value in (("--repeats", repeats), ("--threads", 1 if threads is None else threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RankSearchError(f"{name} must be an integer >= 1, got {value!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _evaluate(path, dataset=dataset, data_root=data_root, repeats=repeats, batch_sizes=batch_sizes)
    finally:
        torch.set_num_threads(before)


def _evaluate(path: str, *, dataset: str, data_root: str | None, repeats: int,
              batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    from ..data import dataset_info, load_dataset

    info = dataset_info(dataset, data_root=data_root)
    opened = open_model(path)
    want = (info.in_channels, info.image_size, info.image_size)
    if tuple(opened.input_shape) != want:
        raise RankSearchError(f"{path!r} takes inputs of {'x'.join(map(str, opened.input_shape))}, data set "
                              f"{dataset!r} has {'x'.join(map(str, want))}")
    data = load_dataset(dataset, data_root=data_root, batch_size=info.batch_size)
    result: dict[str, Any] = {
        schema.EVAL_FILE: path,
        schema.EVAL_FORMAT: opened.kind,
        schema.EVAL_DATASET: dataset,
        schema.TEST_ACCURACY: accuracy_on_test(opened, data),
        schema.PARAMS: file_params(opened),
        schema.MACS: file_macs(opened),
    }
    for b in batch_sizes:
        result[schema.latency_key(b)] = latency_ms(opened, b, repeats=repeats)
    result[schema.LATENCY_THREADS] = torch.get_num_threads()
    result[schema.LATENCY_REPEATS] = repeats
    return result
