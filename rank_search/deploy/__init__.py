"""Deployment: a compact model -> an ONNX or torch.export file (BatchNorm folded, batch dynamic,
checked against PyTorch), and the measurement of any model file (`rank-search evaluate`).

Reads compact checkpoints; never imports the search. ``onnx``/``onnxruntime`` (the ``deploy``
extra) are imported only when an ONNX file is written or read.
"""
from __future__ import annotations

from .evaluate import evaluate_file
from .export import Deployment, deploy, sidecar_path
from .fast import LayerChoice, Prepared, exact_forms, prepare_for_inference
from .fold import fold_batchnorm, foldable_pairs
from .metadata import input_normalization
from .runtime import KINDS, OpenedModel, detect_kind, open_model

__all__ = ["KINDS", "Deployment", "LayerChoice", "OpenedModel", "Prepared", "deploy", "detect_kind", "evaluate_file",
           "exact_forms", "fold_batchnorm", "foldable_pairs", "input_normalization", "open_model",
           "prepare_for_inference", "sidecar_path"]
