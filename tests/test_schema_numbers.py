"""``schema.is_number``: the one test of a number every boundary applies (spaces, flags, records, results)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rank_search.schema import is_number


@pytest.mark.parametrize("value, finite, expected", [
    (0, True, True), (-3, True, True), (2.5, True, True), (10 ** 30, True, True), (np.float64(0.5), True, True),
    (math.nan, True, False), (math.inf, True, False), (-math.inf, True, False),
    (math.nan, False, True), (math.inf, False, True),
    (True, True, False), (False, False, False), ("0.5", True, False), ("nan", False, False),
    (None, True, False), ([1], True, False), ({"a": 1}, True, False),
])
def test_is_number(value, finite, expected) -> None:
    assert is_number(value, finite=finite) is expected
