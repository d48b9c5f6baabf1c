"""The layer sensitivity profile: ratio 1.0 reproduces the dense reference for every layer and
proxy, costs grow as layers are compressed, the global RNG is untouched."""
from __future__ import annotations

import pytest
import torch

from rank_search.data import load_dataset
from rank_search.models import create_model_for
from rank_search.plan import eligible_layers
from rank_search.profile import measure_profile, merge_profiles, profile_points, profile_tasks


@pytest.fixture(scope="module")
def bn_setup():
    data = load_dataset("synthetic", seed=0, batch_size=32)
    torch.manual_seed(0)
    model = create_model_for("resnet20", data)  # BatchNorm everywhere
    return model, data


def test_ratio_one_reproduces_the_dense_reference(bn_setup) -> None:
    model, data = bn_setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    profile = measure_profile(model, data, ratios=(0.1, 1.0), proxies=("bn", "finetune", "energy"),
                              bn_images=128, finetune_steps=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # never modified
    layers = list(eligible_layers(model))
    full = [r for r in profile.rows if r["ratio"] == 1.0]
    assert [r["layer"] for r in full] == layers
    meta = profile.meta
    for row in full:
        assert row["val_accuracy"] == meta["dense_val_accuracy"], row["layer"]
        assert row["val_loss"] == pytest.approx(meta["dense_val_loss"], abs=1e-4)
        assert row["ft_val_accuracy"] == meta["dense_ft_val_accuracy"], row["layer"]
        assert row["ft_val_loss"] == pytest.approx(meta["dense_ft_val_loss"], abs=1e-3)
        assert row["energy"] == pytest.approx(1.0) and row["opnorm_error"] == 0.0
    low = {r["layer"]: r for r in profile.rows if r["ratio"] == 0.1}
    assert all(low[n]["energy"] < 1.0 and low[n]["macs"] < meta["dense_macs"] for n in layers)
    assert meta["input_shape"] == [1, 8, 8]


def test_a_profile_measured_in_parts_merges_into_the_whole_one(bn_setup) -> None:
    """Each point starts from the same RNG state and data order, so parts measured apart (the
    sweep's parallel profile tasks) give exactly the rows of the whole profile."""
    model, data = bn_setup
    kw = dict(ratios=(0.1, 1.0), proxies=("bn", "finetune", "energy"), bn_images=64, finetune_steps=2)
    whole = measure_profile(model, data, **kw)
    order = profile_tasks(model)
    assert [t[0] for t in order] == list(eligible_layers(model)) and {t[1] for t in order} == {"channel"}
    parts = [measure_profile(model, data, tasks=order[k::3], **kw) for k in (2, 0, 1)]  # any order
    assert all(len(p.rows) < len(whole.rows) for p in parts)
    merged = merge_profiles(parts, order, seconds=1.5)
    assert merged.rows == whole.rows
    assert merged.meta["seconds"] == 1.5 and merged.meta["dense_val_loss"] == whole.meta["dense_val_loss"]
    assert merged.meta["task_seconds"] == pytest.approx(sum(p.meta["seconds"] for p in parts))
    # dealt by point (the sweep's split): every part measures as many points, the merge is the same
    points = profile_points(order, kw["ratios"])
    assert len(points) == 2 * len(order) and [p[2] for p in points[:len(order)]] == [0.1] * len(order)
    by_point = [measure_profile(model, data, tasks=points[k::2], **kw) for k in (1, 0)]
    assert merge_profiles(by_point, order, seconds=1.0).rows == whole.rows
    with pytest.raises(ValueError, match="no rows for layer"):
        merge_profiles(parts[:2], order, seconds=1.0)
    with pytest.raises(ValueError, match="no eligible layer 'nope'"):
        measure_profile(model, data, tasks=[("nope", "channel")], **kw)


def test_energy_profile_needs_no_evaluation(lenet5, synthetic_data) -> None:
    profile = measure_profile(lenet5, synthetic_data, ratios=(0.25, 1.0), proxies=("energy",))
    assert "dense_val_loss" not in profile.meta
    assert all(r.get("val_loss") is None for r in profile.rows)
    assert {r["layer"] for r in profile.rows} == set(eligible_layers(lenet5))


def test_a_sweep_splits_its_profile_over_the_trials_it_could_run_at_once() -> None:
    from rank_search.search import LaunchConfig
    from rank_search.search.reference import profile_parts

    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert profile_parts(LaunchConfig(space="x", max_concurrent=3), 19, cluster) == 3
    assert profile_parts(LaunchConfig(space="x", max_concurrent=40), 19, cluster) == 19  # one per point at most
    assert profile_parts(LaunchConfig(space="x", cpus_per_trial=4.0), 19, cluster) == 4
    assert profile_parts(LaunchConfig(space="x", gpus_per_trial=1.0), 19, cluster) == 2  # GPUs bound it
    assert profile_parts(LaunchConfig(space="x", cpus_per_trial=32.0), 19, cluster) == 1


def test_a_channels_last_profile_measures_the_same_rows_up_to_rounding(bn_setup) -> None:
    """``channels_last`` (a space training with ``train.channels_last``) changes the layout the
    points are measured in, not what they measure; the dense model is not converted."""
    model, data = bn_setup
    kw = dict(ratios=(0.1, 0.45, 1.0), proxies=("bn", "energy"), bn_images=64)
    tasks = profile_tasks(model)[:3]
    plain = measure_profile(model, data, tasks=tasks, **kw)
    fast = measure_profile(model, data, tasks=tasks, channels_last=True, **kw)
    assert fast.meta["channels_last"] is True and plain.meta["channels_last"] is False
    assert not any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                   for p in model.parameters())
    assert len(fast.rows) == len(plain.rows) == 9
    for a, b in zip(plain.rows, fast.rows):
        assert (a["layer"], a["scheme"], a["rank"], a["macs"]) == (b["layer"], b["scheme"], b["rank"], b["macs"])
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert abs(b["val_accuracy"] - a["val_accuracy"]) <= 0.01  # at most a rounding-flipped image or two


