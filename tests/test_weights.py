"""The one dense-weights loader (`train --init`, the search's dense reference): a bare state_dict
or one under 'state_dict'/'model' loads in place; every mismatch is one line naming the file."""
from __future__ import annotations

import os

import pytest
import torch

from rank_search.errors import RankSearchError
from rank_search.models import create_model
from rank_search.weights import load_weights, save_weights


def _lenet(seed: int):
    torch.manual_seed(seed)
    return create_model("lenet5", in_channels=1, num_classes=10, image_size=8)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_save_then_load_restores_every_tensor(tmp_path) -> None:
    path = str(tmp_path / "w.pt")
    source, target = _lenet(0), _lenet(1)
    assert not _same(source, target)
    save_weights(source, path)
    assert load_weights(target, path) is target and _same(source, target)
    assert sorted(os.listdir(tmp_path)) == ["w.pt"]  # no temporary file left
    assert set(torch.load(path, weights_only=True)) == set(source.state_dict())


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_a_wrapped_state_dict_loads(tmp_path, wrap: str) -> None:
    source, target = _lenet(0), _lenet(1)
    torch.save({wrap: source.state_dict(), "epoch": 3, "model_name": "lenet5"}, tmp_path / "w.pt")
    load_weights(target, str(tmp_path / "w.pt"))
    assert _same(source, target)


def test_a_compact_checkpoint_of_a_full_run_loads(tmp_path) -> None:
    # compact.pt holds 'model' (a name) and 'state_dict': the dense weights of a `full` run
    from rank_search.checkpoint import save_compact
    from rank_search.plan import RankPlan

    source, target = _lenet(0), _lenet(1)
    save_compact(str(tmp_path / "compact.pt"), source, plan=RankPlan(), model="lenet5", dataset="synthetic",
                 method="full", in_channels=1, num_classes=10, image_size=8)
    load_weights(target, str(tmp_path / "compact.pt"))
    assert _same(source, target)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_imagenet_weight_files_load(tmp_path, name: str) -> None:
    """torchvision's ImageNet files are bare state_dicts of its models: the same file layout."""
    import torchvision

    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)
    torch.save(reference.state_dict(), tmp_path / "imagenet.pth")
    model = create_model(name, in_channels=3, num_classes=1000, image_size=224)
    load_weights(model, str(tmp_path / "imagenet.pth"))
    assert _same(reference, model)
    # a 10-class head does not fit the 1000-class file: the error names the classifier
    small = create_model(name, in_channels=3, num_classes=10, image_size=32)
    with pytest.raises(RankSearchError, match=r"2 of another shape: fc\.weight \(1000, \d+\) vs model \(10, \d+\)"):
        load_weights(small, str(tmp_path / "imagenet.pth"))


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path) -> None:
    state = _lenet(0).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["features.0.bias"]
    state["classifier.5.weight"] = torch.zeros(3, 84)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(RankSearchError) as info:
        load_weights(_lenet(1), str(tmp_path / "w.pt"), what="dense_reference")
    message = str(info.value)
    assert "\n" not in message and message.startswith("dense_reference '")
    assert "1 missing: features.0.bias" in message and "1 unexpected: extra.weight" in message
    assert "classifier.5.weight (3, 84) vs model (10, 84)" in message


def test_only_the_first_keys_are_named(tmp_path) -> None:
    torch.save({f"k{i}": torch.zeros(1) for i in range(7)}, tmp_path / "w.pt")
    with pytest.raises(RankSearchError, match=r"7 unexpected: k0, k1, k2 \(\+4 more\)"):
        load_weights(_lenet(0), str(tmp_path / "w.pt"))


def test_unreadable_files_are_one_line_errors(tmp_path) -> None:
    model = _lenet(0)
    with pytest.raises(RankSearchError, match=r"--init '.*nope\.pt' does not exist"):
        load_weights(model, str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(RankSearchError, match=r"cannot be read safely"):
        load_weights(model, str(tmp_path / "junk.pt"))
    torch.save({"weights": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(RankSearchError, match=r"holds no state_dict"):
        load_weights(model, str(tmp_path / "list.pt"))


def test_unsafe_pickles_are_refused(tmp_path) -> None:
    torch.save({"state_dict": _lenet(0).state_dict(), "obj": RankSearchError("x")}, tmp_path / "w.pt")
    with pytest.raises(RankSearchError, match=r"cannot be read safely \(torch.load weights_only=True\)"):
        load_weights(_lenet(0), str(tmp_path / "w.pt"))
