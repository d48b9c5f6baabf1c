"""The searcher registry: one builder per ``--searcher`` name, each taking a ``SearchContext``."""
from __future__ import annotations

import pytest

from rank_search.errors import RankSearchError
from rank_search.search import LaunchConfig
from rank_search.search.searchers import SAMPLERS, SearchContext, create_sampler, nsga2_population
from rank_search.search.settings import SEARCHERS


def test_every_searcher_the_flag_accepts_has_a_builder_and_no_other():
    assert sorted(SEARCHERS) == SAMPLERS.names()


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_each_builder_makes_a_seeded_optuna_sampler(name):
    from optuna.samplers import BaseSampler

    cfg = LaunchConfig(space="x", searcher=name, seed=3, num_samples=40, refine_extras=("gap-fill",))
    sampler = create_sampler(SearchContext(cfg, dense_accuracy=0.9, target=(2.0, 20.0, True),
                                           allocations=("sensitivity", "uniform"), methods=("a", "b")))
    assert isinstance(sampler, BaseSampler)
    if name == "nsga2":
        assert sampler.population_size == nsga2_population(40) == 10
    if name == "refine":
        assert sampler.settings.share.choices == ("a", "b") and sampler.settings.fill.fixed


def test_an_unknown_or_duplicate_searcher_is_refused():
    with pytest.raises(RankSearchError, match="unknown searcher 'grid'; valid choices: nsga2, oneshot, random, refine, tpe"):
        SAMPLERS.get("grid")
    with pytest.raises(ValueError, match="searcher 'tpe' is already registered"):
        SAMPLERS.add("tpe", lambda context: None)
