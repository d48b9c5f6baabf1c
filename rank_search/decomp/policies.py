"""Rank policies: how a layer's rank is chosen from its spectrum (METHODS.md section 1)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import RankSearchError

POLICY_KINDS = ("fixed", "ratio", "energy", "value")


@dataclass(frozen=True)
class RankPolicy:
    """A rule turning a spectrum (or a max rank) into an integer rank.

    Attributes:
        kind: ``fixed`` (an integer rank), ``ratio`` (of the max rank, ceil, at least 1),
            ``energy`` (smallest r keeping that fraction of sum s_i^2) or ``value``
            (number of singular values >= the threshold).
        value: the policy's parameter.
        multiple: round the rank up to a multiple of this (capped at the max rank).
    """

    kind: str
    value: float
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise RankSearchError(
                f"rank policy must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}"
            )
        if not math.isfinite(self.value):  # int(inf) would raise OverflowError below
            raise RankSearchError(f"rank policy value must be a finite number, got {self.value}")
        if self.kind == "fixed" and (self.value != int(self.value) or self.value < 1):
            raise RankSearchError(f"fixed rank must be an integer >= 1, got {self.value}")
        if self.kind == "ratio" and not 0.0 < self.value <= 1.0:
            raise RankSearchError(f"rank ratio must be in (0, 1], got {self.value}")
        if self.kind == "energy" and not 0.0 < self.value <= 1.0:
            raise RankSearchError(f"energy threshold must be in (0, 1], got {self.value}")
        if self.kind == "value" and self.value < 0:
            raise RankSearchError(f"value threshold must be >= 0, got {self.value}")
        if self.multiple < 1:
            raise RankSearchError(f"rank multiple must be >= 1, got {self.multiple}")

    @property
    def needs_spectrum(self) -> bool:
        return self.kind in ("energy", "value")

    def choose(self, max_rank: int, singular_values=None) -> int:
        """The rank in [1, max_rank] this policy picks.

        Args:
            max_rank: the layer's (or mode's) maximum rank.
            singular_values: descending singular values (any sequence / 1-D tensor); needed
                for ``energy`` and ``value``.
        """
        if self.kind == "fixed":
            r = int(self.value)
        elif self.kind == "ratio":
            r = math.ceil(self.value * max_rank - 1e-9)
        else:
            if singular_values is None:
                raise ValueError(f"rank policy {self.kind!r} needs the layer's singular values")
            s = [float(v) for v in singular_values]
            if self.kind == "value":
                r = sum(1 for v in s if v >= self.value)
            else:
                energy = [v * v for v in s]
                total = sum(energy)
                r, acc = len(s), 0.0
                if total > 0:
                    for i, e in enumerate(energy, start=1):
                        acc += e
                        if acc / total >= self.value - 1e-12:
                            r = i
                            break
        r = max(1, r)
        if self.multiple > 1:
            r = self.multiple * math.ceil(r / self.multiple)
        return min(r, max_rank)

    def __str__(self) -> str:
        text = f"{self.kind}:{self.value:g}"
        return text + (f",multiple={self.multiple}" if self.multiple > 1 else "")


#: The rank-spec forms :func:`parse_rank_policy` accepts, named in each of its errors.
VALID_FORMS = ("8 or fixed:8 (an absolute rank), ratio:0.5 (that fraction of each layer's max rank), "
               "energy:0.9 (the smallest rank keeping that share of the squared singular values), "
               "value:0.05 (the number of singular values >= 0.05), each optionally followed by "
               "',multiple=N' (rounded up to a multiple of N); for --ranks also a plan .yaml file")


def _bad_spec(text: str, why: str) -> RankSearchError:
    return RankSearchError(f"bad rank spec {text!r}: {why}; valid forms: {VALID_FORMS}")


def _hint(text: str) -> str:
    """A nudge for the two likely slips: a percentage, and a bare fraction meant as a ratio."""
    head = text.partition(",")[0].strip()
    try:
        if head.endswith("%"):
            return f" (for {head} of each layer's max rank write 'ratio:{float(head[:-1]) / 100:g}')"
        number = float(head)
    except ValueError:
        return ""
    if 0 < number < 1:
        return f" (for a ratio of each layer's max rank write 'ratio:{number:g}')"
    return ""


def parse_rank_policy(spec: str | int | float) -> RankPolicy:
    """Parse ``8``, ``fixed:8``, ``ratio:0.5``, ``energy:0.9``, ``value:0.05``, each with an
    optional ``,multiple=8`` suffix (a YAML float such as ``0.5`` is a ratio).

    Raises:
        RankSearchError: ``bad rank spec 'X': <rule>; valid forms: ...`` (:data:`VALID_FORMS`).
    """
    if isinstance(spec, bool):
        raise _bad_spec(str(spec), f"rank spec must be a number or 'KIND:VALUE', got {spec!r}")
    if isinstance(spec, (int, float)):
        try:
            return RankPolicy("fixed" if isinstance(spec, int) else "ratio", spec)
        except RankSearchError as exc:
            raise _bad_spec(str(spec), str(exc)) from None
    text = str(spec).strip()
    head, _, tail = text.partition(",")
    multiple = 1
    if tail:
        key, _, val = tail.partition("=")
        if key.strip() != "multiple" or not val.strip().isdigit():
            raise _bad_spec(text, f"rank spec suffix must be ',multiple=N', got {tail!r}")
        multiple = int(val)
    kind, sep, val = head.partition(":")
    if not sep:
        kind, val = "fixed", head
    kind = kind.strip()
    if kind not in POLICY_KINDS:
        raise _bad_spec(text, f"kind must be one of {', '.join(POLICY_KINDS)}")
    try:
        number = float(val)
    except ValueError:
        raise _bad_spec(text, f"{val!r} is not a number{_hint(text)}") from None
    try:
        return RankPolicy(kind, number, multiple)
    except RankSearchError as exc:
        raise _bad_spec(text, f"{exc}{_hint(text) if not sep else ''}") from None
