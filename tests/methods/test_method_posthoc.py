"""posthoc from trained dense weights: every epoch fine-tunes the compact model; from scratch
the budget is shared as before; BatchNorm re-estimation after the decomposition."""
from __future__ import annotations

import pytest
import torch

from rank_search.errors import RankSearchError
from rank_search.run import RunSpec, prepare, train
from rank_search.weights import save_weights


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    result = train(RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=2, seed=0))
    path = tmp_path_factory.mktemp("dense") / "dense.pt"
    save_weights(result.trainer.model, str(path))
    return str(path), result.metrics["val_accuracy"]


def _spec(**kw) -> RunSpec:
    return RunSpec(model="lenet5", dataset="synthetic", method="posthoc", ranks="ratio:0.5", epochs=1, seed=0, **kw)


def test_from_dense_weights_every_epoch_fine_tunes(dense_file) -> None:
    path, _ = dense_file
    trainer = prepare(_spec(init=path))
    assert trainer.method.initialized and trainer.method.from_dense
    trainer.fit()  # 1 epoch is fine: no dense phase to share it with
    assert trainer.method.phase == "finetune"
    assert sum(p.numel() for p in trainer.model.parameters()) < sum(p.numel() for p in trainer.dense.parameters())


def test_scratch_init_keeps_the_dense_phase(dense_file) -> None:
    path, _ = dense_file
    with pytest.raises(RankSearchError, match=r"posthoc.finetune_epochs must be < epochs \(1\), got 1"):
        prepare(_spec(init=path, settings={"posthoc.init": "scratch"}))
    with pytest.raises(RankSearchError, match=r"posthoc.finetune_epochs must be < epochs \(1\), got 1"):
        prepare(_spec())  # no trained weights: the budget is shared
    with pytest.raises(RankSearchError, match=r"posthoc.init must be one of scratch, dense, got 'warm'"):
        prepare(_spec(settings={"posthoc.init": "warm"}))


def test_bn_recalibrate_changes_only_batchnorm_statistics() -> None:
    spec = RunSpec(model="resnet20", dataset="synthetic", method="posthoc", ranks="ratio:0.5", epochs=2, seed=0,
                   settings={"posthoc.finetune_epochs": 1, "posthoc.bn_recalibrate": True, "posthoc.bn_images": 64})
    trainer = prepare(spec)
    trainer.train_epoch()
    method = trainer.method
    method.on_epoch_start(trainer, 1)  # the decomposition, then the re-estimation
    assert method.phase == "finetune"
    plain = prepare(RunSpec(**{**spec.to_dict(), "settings": {"posthoc.finetune_epochs": 1}}))
    plain.train_epoch()
    plain.method.on_epoch_start(plain, 1)
    a, b = trainer.model.state_dict(), plain.model.state_dict()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and all("running_" in k or "num_batches" in k for k in changed)
