"""A latency-budgeted sweep (ranks.budget: latency) end to end on a private Ray: the layer
latency table is timed once into the experiment folder (and reused when the step runs again),
trials report their target as ``target_latency_speedup`` and search over the measured speed-up,
and every planned trial's ranks are the allocation of the table at its target. Nothing is
asserted about the times' values (the cores are shared)."""
from __future__ import annotations

import os

import pytest
import yaml

from analysis.loading import load_experiment
from rank_search import schema

pytestmark = pytest.mark.ray

SPACE = {
    "model": "lenet5_wide", "dataset": "synthetic", "epochs": 1, "latency_batch_size": 8,
    "methods": {"factorized": {}, "posthoc": {}},
    "train": {"lr": 0.05},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.05, 1.2], "log": True}, "proxy": "energy",
              "budget": "latency"},
}


@pytest.fixture(scope="module")
def sweep(private_ray, tmp_path_factory):
    from rank_search.search import LaunchConfig, parse_objectives
    from rank_search.search.sweep import launch

    root = tmp_path_factory.mktemp("latbudget")
    space = root / "latbudget.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = launch(LaunchConfig(space=str(space), storage=str(root), name="lb", num_samples=3, seed=1,
                              objectives=parse_objectives("val_accuracy:max,latency_speedup:max")))
    assert out.complete and out.counts == {"TERMINATED": 3}
    return out.path, str(space)


def test_the_table_is_timed_once_into_the_experiment(sweep) -> None:
    from rank_search.allocation import load_layer_latency
    from rank_search.layer_latency import timed_ranks
    from rank_search.models import create_model
    from rank_search.plan import eligible_layers, scheme_for
    from rank_search.search.reference import _prepare_layer_latency, _space_schemes
    from rank_search.search.settings import LaunchConfig
    from search_spaces import get_space

    path, space_file = sweep
    table = load_layer_latency(path)
    assert table.meta["batch_size"] == 8 and table.meta["model_ms"] > 0
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=28)
    schemes = _space_schemes(get_space(space_file))
    assert schemes == ["channel", "tucker2"]  # posthoc's and factorized's defaults
    expected = {(n, r) for n, layer in eligible_layers(model).items()
                for scheme in {scheme_for(layer, s) for s in schemes} for r in timed_ranks(n, layer, scheme)}
    assert {(r["layer"], r["rank"]) for r in table.rows} == expected
    record = yaml.safe_load(open(os.path.join(path, schema.DENSE_RECORD_FILE)))
    assert record["latency_seconds"] > 0
    csv = os.path.join(path, schema.LAYER_LATENCY_FILE)
    stamp = os.stat(csv).st_mtime_ns
    # the step again (a relaunch or resume): the table is read, not timed again
    _prepare_layer_latency(path, get_space(space_file), LaunchConfig(space=space_file), {"num_cpus": 1})
    assert os.stat(csv).st_mtime_ns == stamp


def test_trials_report_a_latency_target_and_run_its_allocation(sweep) -> None:
    from rank_search.allocation import BudgetRanks, load_layer_latency, load_profile
    from rank_search.models import create_model

    path, _ = sweep
    trials = load_experiment(path).trials
    planned = trials[trials["config/method"] != "full"]
    assert len(planned) == 3 and set(planned["config/method"]) == {"factorized", "posthoc"}
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=28)
    table, profile = load_layer_latency(path), load_profile(path)
    for _, row in planned.iterrows():
        assert schema.TARGET_MACS_COMPRESSION not in row or row.isna()[schema.TARGET_MACS_COMPRESSION]
        target = row[f"config/{schema.TARGET_KEY}"]
        assert row[schema.TARGET_LATENCY_SPEEDUP] == pytest.approx(target)
        assert row[schema.LATENCY_SPEEDUP] > 0
        spec = BudgetRanks(target, row[f"config/{schema.ALLOCATION_KEY}"], "energy", profile, path, "latency", table)
        scheme = "channel" if row["config/method"] == "posthoc" else "tucker2"
        plan = spec.resolve(model, scheme=scheme, input_shape=(1, 28, 28))
        record = yaml.safe_load(open(os.path.join(path, str(row["folder"]), str(row["checkpoint"]), schema.RUN_FILE)))
        assert record["run"]["ranks"] == plan.to_dict(), (row["folder"], target)
        assert record["run"].get(schema.KEPT_DENSE_KEY, []) == list(plan.kept_dense)
    assert (planned[schema.MACS_COMPRESSION] > 1.0).any()  # the wide layers are faster factorized
