"""Distillation and data-aware init in a search space (issue 30): a space's ``distill`` section
is sampled, carried by the trial codec and checked before a sweep; a sweep whose trials may
distill keeps a dense reference, which teaches the trials that start from scratch."""
from __future__ import annotations

import optuna
import pytest

from rank_search.errors import RankSearchError
from rank_search.search.check import check_space
from rank_search.search.reference import needs_dense
from rank_search.search.trial import run_spec
from search_spaces import SpaceSampler, decode_trial, reference_constants, space_from_mapping

SPACE = {"model": "lenet5", "dataset": "synthetic", "epochs": 2,
         "methods": {"posthoc": {"init": "scratch", "init_decomposition": ["weight", "data"]}, "factorized": {}},
         "ranks": {"grouping": "uniform", "ratio": 0.5}}


def test_a_distill_section_is_sampled_decoded_and_teaches_from_the_reference() -> None:
    space = space_from_mapping({**SPACE, "distill": {"weight": [0.0, 0.5], "temperature": {"float": [2.0, 8.0]}}})
    assert needs_dense(space) and check_space(space) == ["all"]
    assert space_from_mapping(space.to_plain()) == space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampler = SpaceSampler(space, ["all"], reference_constants(dense="/exp/dense.pt", profile=None))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        fixed = sampler(trial)
        config = {**trial.params, **fixed}
        study.tell(trial, 0.0)
        decoded = decode_trial(config)
        assert decoded.to_config() == config and set(decoded.distill) == {"weight", "temperature"}
        spec = run_spec(decoded)
        weight = decoded.distill["weight"]
        assert spec.distill_settings == dict(decoded.distill)
        assert spec.teacher == ("/exp/dense.pt" if weight > 0 else None) and spec.init is None
        if decoded.method == "posthoc":
            assert spec.knobs["init_decomposition"] == decoded.knobs["init_decomposition"]
        seen.add((decoded.method, weight))
    assert {w for _, w in seen} == {0.0, 0.5}


def test_a_space_without_distillation_needs_no_reference_for_it() -> None:
    assert not needs_dense(space_from_mapping(SPACE))
    assert not needs_dense(space_from_mapping({**SPACE, "distill": {"weight": 0.0}}))


@pytest.mark.parametrize("distill, match", [
    ({"weight": {"float": [0.0, 1.5]}}, r"distill.weight must be a number in \[0, 1\], got 1.5"),
    ({"temperature": [4.0, 0.0]}, r"distill.temperature must be a finite number > 0, got 0.0"),
    ({"alpha": 0.5}, r"unknown setting 'distill.alpha'; valid settings: distill.weight, distill.temperature"),
])
def test_bad_distill_values_fail_the_space_check_in_one_line(distill: dict, match: str) -> None:
    with pytest.raises(RankSearchError, match=match) as info:
        check_space(space_from_mapping({**SPACE, "distill": distill}))
    assert "\n" not in str(info.value)


def test_a_bad_init_decomposition_fails_the_space_check() -> None:
    space = space_from_mapping({**SPACE, "methods": {"posthoc": {"init_decomposition": ["weight", "pca"]}}})
    with pytest.raises(RankSearchError, match="posthoc.init_decomposition must be one of weight, data, data_sequential, got 'pca'"):
        check_space(space)
