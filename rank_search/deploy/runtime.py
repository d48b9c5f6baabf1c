"""Open a model file of any of the three kinds (``compact.pt``, ONNX, torch.export) as one
callable: float32 ``N x C x H x W`` batch in, logits out (a torch tensor)."""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .. import schema
from ..errors import RankSearchError

COMPACT = "compact"
KINDS = (COMPACT, *schema.DEPLOY_FORMATS)


@dataclass
class OpenedModel:
    """A loaded model file."""

    path: str
    kind: str  # compact | onnx | torch-export
    forward: Callable[[torch.Tensor], torch.Tensor]
    input_shape: tuple[int, int, int]  # C, H, W of one sample
    metadata: dict[str, Any] = field(default_factory=dict)
    module: torch.nn.Module | None = None  # the torch module (compact, torch-export)
    onnx_path: str | None = None


def detect_kind(path: str) -> str:
    """``compact``, ``onnx`` or ``torch-export``, from the file's content (not its name)."""
    if not os.path.isfile(path):
        raise RankSearchError(f"model file {path!r} does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "torch-export"
        if any(n.endswith("/data.pkl") for n in names):
            return COMPACT
    else:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x08":  # ONNX ModelProto starts with field 1 (ir_version), a varint
            return "onnx"
    raise RankSearchError(f"{path!r} is not a rank-search compact.pt, an ONNX file or a torch.export archive")


def _no_grad(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return forward


def _open_compact(path: str) -> OpenedModel:
    from ..checkpoint import compact_from_checkpoint, read_compact

    data = read_compact(path)
    model = compact_from_checkpoint(data, path=path)
    shape = (data["in_channels"], data["image_size"], data["image_size"])
    info = {k: data[k] for k in ("model", "dataset", "method", "num_classes", "plan")}
    return OpenedModel(path, COMPACT, _no_grad(model), shape, info, module=model)


def _open_torch_export(path: str) -> OpenedModel:
    extra = {schema.DEPLOY_METADATA_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as exc:
        raise RankSearchError(f"torch.export archive {path!r} does not load: {type(exc).__name__}") from None
    metadata = json.loads(extra[schema.DEPLOY_METADATA_FILE]) if extra[schema.DEPLOY_METADATA_FILE] else {}
    user_input = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_input)
    shape = tuple(int(s) for s in node.meta["val"].shape[1:])
    module = program.module()
    return OpenedModel(path, "torch-export", _no_grad(module), shape, metadata, module=module)


def _open_onnx(path: str) -> OpenedModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RankSearchError("ONNX files need onnxruntime: pip install 'rank-search[deploy]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same share of cores as torch
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RankSearchError(f"ONNX file {path!r} does not load in onnxruntime: {first}") from None
    meta = session.get_modelmeta().custom_metadata_map
    metadata = json.loads(meta[schema.DEPLOY_METADATA_KEY]) if schema.DEPLOY_METADATA_KEY in meta else {}
    spec = session.get_inputs()[0]
    if len(spec.shape) != 4 or not all(isinstance(s, int) for s in spec.shape[1:]):
        raise RankSearchError(f"ONNX file {path!r} must take one N x C x H x W image batch, its input is "
                              f"{spec.name} {spec.shape}")
    name = spec.name

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().float().numpy()})[0])

    return OpenedModel(path, "onnx", forward, tuple(spec.shape[1:]), metadata, onnx_path=path)


def open_model(path: str, kind: str | None = None) -> OpenedModel:
    """Load ``path`` (its kind detected from its content unless given)."""
    kind = kind or detect_kind(path)
    opener = {COMPACT: _open_compact, "onnx": _open_onnx, "torch-export": _open_torch_export}[kind]
    return opener(path)