@pytest.mark.parametrize("name,schemes", [("resnet20", ("channel", "tucker2")), ("lenet5", ("channel", "spatial"))])
def test_reusing_the_dense_prefix_gives_the_rows_of_the_whole_model(name, schemes) -> None:
    """Each point runs only the part of the model after its layer, the rest cached once per layer:
    exactly the numbers the whole compressed model gives (skip connections included)."""
    data = load_dataset("synthetic", seed=0, batch_size=32)
    torch.manual_seed(0)
    model = create_model_for(name, data)
    kw = dict(schemes=schemes, ratios=(0.1, 0.45, 1.0), proxies=("bn", "energy"), bn_images=64)
    tasks = profile_tasks(model, schemes)
    whole = measure_profile(model, data, tasks=tasks[::2], reuse_prefix=False, **kw)
    reused = measure_profile(model, data, tasks=tasks[::2], **kw)
    assert len(whole.rows) == len(reused.rows) > 0
    for a, b in zip(whole.rows, reused.rows):
        assert {k: a[k] for k in a if k != "val_loss"} == {k: b[k] for k in b if k != "val_loss"}, a["layer"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5, abs=1e-6)


def test_layers_cached_in_one_pass_or_one_by_one_give_the_same_rows(monkeypatch) -> None:
    """The frontier values of consecutive layers come from one pass of the model while they fit in
    ``CACHE_BYTES``; with room for one layer at a time the rows are the same, bit for bit."""
    from rank_search import profile, suffix

    data = load_dataset("synthetic", seed=0, batch_size=32)
    torch.manual_seed(0)
    model = create_model_for("resnet20", data)
    kw = dict(schemes=("channel",), ratios=(0.1, 0.45, 1.0), proxies=("bn", "energy"), bn_images=64)
    passes = []
    real = suffix.cache_frontiers
    monkeypatch.setattr(profile, "cache_frontiers", lambda group, batches: passes.append(len(group)) or real(group, batches))
    grouped = measure_profile(model, data, **kw)
    assert passes[0] == passes[1] > 1, "the layers' values came from one pass each for train and val"
    monkeypatch.setattr(profile, "CACHE_BYTES", 1)
    passes.clear()
    single = measure_profile(model, data, **kw)
    assert set(passes) == {1}
    assert grouped.rows == single.rows


def test_models_the_prefix_cannot_be_cut_from_are_measured_whole() -> None:
    from torch import nn

    from rank_search.suffix import Suffix, trace

    with_dropout = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(2))
    assert trace(with_dropout) is None

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    assert Suffix.of(trace(Twice()), "conv") is None
    gm = trace(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)))
    part = Suffix.of(gm, "2")
    assert part is not None and [n.target for n in part.frontier] == ["1"] and part.norms == []
