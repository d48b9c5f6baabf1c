"""launch --ablate and --refine-extra: the method share can be switched off, gap fills and parent
weighting (off by default) on, each alone; the choice is kept by the sweep record (so resume
searches the same way), and a record older than --refine-extra resumes with both on."""
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
from rank_search.search.settings import EXTRAS


def _context(*ablate: str, extras: tuple[str, ...] = ()) -> SearchContext:
    cfg = LaunchConfig(space="x", ablate=ablate, refine_extras=extras)
    return SearchContext(cfg, dense_accuracy=0.9, target=(1.5, 10.0, True), allocations=("sensitivity", "uniform"),
                         methods=("posthoc", "trp"))


def test_each_part_is_switched_alone() -> None:
    default = refine_settings(_context())
    assert default.fill is None and default.share is not None and not default.weighted_parents
    assert refine_settings(_context("method-share")).share is None
    fill = refine_settings(_context(extras=("gap-fill",)))
    assert fill.fill is not None and fill.share == default.share and not fill.weighted_parents
    weighted = refine_settings(_context(extras=("parent-weighting",)))
    assert weighted.weighted_parents and weighted.fill is None and weighted.share == default.share
    every = refine_settings(_context(extras=EXTRAS))
    assert every.fill == fill.fill and every.weighted_parents and every.share == default.share


def test_an_unknown_part_is_refused() -> None:
    with pytest.raises(RankSearchError, match="--ablate must name one of method-share, got 'warm-start'"):
        LaunchConfig(space="x", ablate=("warm-start",))
    with pytest.raises(RankSearchError, match="--ablate gap-fill: that part is off by default "
                                              r"\(--refine-extra gap-fill switches it on\)"):
        LaunchConfig(space="x", ablate=("gap-fill",))
    with pytest.raises(RankSearchError, match="--refine-extra must name one of gap-fill, parent-weighting, "
                                              "got 'method-share'"):
        LaunchConfig(space="x", refine_extras=("method-share",))


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


def test_the_record_keeps_the_choice(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    cfg = LaunchConfig(space="demo", ablate=("method-share",), refine_extras=("gap-fill",), storage=str(tmp_path),
                       name="a")
    write_sweep_record(str(tmp_path / "a"), cfg, {"name": "demo"})
    again = config_from_record(read_sweep_record(str(tmp_path / "a")), path=str(tmp_path / "a"))
    assert (again.ablate, again.refine_extras) == (("method-share",), ("gap-fill",))
    plain = LaunchConfig(space="demo", storage=str(tmp_path), name="b")
    write_sweep_record(str(tmp_path / "b"), plain, {"name": "demo"})
    assert config_from_record(read_sweep_record(str(tmp_path / "b"))).refine_extras == ()


@pytest.mark.parametrize("ablate, extras", [([], ("gap-fill", "parent-weighting")),
                                            (["gap-fill", "method-share"], ("parent-weighting",))])
def test_a_record_older_than_the_extras_resumes_as_launched(tmp_path, ablate, extras) -> None:
    """Launched when gap fills and parent weighting were on by default: they stay on unless it
    ablated them, and its ablation of them is no longer an ablation."""
    import yaml

    from rank_search import schema
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    write_sweep_record(str(tmp_path / "a"), LaunchConfig(space="demo", storage=str(tmp_path), name="a"),
                       {"name": "demo"})
    path = tmp_path / "a" / schema.SWEEP_FILE
    record = yaml.safe_load(path.read_text())
    del record["launch"]["refine_extras"]
    record["launch"]["ablate"] = ablate
    path.write_text(yaml.safe_dump(record))
    cfg = config_from_record(read_sweep_record(str(tmp_path / "a")))
    assert cfg.refine_extras == extras and cfg.ablate == tuple(p for p in ablate if p == "method-share")
