"""Model zoo: shapes, published CIFAR ResNet sizes, parameter-free shortcuts, registry errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rank_search.models import MODELS, create_model, list_models

IMAGENET_MODELS = {"resnet18", "resnet50"}

# sum(p.numel() for p in model.parameters()) for 3 input channels and 10 classes.
# (state_dict totals are larger: they add BatchNorm running stats, e.g. resnet20 -> 272,474.)
CIFAR_RESNET_PARAMS = {
    "resnet20": 269_722,  # published 0.27M
    "resnet32": 464_154,  # 0.46M
    "resnet44": 658_586,  # 0.66M
    "resnet56": 853_018,  # 0.85M
    "resnet110": 1_727_962,  # 1.7M
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_all_models() -> None:
    expected = {"lenet5", "lenet5_wide", "vgg16_cifar", *CIFAR_RESNET_PARAMS, *IMAGENET_MODELS}
    assert set(list_models()) == expected
    assert list_models("resnet*") == sorted(n for n in expected if n.startswith("resnet"))


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape(name: str, in_channels: int) -> None:
    sizes = (32,) if name in IMAGENET_MODELS else (8, 28, 32)
    for size in sizes:
        model = create_model(name, in_channels=in_channels, num_classes=7, image_size=size)
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(2, in_channels, size, size))
        assert out.shape == (2, 7), (name, size)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(CIFAR_RESNET_PARAMS))
def test_cifar_resnet_param_counts_and_parameter_free_shortcuts(name: str) -> None:
    model = create_model(name, in_channels=3, num_classes=10, image_size=32)
    assert _n_params(model) == CIFAR_RESNET_PARAMS[name]
    assert not [n for n, _ in model.named_parameters() if "shortcut" in n or "downsample" in n]
    n_blocks = (int(name[len("resnet"):]) - 2) // 6
    names = dict(model.named_modules())
    for stage in ("layer1", "layer2", "layer3"):
        assert isinstance(names[f"{stage}.0.conv1"], nn.Conv2d)
        assert f"{stage}.{n_blocks - 1}.conv2" in names
        assert f"{stage}.{n_blocks}" not in names


def test_cifar_resnet_stage_shapes() -> None:
    model = create_model("resnet20", in_channels=3, num_classes=10, image_size=32)
    model.train()  # a train-mode step exercises the zero-padded shortcut with BN
    out = model(torch.randn(4, 3, 32, 32))
    out.sum().backward()
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer3[0].conv1.stride == (2, 2)
    assert model.fc.in_features == 64


def test_lenet5_classic_layout() -> None:
    model = create_model("lenet5", in_channels=1, num_classes=10, image_size=28)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 120), (120, 84), (84, 10)]
    assert _n_params(model) == 61_706  # classic LeNet-5 (ReLU variant) for MNIST


def _conv_linear_macs(model: nn.Module, size: int, in_channels: int) -> int:
    macs = 0

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += mod.weight.numel() * (out[0, 0].numel() if out.dim() == 4 else 1)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, size, size))
    for h in handles:
        h.remove()
    return macs


def test_lenet5_wide_is_cheap_and_has_enough_layers() -> None:
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=28)
    from rank_search.plan import eligible_layers

    # stem conv and classifier are not in a uniform plan; the demo space needs >= 4 layers
    assert len(eligible_layers(model)) >= 4
    assert _conv_linear_macs(model, 28, 1) <= 15_000_000


def test_imagenet_models_take_any_channel_count() -> None:
    model = create_model("resnet18", in_channels=1, num_classes=5, image_size=32)
    assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.fc.out_features == 5


def test_vgg16_cifar_keeps_spatial_size_positive() -> None:
    model = create_model("vgg16_cifar", in_channels=3, num_classes=10, image_size=28)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # 28 -> 14 -> 7 -> 3 -> 1, fifth pool skipped
    assert len(create_model("vgg16_cifar", in_channels=3, num_classes=10, image_size=32)
               .features) == 13 * 3 + 5


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet21'.*lenet5.*resnet20"):
        create_model("resnet21", in_channels=3, num_classes=10, image_size=32)
