"""The layer latency table and the latency-budgeted allocation (ranks.budget: latency): which
ranks are timed, the step rule between them, the round trip on disk, and what the allocation
does with measured times (a layer slower than dense at every rank stays dense; the predicted
speed-up meets its target; ranks sit at the top of a step). Synthetic tables make the times
exact; one real measurement on a tiny model checks its shape, not its values (shared cores)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rank_search.allocation import (BudgetRanks, LayerMacs, load_layer_latency, max_compression, save_layer_latency,
                                    sensitivity_allocation)
from rank_search.cost import stays_dense
from rank_search.errors import RankSearchError
from rank_search.layer_latency import BLOCK, LOW_RANKS, LatencyTable, LayerLatency, measure_layer_latency, timed_ranks
from rank_search.plan import eligible_layers


class Wide(nn.Module):
    """A stem and a head (not eligible) around three 3x3 convs of 64 channels (eligible: a, b, c)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(8, 64, 3, padding=1)
        self.a = nn.Conv2d(64, 64, 3, padding=1)
        self.b = nn.Conv2d(64, 64, 3, padding=1)
        self.c = nn.Conv2d(64, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        for conv in (self.stem, self.a, self.b, self.c):
            x = torch.relu(conv(x))
        return self.head(x.mean((2, 3)))


SHAPE = (8, 8, 8)


@pytest.fixture(scope="module")
def wide() -> nn.Module:
    torch.manual_seed(0)
    return Wide().eval()


def _table(model: nn.Module, time_of, *, model_ms: float, schemes=("channel",)) -> LatencyTable:
    """A table whose factorized time of each (layer, rank) is ``time_of(layer, rank)`` and dense
    time 10 ms per layer."""
    rows = []
    for name, layer in eligible_layers(model).items():
        for scheme in schemes:
            for rank in timed_ranks(name, layer, scheme):
                rows.append({"layer": name, "scheme": scheme, "rank": rank, "latency_ms": time_of(name, rank),
                             "dense_latency_ms": 10.0})
    return LatencyTable(tuple(rows), {"model_ms": model_ms, "batch_size": 4, "threads": 1, "device": "cpu"})


def test_timed_ranks_are_the_low_ranks_the_block_multiples_and_the_last_below_break_even(wide) -> None:
    layer = wide.b
    ranks = timed_ranks("b", layer, "channel")
    assert ranks[:len(LOW_RANKS)] == list(LOW_RANKS)
    assert ranks[len(LOW_RANKS):-1] == list(range(BLOCK, ranks[-1], BLOCK))  # every block multiple below the last
    assert ranks == sorted(ranks) and all(not stays_dense(layer, "channel", r) for r in ranks)
    assert stays_dense(layer, "channel", ranks[-1] + 1)  # the last one is the largest below break-even
    tucker = timed_ranks("b", layer, "tucker2")
    assert all(isinstance(r, tuple) and len(r) == 2 for r in tucker) and tucker[0] == (1, 1)


def test_a_rank_between_timed_ones_costs_the_next_timed_one_up_and_above_all_the_dense_time(wide) -> None:
    table = _table(wide, lambda name, rank: float(rank), model_ms=40.0)
    cost = LayerLatency(wide, table)
    assert cost.dense == {"a": 10.0, "b": 10.0, "c": 10.0} and cost.total == 40.0
    assert cost.factorized("b", "channel", 16) == pytest.approx(16.0)
    assert cost.factorized("b", "channel", 9) == pytest.approx(16.0)  # charged as 16 (a step, never less)
    assert cost.factorized("b", "channel", 3) == pytest.approx(4.0)
    last = timed_ranks("b", wide.b, "channel")[-1]
    assert cost.factorized("b", "channel", last + 1) == cost.dense["b"]
    # a larger timed rank measured faster (noise, or a kernel's sweet spot) stands in for smaller ones
    bumpy = LayerLatency(wide, _table(wide, lambda name, rank: 9.0 if rank == 16 else float(rank) / 8, model_ms=40.0))
    assert bumpy.factorized("b", "channel", 9) == pytest.approx(4.0)  # rank 32's 4 ms, not rank 16's 9


def test_the_table_survives_its_files_with_tuple_ranks(wide, tmp_path) -> None:
    table = _table(wide, lambda name, rank: 1.0 + sum(rank) / 100, model_ms=33.0, schemes=("tucker2",))
    save_layer_latency(str(tmp_path), table)
    back = load_layer_latency(str(tmp_path))
    assert back.meta["model_ms"] == 33.0 and len(back.rows) == len(table.rows)
    for a, b in zip(back.rows, table.rows):
        assert (a["layer"], a["scheme"], a["rank"]) == (b["layer"], b["scheme"], b["rank"])
        assert a["latency_ms"] == pytest.approx(b["latency_ms"]) and a["dense_latency_ms"] == b["dense_latency_ms"]
    with pytest.raises(RankSearchError, match="no layer latency table"):
        load_layer_latency(str(tmp_path / "missing"))


def test_a_layer_slower_than_dense_at_every_rank_stays_dense_and_the_target_is_met(wide) -> None:
    # layer a is slower factorized at every rank than dense (12 vs 10 ms); b and c take rank / 4 ms
    table = _table(wide, lambda name, rank: 12.0 if name == "a" else rank / 4.0, model_ms=40.0)
    cost = LayerLatency(wide, table)
    for target in (1.2, 1.5, 2.0):
        plan = BudgetRanks(target, "uniform", budget="latency", latency=table).resolve(wide, scheme="channel",
                                                                                        input_shape=SHAPE)
        assert "a" not in dict(plan.items()) and "a" in plan.kept_dense  # listed in the run record
        fixed = cost.total - sum(cost.dense.values())
        chosen = dict(plan.items())
        predicted = cost.total / (fixed + sum(cost.factorized(n, chosen[n].scheme, chosen[n].rank) if n in chosen
                                              else cost.dense[n] for n in cost.layers))
        assert predicted >= target * (1 - 0.05), (target, predicted)
    reach = max_compression(wide, SHAPE, scheme="channel", latency=table)
    # every layer at its fastest: the fixed part (40 - 3 x 10 dense), a dense (10), b and c at rank 1
    assert reach == pytest.approx(40.0 / ((40.0 - 30.0) + 10.0 + 2 * 0.25), rel=1e-6)


def test_the_sensitivity_allocation_takes_the_top_of_each_step(wide) -> None:
    from rank_search.allocation import Profile

    # time grows in steps of BLOCK channels; accuracy cost falls with every rank: within a step a
    # larger rank is free, so every rank the allocation picks is a timed one
    table = _table(wide, lambda name, rank: 2.0 * math.ceil(rank / BLOCK), model_ms=40.0)
    rows = []
    macs = LayerMacs(wide, SHAPE)
    for name in macs.layers:
        for ratio in (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0):
            rows.append({"layer": name, "scheme": "channel", "ratio": ratio, "val_loss": 1.0 + (1 - ratio),
                         "energy": ratio})
    profile = Profile(tuple(rows), {"dense_val_loss": 1.0, "input_shape": list(SHAPE)})
    cost = LayerLatency(wide, table)
    plan = sensitivity_allocation(cost, 1.5, profile, scheme="channel", proxy="bn")
    timed = {n: timed_ranks(n, layer, "channel") for n, layer in eligible_layers(wide).items()}
    assert len(plan) >= 1
    for name, lp in plan.items():
        assert lp.rank in timed[name], (name, lp.rank)


def test_budget_ranks_need_a_table_under_a_latency_budget_and_a_known_budget() -> None:
    with pytest.raises(RankSearchError, match="latency budget needs the layer latency table"):
        BudgetRanks(2.0, "uniform", budget="latency")
    with pytest.raises(RankSearchError, match="budget must be one of macs, latency"):
        BudgetRanks(2.0, "uniform", budget="flops")


def test_a_table_of_another_model_is_refused(wide) -> None:
    table = LatencyTable(({"layer": "other", "scheme": "channel", "rank": 1, "latency_ms": 1.0,
                           "dense_latency_ms": 2.0},), {"model_ms": 10.0})
    with pytest.raises(RankSearchError, match="no rows for layer 'a'"):
        LayerLatency(wide, table)


def test_measuring_times_every_layer_and_rank_and_leaves_the_model_and_threads_alone(wide) -> None:
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    threads = torch.get_num_threads()
    table = measure_layer_latency(wide, SHAPE, ("channel",), batch_size=2, threads=1, max_seconds=0.001)
    assert torch.get_num_threads() == threads
    assert all(torch.equal(before[k], v) for k, v in wide.state_dict().items())
    expected = [(n, r) for n, layer in eligible_layers(wide).items() for r in timed_ranks(n, layer, "channel")]
    assert [(r["layer"], r["rank"]) for r in table.rows] == expected
    assert all(r["latency_ms"] > 0 and r["dense_latency_ms"] > 0 for r in table.rows)
    assert table.meta["model_ms"] > 0 and table.meta["batch_size"] == 2 and table.meta["threads"] == 1
