"""A budget-driven trial's config -> RunSpec: the target is binding for every method, TRP's
final conversion included (in a sweep it converts at the searched ranks)."""
from __future__ import annotations

import pytest

from rank_search import schema
from rank_search.allocation import save_profile
from rank_search.data import load_dataset
from rank_search.models import create_model_for
from rank_search.profile import measure_profile
from rank_search.run import train
from rank_search.search.trial import spec_from_config


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory) -> str:
    data = load_dataset("synthetic", seed=0, batch_size=32)
    folder = str(tmp_path_factory.mktemp("profile"))
    save_profile(folder, measure_profile(create_model_for("lenet5", data), data, proxies=("energy",)))
    return folder


@pytest.mark.parametrize("allocation", ["uniform", "sensitivity"])
def test_a_trp_trial_lands_on_its_target(profile_dir, allocation) -> None:
    config = {"method": "trp", "trp.interval": 2, "train.lr": 0.05, schema.TARGET_KEY: 2.5,
              schema.ALLOCATION_KEY: allocation, "space.model": "lenet5", "space.dataset": "synthetic",
              "space.epochs": 1, "space.seed": 0, "space.grouping": "uniform", "space.data_root": None,
              "space.rank_mode": "sensitivity", "space.proxy": "energy", "space.profile": profile_dir}
    spec = spec_from_config(config)
    assert spec.settings["trp.final_ranks"] == ""  # the searched ranks, not value:0.05
    metrics = train(spec).metrics
    assert abs(metrics[schema.MACS_COMPRESSION] / 2.5 - 1) <= 0.05
    # a space that sets the knob keeps it
    assert spec_from_config({**config, "trp.final_ranks": "value:0.05"}).settings["trp.final_ranks"] == "value:0.05"
