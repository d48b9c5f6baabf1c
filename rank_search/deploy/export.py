"""`rank-search deploy`: a compact model -> an ONNX or torch.export file that loads without
rank-search, BatchNorm folded, the batch dimension dynamic, checked against PyTorch before it is
kept.

The file is written under a temporary name beside ``out``, loaded back with its own runtime
(onnxruntime, ``torch.export.load``) and compared with the PyTorch compact model on seeded
batches; only a file within ``schema.PARITY_TOLERANCE`` becomes ``out``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from .. import schema
from ..errors import RankSearchError
from .fast import prepare_for_inference
from .metadata import deploy_metadata, flat_props
from .runtime import open_model

PARITY_BATCHES = (8, 1)  # two sizes: the batch dimension must really be dynamic
EXAMPLE_BATCH = 2  # torch.export specialises a dimension of size 0 or 1
MEASURE_BATCH = 16  # our choice: a batch at which to time each layer's exact forms (benchmarks/compact_speed.py)


@dataclass(frozen=True)
class Deployment:
    """What `deploy` wrote and measured."""

    path: str
    sidecar: str
    fmt: str
    folded: list[tuple[str, str]]
    max_abs_diff: float
    metadata: dict[str, Any]


def sidecar_path(path: str) -> str:
    """``model.onnx`` -> ``model.onnx.yaml``."""
    return path + schema.DEPLOY_SIDECAR_SUFFIX


def export_program(model: torch.nn.Module, example: torch.Tensor):
    """``torch.export`` with a dynamic batch dimension; a model it cannot capture is one line."""
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:  # torch.export raises many types; the first line names the construct
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RankSearchError(f"torch.export cannot capture the model with a dynamic batch dimension: "
                              f"{type(exc).__name__}: {first}") from None


def _write_torch_export(program, path: str, metadata: dict[str, Any]) -> None:
    torch.export.save(program, path, extra_files={schema.DEPLOY_METADATA_FILE: json.dumps(metadata)})


def _write_onnx(program, path: str, metadata: dict[str, Any]) -> None:
    try:
        import onnx
    except ImportError:
        raise RankSearchError("--format onnx needs onnx, onnxscript and onnxruntime: "
                              "pip install 'rank-search[deploy]'") from None
    chatter = io.StringIO()  # the exporter prints its progress; keep the command's output short
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            torch.onnx.export(program, f=path, input_names=[schema.DEPLOY_INPUT_NAME],
                              output_names=[schema.DEPLOY_OUTPUT_NAME], external_data=False, dynamo=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RankSearchError(f"the ONNX exporter failed: {type(exc).__name__}: {first}") from None
    proto = onnx.load(path)
    props = {schema.DEPLOY_METADATA_KEY: json.dumps(metadata), **flat_props(metadata)}
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (f"{metadata['model']} compressed by rank-search ({metadata['method']}); "
                        f"input {metadata['input']['formula'] if 'formula' in metadata['input'] else 'as trained'}")
    onnx.save(proto, path)


def parity(reference: torch.nn.Module, path: str, kind: str, shape: tuple[int, ...], *, seed: int = 0) -> float:
    """Max abs difference of the file at ``path`` (loaded fresh) from ``reference`` over seeded
    standard-normal batches (the scale of normalised inputs) of each size in ``PARITY_BATCHES``.
    A non-finite output of either model raises ``RankSearchError``: it never passes as 0."""
    opened = open_model(path, kind)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.inference_mode():
        for n in PARITY_BATCHES:
            x = torch.randn((n, *shape), generator=gen)
            got, want = opened.forward(x), reference(x)
            if got.shape != want.shape:
                raise RankSearchError(f"exported {kind} model gives shape {tuple(got.shape)} for a batch of {n}, "
                                      f"PyTorch {tuple(want.shape)}")
            for who, out in (("exported " + kind, got), ("PyTorch compact", want)):
                if not bool(torch.isfinite(out).all()):  # NaN - NaN is NaN, and max(0.0, nan) is 0.0
                    raise RankSearchError(f"the {who} model gives non-finite outputs (NaN or inf) for a batch "
                                          f"of {n}: parity cannot be checked; nothing was written")
            worst = max(worst, float((got.float() - want.float()).abs().max()))
    return worst


def _atomic_text(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def deploy(source: str, *, fmt: str, out: str, source_label: str | None = None,
           measure_batch: int | None = None) -> Deployment:
    """Export the compact model of the ``compact.pt`` at ``source`` to ``out`` (and its side-car).

    Args:
        fmt: ``onnx`` or ``torch-export`` (``schema.DEPLOY_FORMATS``).
        source_label: how the metadata names the source (default: ``source``).
        measure_batch: time each factorized layer's exact forms at this batch size (e.g.
            ``MEASURE_BATCH``) and keep the fastest, which may be a merged form with more MACs
            than the compact model; None (default) keeps the compact model's MACs.

    Raises:
        RankSearchError: a bad format or folder, a model torch.export cannot capture, or an
            exported model that differs from the PyTorch one by more than the tolerance.
    """
    from ..checkpoint import compact_from_checkpoint, read_compact

    if fmt not in schema.DEPLOY_FORMATS:
        raise RankSearchError(f"--format must be one of {', '.join(schema.DEPLOY_FORMATS)}, got {fmt!r}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise RankSearchError(f"folder of --out {out!r} does not exist: {folder}")
    if os.path.isdir(out):
        raise RankSearchError(f"--out {out!r} is a folder; give a file name such as model.onnx")
    if os.path.exists(out) and os.path.samefile(out, source):
        raise RankSearchError(f"--out {out!r} is SOURCE itself; give another file name such as model.onnx")
    checkpoint = read_compact(source)
    compact = compact_from_checkpoint(checkpoint, path=source)
    shape = (checkpoint["in_channels"], checkpoint["image_size"], checkpoint["image_size"])
    example = torch.randn((EXAMPLE_BATCH, *shape), generator=torch.Generator().manual_seed(0))
    # BatchNorm folded, channels_last weights, each factorized layer in its chosen exact form
    prepared = prepare_for_inference(compact, example, measure_batch=measure_batch)
    pairs = prepared.folded
    program = export_program(prepared.module, example)
    metadata = deploy_metadata(checkpoint, fmt=fmt, folded=pairs, source=source_label or source)
    metadata["inference_forms"] = prepared.forms()
    # the runtimes want their own suffix (torch.export.load warns on any other)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.partial-", dir=folder,
                               suffix=".onnx" if fmt == "onnx" else ".pt2")
    os.close(fd)
    try:
        (_write_onnx if fmt == "onnx" else _write_torch_export)(program, tmp, metadata)
        diff = parity(compact, tmp, fmt, shape)
        if not diff <= schema.PARITY_TOLERANCE:  # also catches NaN
            raise RankSearchError(f"the exported {fmt} model differs from the PyTorch compact model by {diff:.3g} "
                                  f"(max abs) > {schema.PARITY_TOLERANCE:g}; nothing was written")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sidecar = sidecar_path(out)
    record = {**metadata, "file": os.path.basename(out), "parity_max_abs_diff": diff,
              "parity_batches": list(PARITY_BATCHES)}
    _atomic_text(sidecar, yaml.safe_dump(record, sort_keys=False))
    return Deployment(out, sidecar, fmt, pairs, diff, metadata)
