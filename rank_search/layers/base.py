"""Base class of factorized layers; each subclass is one reshape scheme (METHODS.md section 1)."""
from __future__ import annotations

from typing import ClassVar, Union

import torch
from torch import nn

from ..errors import RankSearchError

Rank = Union[int, tuple[int, int]]


def conv_geometry(conv: nn.Conv2d) -> dict:
    """Kernel, stride, padding and dilation of ``conv`` as int pairs."""
    if isinstance(conv.padding, str):
        if conv.padding != "valid":
            raise RankSearchError(f"padding={conv.padding!r} is not supported, use integer padding")
        padding = (0, 0)
    else:
        padding = tuple(conv.padding)
    return {
        "kernel_size": tuple(conv.kernel_size),
        "stride": tuple(conv.stride),
        "padding": padding,
        "dilation": tuple(conv.dilation),
    }


def check_rank(name: str, rank: int, max_rank: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= max_rank:
        raise RankSearchError(f"rank for layer {name!r} must be in [1, {max_rank}], got {rank}")


class FactorizedLayer(nn.Module):
    """A low-rank replacement of one dense ``nn.Conv2d`` or ``nn.Linear``.

    Subclasses implement one scheme. Class-level methods work on dense layers/weights (what
    plans and projection methods need); instances are the compact modules.
    """

    scheme: ClassVar[str]
    #: sub-module whose weight ``rescale_`` scales, and the one carrying the bias
    scale_factor_name: ClassVar[str]
    output_name: ClassVar[str]
    #: number of rank dimensions (2 for Tucker-2: out and in modes)
    rank_dims: ClassVar[int] = 1
    #: whether ``from_dense`` takes ``input_moment`` (a data-aware, output-error decomposition)
    data_aware: ClassVar[bool] = False

    # ---- scheme-level API (dense side) ----
    @classmethod
    def unsupported_reason(cls, layer: nn.Module) -> str | None:
        """Why ``layer`` cannot use this scheme, or None when it can."""
        if isinstance(layer, nn.Linear):
            return None
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1:
                return "grouped convolutions are not eligible"
            if layer.padding_mode != "zeros":
                return f"padding_mode {layer.padding_mode!r} is not supported"
            if isinstance(layer.padding, str) and layer.padding != "valid":
                return f"padding={layer.padding!r} is not supported"
            return None
        return f"{type(layer).__name__} is not a Conv2d or Linear"

    @classmethod
    def check_supported(cls, layer: nn.Module, name: str = "layer") -> None:
        """Raise a one-line ``RankSearchError`` when ``layer`` cannot use this scheme."""
        reason = cls.unsupported_reason(layer)
        if reason:
            raise RankSearchError(f"layer {name!r} cannot use scheme {cls.scheme!r}: {reason}")

    @classmethod
    def max_rank(cls, layer: nn.Module, **opts) -> Rank:
        raise NotImplementedError

    @classmethod
    def spectra(cls, weight: torch.Tensor, **opts) -> list[torch.Tensor]:
        """Descending singular values for each rank dimension (for energy/value policies)."""
        raise NotImplementedError

    @classmethod
    def project(cls, weight: torch.Tensor, rank: Rank, **opts) -> torch.Tensor:
        """Low-rank reconstruction of a dense weight, same shape (used by DeepTwist).

        The SVD schemes take ``randomized`` (see ``decomp.truncated_svd``; False: the exact
        ``torch.linalg.svd`` truncation, no RNG drawn); Tucker-2 is always tensorly's
        SVD-initialised HOOI.
        """
        raise NotImplementedError

    @classmethod
    def build(cls, layer: nn.Module, rank: Rank, *, name: str = "layer", **opts) -> "FactorizedLayer":
        """The compact module's structure for ``layer`` at ``rank`` (validated), default-initialised,
        without decomposing: what loading saved compact weights needs."""
        raise NotImplementedError

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: Rank, *, balance: bool = True, **opts) -> "FactorizedLayer":
        """Decompose ``layer`` (never mutated) into a compact module of the given rank.

        Args:
            balance: split singular values evenly between factors (sqrt(S) each); with False
                the input-side factors stay orthonormal and the scale goes to the output side.
            input_moment: schemes with ``data_aware`` only: the second moment ``C`` [d, d] of the
                layer's unfolded inputs on calibration data (``decomp.collect_input_moments``);
                the factors then minimise the output error ``tr((M - M') C (M - M')^T)`` instead
                of the weight error (``decomp.calibrated``). None: the weight decomposition.
            input_cross: with ``input_moment``, sequential calibration: ``X X~^T / N`` of the dense
                inputs ``X`` against the inputs ``X~`` the layer sees once earlier layers are
                compressed (``input_moment`` is then ``X~ X~^T / N``); the factors minimise
                ``||M X - M' X~||`` (``decomp.collect_paired_moments``).
        """
        raise NotImplementedError

    # ---- instance API (compact side) ----
    rank: Rank

    def to_dense_weight(self) -> torch.Tensor:
        """The dense weight this compact module computes (for tests and projections)."""
        raise NotImplementedError

    def factor_matrices(self) -> list[torch.Tensor]:
        """Factor matrices with the rank on the columns (for orthogonality regularizers)."""
        raise NotImplementedError

    def rescale_(self, factor: float) -> None:
        """Multiply the computed weight by ``factor`` in place (bias untouched), on the factor
        named by ``scale_factor_name`` so the others keep their form (e.g. orthonormal)."""
        with torch.no_grad():
            getattr(self, self.scale_factor_name).weight.mul_(factor)

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias of the dense layer, carried by the output sub-module."""
        return getattr(self, self.output_name).bias
