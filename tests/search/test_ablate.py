"""launch --ablate: each part of the refine searcher can be switched off alone, and the choice
is kept by the sweep record (so resume searches the same way)."""
from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from rank_search.errors import RankSearchError
from rank_search.search import LaunchConfig
from rank_search.search.refine.parents import select_parent
from rank_search.search.refine.pareto import ObjectiveView
from rank_search.search.searchers import SearchContext, refine_settings
from rank_search.search.settings import ABLATIONS


def _context(*ablate: str) -> SearchContext:
    cfg = LaunchConfig(space="x", ablate=ablate)
    return SearchContext(cfg, dense_accuracy=0.9, target=(1.5, 10.0, True), allocations=("sensitivity", "uniform"),
                         methods=("posthoc", "trp"))


def test_each_part_is_switched_off_alone() -> None:
    full = refine_settings(_context())
    assert full.fill is not None and full.share is not None and full.weighted_parents
    assert refine_settings(_context("gap-fill")).fill is None
    assert refine_settings(_context("gap-fill")).share == full.share
    assert refine_settings(_context("method-share")).share is None
    assert refine_settings(_context("method-share")).fill == full.fill
    off = refine_settings(_context("parent-weighting"))
    assert not off.weighted_parents and off.fill == full.fill and off.share == full.share
    both = refine_settings(_context(*ABLATIONS))
    assert both.fill is None and both.share is None and not both.weighted_parents


def test_an_unknown_part_is_refused() -> None:
    with pytest.raises(RankSearchError, match="--ablate must name one of gap-fill, method-share, parent-weighting"):
        LaunchConfig(space="x", ablate=("warm-start",))


def test_unweighted_parents_are_drawn_uniformly_from_the_front() -> None:
    dist = {"x": FloatDistribution(0, 1)}
    # a front of three where one point holds nearly all the hypervolume
    values = [[0.99, 1.0], [0.98, 1.01], [0.5, 3.0]]
    done = [create_trial(values=v, params={"x": 0.5}, distributions=dist, state=TrialState.COMPLETE) for v in values]
    for t, n in zip(done, range(3)):
        t.number = n
    view = ObjectiveView(signs=(1.0, 1.0), log_objectives=(1,))

    def share(weighted: bool) -> float:
        rng = np.random.RandomState(0)
        picks = [select_parent(done, view, rng, explore=0.0, weighted=weighted).number for _ in range(3000)]
        return picks.count(2) / len(picks)

    assert share(True) > 0.45  # half uniform, half by contribution: the big one gets most
    assert share(False) == pytest.approx(1 / 3, abs=0.03)


def test_the_record_keeps_the_ablation(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    cfg = LaunchConfig(space="demo", ablate=("gap-fill", "method-share"), storage=str(tmp_path), name="a")
    write_sweep_record(str(tmp_path / "a"), cfg, {"name": "demo"})
    again = config_from_record(read_sweep_record(str(tmp_path / "a")), path=str(tmp_path / "a"))
    assert again.ablate == ("gap-fill", "method-share")
