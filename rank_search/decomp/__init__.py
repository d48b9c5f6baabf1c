"""Low-rank decompositions: rank policies, truncated SVD and Tucker-2 (weight-error or, in
``calibrated``, output-error on calibration inputs), in full precision."""
from __future__ import annotations

import importlib

from .policies import POLICY_KINDS, RankPolicy, parse_rank_policy

# The torch-backed parts load on first use, so the CLI can parse a rank spec (``policies``,
# torch-free) and refuse a bad one before torch is imported.
_LAZY = {"batched_low_rank": "batched", "batched_truncated_svd": "batched", "full_precision": "precision",
         "as_working": "svd", "low_rank_approx": "svd", "singular_values": "svd", "truncated_svd": "svd",
         "mode_spectra": "tucker", "tucker2": "tucker", "tucker2_reconstruct": "tucker",
         "collect_input_moments": "calibrated", "collect_paired_moments": "calibrated", "input_moment": "calibrated", "output_aware_low_rank": "calibrated",
         "output_aware_tucker2": "calibrated", "output_error": "calibrated"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "POLICY_KINDS",
    "RankPolicy",
    "as_working",
    "batched_low_rank",
    "batched_truncated_svd",
    "collect_input_moments",
    "collect_paired_moments",
    "full_precision",
    "input_moment",
    "low_rank_approx",
    "mode_spectra",
    "output_aware_low_rank",
    "output_aware_tucker2",
    "output_error",
    "parse_rank_policy",
    "singular_values",
    "truncated_svd",
    "tucker2",
    "tucker2_reconstruct",
]
