"""Your own model by import path, ``package.module:builder``: built wherever a model is built by
name, and one-line errors for a module that does not import, a missing attribute, a builder that
is not callable, takes other arguments or does not return a module."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rank_search.errors import RankSearchError
from rank_search.models import create_model, create_model_for
from rank_search.plan import candidate_layers, eligible_layers

HERE = str(Path(__file__).resolve().parent)


@pytest.fixture(autouse=True)
def _own_models_importable(monkeypatch) -> None:
    monkeypatch.syspath_prepend(HERE)


def test_own_builder_is_called_with_the_data_shape(synthetic_data) -> None:
    model = create_model_for("own_net:tiny_convnet", synthetic_data)
    assert type(model).__name__ == "TinyConvNet" and model.stem.in_channels == synthetic_data.in_channels
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, synthetic_data.num_classes)
    # its layer names are what a plan names: the stem and the head are left out by default
    assert list(candidate_layers(model)) == ["stem", "body", "mix", "head"]
    assert list(eligible_layers(model)) == ["body", "mix"]


def test_compact_checkpoint_of_an_own_model_loads_back(tmp_path) -> None:
    from rank_search.checkpoint import load_compact, save_compact
    from rank_search.plan import build_plan
    from rank_search.surgery import compress

    torch.manual_seed(0)
    dense = create_model("own_net:tiny_convnet", in_channels=1, num_classes=10, image_size=8).eval()
    plan = build_plan(dense, "ratio:0.5", scheme="channel")
    compact = compress(dense, plan).eval()
    save_compact(str(tmp_path / "c.pt"), compact, plan=plan, model="own_net:tiny_convnet", dataset="synthetic",
                 method="posthoc", in_channels=1, num_classes=10, image_size=8)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(load_compact(str(tmp_path / "c.pt"))(x), compact(x))


def test_a_module_that_does_not_import(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_net.py").write_text("import a_package_nobody_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RankSearchError, match=r"^model 'broken_net:build': module 'broken_net' does not import: "
                                              r"ModuleNotFoundError: No module named 'a_package_nobody_installed_xyz'$"):
        create_model("broken_net:build", in_channels=1, num_classes=10, image_size=8)
    (tmp_path / "raising_net.py").write_text("raise RuntimeError('no GPU here\\nsecond line')\n")
    with pytest.raises(RankSearchError, match=r"^model 'raising_net:build': module 'raising_net' does not import: "
                                              r"RuntimeError: no GPU here$"):
        create_model("raising_net:build", in_channels=1, num_classes=10, image_size=8)
    with pytest.raises(RankSearchError, match=r"module 'no_such_module_xyz' does not import: ModuleNotFoundError"):
        create_model("no_such_module_xyz:build", in_channels=1, num_classes=10, image_size=8)


def test_a_module_in_the_current_folder_imports_from_a_console_script(tmp_path, monkeypatch) -> None:
    """`rank-search` (a console script) has no '' on sys.path; `python -m` would: both import it."""
    import sys

    (tmp_path / "cwd_net.py").write_text("from own_net import tiny_convnet\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert isinstance(create_model("cwd_net:tiny_convnet", in_channels=1, num_classes=10, image_size=8), nn.Module)


@pytest.mark.parametrize("name, message", [
    ("own_net:no_such_builder",
     r"^model 'own_net:no_such_builder': module 'own_net' has no attribute 'no_such_builder'; "
     r"functions defined there: data_dependent, not_a_module, tiny_convnet, without_image_size$"),
    ("own_net:NOT_CALLABLE", r"^model 'own_net:NOT_CALLABLE': 'NOT_CALLABLE' is a int, not a callable builder$"),
    ("own_net:without_image_size", r"^model 'own_net:without_image_size': the builder must accept keyword arguments "
                                   r"in_channels, num_classes, image_size \(.*image_size.*\)$"),
    ("own_net:not_a_module", r"^model 'own_net:not_a_module': the builder returned a dict, not a torch.nn.Module$"),
    ("own_net:", r"^own model must be package.module:builder \(Python identifiers\), got 'own_net:'$"),
    ("own net:tiny_convnet", r"must be package.module:builder"),
    ("own_net:tiny_convnet()", r"must be package.module:builder"),
])
def test_bad_own_builders_are_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(RankSearchError, match=message) as info:
        create_model(name, in_channels=1, num_classes=10, image_size=8)
    assert "\n" not in str(info.value)


def test_unknown_registry_name_mentions_own_builders() -> None:
    with pytest.raises(RankSearchError, match=r"unknown model 'lenet6'; valid choices: .*; or your own builder "
                                              r"as package.module:function"):
        create_model("lenet6", in_channels=1, num_classes=10, image_size=8)
