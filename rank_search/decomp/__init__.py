"""Low-rank decompositions: rank policies, truncated SVD and Tucker-2, in full precision."""
from __future__ import annotations

from .batched import batched_low_rank, batched_truncated_svd
from .policies import POLICY_KINDS, RankPolicy, parse_rank_policy
from .precision import full_precision
from .svd import as_working, low_rank_approx, singular_values, truncated_svd
from .tucker import mode_spectra, tucker2, tucker2_reconstruct

__all__ = [
    "POLICY_KINDS",
    "RankPolicy",
    "as_working",
    "batched_low_rank",
    "batched_truncated_svd",
    "full_precision",
    "low_rank_approx",
    "mode_spectra",
    "parse_rank_policy",
    "singular_values",
    "truncated_svd",
    "tucker2",
    "tucker2_reconstruct",
]
