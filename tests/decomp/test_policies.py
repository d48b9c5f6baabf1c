"""Rank policies (parse + choose) and the batched truncated SVD."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rank_search.decomp import (
    POLICY_KINDS,
    RankPolicy,
    batched_low_rank,
    batched_truncated_svd,
    parse_rank_policy,
    truncated_svd,
)
from rank_search.decomp import svd as svd_module
from rank_search.errors import RankSearchError

# ---- parsing ----


@pytest.mark.parametrize("spec,expected", [
    ("8", RankPolicy("fixed", 8)),
    (" 8 ", RankPolicy("fixed", 8)),
    ("fixed:8", RankPolicy("fixed", 8)),
    ("ratio:0.5", RankPolicy("ratio", 0.5)),
    ("ratio:1", RankPolicy("ratio", 1.0)),
    ("energy:0.9", RankPolicy("energy", 0.9)),
    ("value:0.05", RankPolicy("value", 0.05)),
    ("value:0", RankPolicy("value", 0.0)),
    ("ratio:0.5,multiple=8", RankPolicy("ratio", 0.5, 8)),
    ("energy:0.9, multiple=4", RankPolicy("energy", 0.9, 4)),
    ("16,multiple=8", RankPolicy("fixed", 16, 8)),
    (8, RankPolicy("fixed", 8)),
    (0.25, RankPolicy("ratio", 0.25)),
])
def test_parse_forms(spec, expected: RankPolicy) -> None:
    policy = parse_rank_policy(spec)
    assert policy == expected
    assert policy.kind in POLICY_KINDS
    assert parse_rank_policy(str(policy)) == policy  # str() is a valid spec of the same policy


@pytest.mark.parametrize("spec,match", [
    ("ratio:abc", r"bad rank spec 'ratio:abc': 'abc' is not a number"),
    ("foo:1", r"bad rank spec 'foo:1': kind must be one of fixed, ratio, energy, value"),
    ("abc", r"bad rank spec 'abc': 'abc' is not a number"),
    ("", r"bad rank spec '': '' is not a number"),
    ("ratio:0", r"rank ratio must be in \(0, 1\], got 0"),
    ("ratio:1.5", r"rank ratio must be in \(0, 1\], got 1.5"),
    ("ratio:-0.5", r"rank ratio must be in \(0, 1\]"),
    ("energy:0", r"energy threshold must be in \(0, 1\], got 0"),
    ("energy:1.01", r"energy threshold must be in \(0, 1\]"),
    ("value:-1", r"value threshold must be >= 0, got -1"),
    ("0", r"fixed rank must be an integer >= 1, got 0"),
    ("fixed:2.5", r"fixed rank must be an integer >= 1, got 2.5"),
    ("-3", r"fixed rank must be an integer >= 1"),
    ("fixed:inf", r"must be a finite number, got inf"),
    ("inf", r"must be a finite number, got inf"),
    ("fixed:nan", r"must be a finite number, got nan"),
    ("value:nan", r"must be a finite number, got nan"),
    ("ratio:0.5,multiple=0", r"rank multiple must be >= 1, got 0"),
    ("ratio:0.5,multiple=x", r"rank spec suffix must be ',multiple=N', got 'multiple=x'"),
    ("ratio:0.5,multiple=-8", r"rank spec suffix must be ',multiple=N'"),
    ("ratio:0.5,round=8", r"rank spec suffix must be ',multiple=N', got 'round=8'"),
    (True, r"rank spec must be a number or 'KIND:VALUE', got True"),
    (0, r"fixed rank must be an integer >= 1, got 0"),
    (1.5, r"rank ratio must be in \(0, 1\], got 1.5"),
])
def test_parse_errors(spec, match: str) -> None:
    with pytest.raises(RankSearchError, match=match):
        parse_rank_policy(spec)


def test_policy_constructor_validates() -> None:
    with pytest.raises(RankSearchError, match=r"rank policy must be one of fixed, ratio, energy, value, got 'svd'"):
        RankPolicy("svd", 1)
    with pytest.raises(RankSearchError, match=r"rank multiple must be >= 1, got 0"):
        RankPolicy("fixed", 4, 0)


def test_spectrum_policies_need_singular_values() -> None:
    assert parse_rank_policy("energy:0.9").needs_spectrum
    assert parse_rank_policy("value:0.1").needs_spectrum
    assert not parse_rank_policy("ratio:0.5").needs_spectrum
    assert not parse_rank_policy("4").needs_spectrum
    with pytest.raises(ValueError, match="rank policy 'energy' needs the layer's singular values"):
        parse_rank_policy("energy:0.9").choose(10)


# ---- choose(), against brute force ----

spectra = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=100.0)), min_size=1, max_size=24
).map(lambda v: sorted(v, reverse=True))
multiples = st.sampled_from([1, 1, 2, 4, 8])


def _round_up(r: int, multiple: int, max_rank: int) -> int:
    r = max(1, r)
    while r % multiple:
        r += 1
    return min(r, max_rank)


def _brute_energy(s: list[float], e: Fraction) -> int:
    sq = [Fraction(v) ** 2 for v in s]
    total = sum(sq)
    if total == 0:
        return len(s)
    return next(r for r in range(1, len(s) + 1) if sum(sq[:r]) / total >= e)


@settings(max_examples=200, deadline=None)
@given(s=spectra, e_milli=st.integers(min_value=1, max_value=1000), multiple=multiples)
def test_energy_is_smallest_rank_reaching_the_threshold(s, e_milli: int, multiple: int) -> None:
    e = Fraction(e_milli, 1000)
    sq = [Fraction(v) ** 2 for v in s]
    total = sum(sq)
    # Skip thresholds within float noise of a cumulative fraction (the rule is ambiguous there).
    assume(total == 0 or all(abs(sum(sq[:r]) / total - e) > Fraction(1, 10**9) for r in range(1, len(s) + 1)))
    chosen = RankPolicy("energy", e_milli / 1000, multiple).choose(len(s), torch.tensor(s, dtype=torch.float64))
    assert chosen == _round_up(_brute_energy(s, e), multiple, len(s))


@settings(max_examples=200, deadline=None)
@given(max_rank=st.integers(min_value=1, max_value=600), ratio_milli=st.integers(min_value=1, max_value=1000),
       multiple=multiples)
def test_ratio_is_ceil_of_the_fraction(max_rank: int, ratio_milli: int, multiple: int) -> None:
    exact = -(-ratio_milli * max_rank // 1000)  # integer ceil(ratio * max_rank)
    chosen = RankPolicy("ratio", ratio_milli / 1000, multiple).choose(max_rank)
    assert chosen == _round_up(exact, multiple, max_rank)
    assert 1 <= chosen <= max_rank


@settings(max_examples=200, deadline=None)
@given(s=spectra, tau=st.floats(min_value=0.0, max_value=120.0, allow_nan=False), multiple=multiples)
def test_value_counts_singular_values_above_threshold(s, tau: float, multiple: int) -> None:
    chosen = RankPolicy("value", tau, multiple).choose(len(s), s)
    assert chosen == _round_up(sum(1 for v in s if v >= tau), multiple, len(s))


@settings(max_examples=100, deadline=None)
@given(rank=st.integers(min_value=1, max_value=64), max_rank=st.integers(min_value=1, max_value=64),
       multiple=multiples)
def test_fixed_is_capped_at_max_rank(rank: int, max_rank: int, multiple: int) -> None:
    assert RankPolicy("fixed", rank, multiple).choose(max_rank) == _round_up(rank, multiple, max_rank)


@pytest.mark.parametrize("policy,max_rank,s,expected", [
    ("energy:0.5", 4, [3.0, 1.0, 1.0, 1.0], 1),  # 9/12 >= 0.5
    ("energy:0.9", 4, [3.0, 1.0, 1.0, 1.0], 3),  # 11/12 >= 0.9 > 10/12
    ("energy:1", 4, [3.0, 1.0, 0.0, 0.0], 2),
    ("energy:0.9", 3, [0.0, 0.0, 0.0], 3),  # no energy at all: keep everything
    ("value:0.5", 4, [3.0, 1.0, 0.5, 0.4], 3),  # >= counts the tie
    ("value:10", 4, [3.0, 1.0, 0.5, 0.4], 1),  # at least 1
    ("ratio:0.3,multiple=8", 20, None, 8),
    ("ratio:0.5,multiple=8", 20, None, 16),
    ("ratio:0.9,multiple=8", 20, None, 20),  # 24 capped at 20
    ("ratio:0.3", 10, None, 3),  # 0.3 * 10 = 3.0000000000000004 in floats: still 3
    ("ratio:0.01", 10, None, 1),
])
def test_choose_examples(policy: str, max_rank: int, s, expected: int) -> None:
    assert parse_rank_policy(policy).choose(max_rank, s) == expected


# ---- batched truncated SVD ----

def _best_rank_r(m: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


def test_batched_svd_matches_per_matrix_svd() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes_ranks = [((6, 4), 2), ((5, 7), 3), ((6, 4), 4), ((10, 10), 1), ((5, 7), 5), ((6, 4), 1), ((1, 3), 1)]
    mats = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape, _ in shapes_ranks]
    ranks = [r for _, r in shapes_ranks]
    out = batched_truncated_svd(mats, ranks)
    assert len(out) == len(mats)
    for m, r, (u, s, vh) in zip(mats, ranks, out):
        assert u.shape == (m.shape[0], r) and s.shape == (r,) and vh.shape == (r, m.shape[1])
        torch.testing.assert_close(s, torch.linalg.svdvals(m)[:r], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(u.t() @ u, torch.eye(r, dtype=m.dtype), atol=1e-10, rtol=0)
        torch.testing.assert_close(vh @ vh.t(), torch.eye(r, dtype=m.dtype), atol=1e-10, rtol=0)
        torch.testing.assert_close((u * s) @ vh, _best_rank_r(m, r), atol=1e-10, rtol=1e-10)
    for m, r, approx in zip(mats, ranks, batched_low_rank(mats, ranks)):
        torch.testing.assert_close(approx, _best_rank_r(m, r), atol=1e-10, rtol=1e-10)


def test_batched_svd_checks_lengths() -> None:
    with pytest.raises(ValueError, match="got 2 matrices but 1 ranks"):
        batched_truncated_svd([torch.eye(3), torch.eye(3)], [1])
    with pytest.raises(ValueError, match=r"rank must be in \[1, 3\] for a 3x4 matrix, got 4"):
        truncated_svd(torch.ones(3, 4), 4)


def test_randomized_path_is_accurate_on_exact_low_rank(monkeypatch) -> None:
    calls = []
    real = torch.svd_lowrank

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "svd_lowrank", spy)
    torch.manual_seed(0)
    m, n, true_rank = 160, 120, 5
    low = torch.randn(m, true_rank) @ torch.randn(true_rank, n)
    low2 = torch.randn(m, true_rank) @ torch.randn(true_rank, n)
    assert true_rank + svd_module.OVERSAMPLE <= svd_module.RANDOMIZED_MAX_FRACTION * min(m, n)
    out = batched_truncated_svd([low, low2, torch.randn(8, 6)], [true_rank, 3, 2])
    assert calls == [torch.Size([2, m, n])]  # the big pair together, randomized; the small one exact
    for mat, r, (u, s, vh) in zip([low, low2], [true_rank, 3], out):
        exact = torch.linalg.svdvals(mat.double())[:r].float()
        torch.testing.assert_close(s, exact, rtol=1e-4, atol=1e-3)
    u, s, vh = out[0]
    recon = (u * s) @ vh
    assert float((recon - low).norm() / low.norm()) < 1e-5


def test_exact_path_on_request_is_the_linalg_truncation_and_draws_nothing(monkeypatch) -> None:
    monkeypatch.setattr(torch, "svd_lowrank", lambda *a, **kw: pytest.fail("randomized SVD called"))
    gen = torch.Generator().manual_seed(0)
    mats = [torch.randn(160, 120, generator=gen), torch.randn(160, 120, generator=gen)]
    rng = torch.get_rng_state()
    out = batched_truncated_svd(mats, [5, 3], randomized=False)  # the default would go randomized here
    assert torch.equal(torch.get_rng_state(), rng)
    for m, r, (u, s, vh), approx in zip(mats, [5, 3], out, batched_low_rank(mats, [5, 3], randomized=False)):
        torch.testing.assert_close((u * s) @ vh, _best_rank_r(m, r), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(approx, _best_rank_r(m, r), atol=1e-5, rtol=1e-5)
    double = truncated_svd(mats[0].double(), 4, randomized=False)
    assert all(t.dtype == torch.float64 for t in double)  # float64 stays float64


def test_tucker2_leaves_tensorlys_global_backend_alone() -> None:
    import tensorly as tl

    from rank_search.decomp import tucker2, tucker2_reconstruct

    tl.set_backend("numpy")  # another tensorly user of the process
    try:
        w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        core, u_out, u_in = tucker2(w, (6, 5))  # full ranks: exact
        assert isinstance(core, torch.Tensor) and tl.get_backend() == "numpy"
        torch.testing.assert_close(tucker2_reconstruct(core, u_out, u_in), w, atol=1e-10, rtol=1e-10)
    finally:
        tl.set_backend("numpy")
