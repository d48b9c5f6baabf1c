"""BatchNorm re-estimation: exact cumulative statistics, weights, mode, RNG and momentum kept."""
from __future__ import annotations

import torch
from torch import nn

from rank_search.engine.batchnorm import has_batchnorm, reestimate_batchnorm


class _Batches:
    def __init__(self, xs):
        self.xs = xs

    def __iter__(self):
        return iter((x, torch.zeros(len(x), dtype=torch.long)) for x in self.xs)


def test_reestimation_is_the_mean_over_the_images() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=0.3), nn.Dropout(0.5))
    model.eval()
    xs = [torch.randn(4, 1, 6, 6) for _ in range(3)]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    state = torch.get_rng_state()
    assert reestimate_batchnorm(model, _Batches(xs), images=10) == 10
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    bn = model[1]
    assert bn.momentum == 0.3
    with torch.no_grad():
        outs = [model[0](x) for x in (xs[0], xs[1], xs[2][:2])]  # 4 + 4 + 2 images
    means = torch.stack([o.mean((0, 2, 3)) for o in outs])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-6)  # equal weight per batch
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items() if k in weights)


def test_no_batchnorm_is_a_no_op() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    assert not has_batchnorm(model)
    assert reestimate_batchnorm(model, _Batches([torch.randn(2, 3)])) == 0
