"""`evaluate` measures each kind of file on the file itself: a compact.pt, its ONNX and its
torch.export files give the PyTorch compact model's test accuracy and the same MACs."""
from __future__ import annotations

import pytest
import torch

from rank_search import schema
from rank_search.checkpoint import load_compact, save_compact
from rank_search.cost import count_macs, count_params
from rank_search.deploy import deploy, evaluate_file, fold_batchnorm
from rank_search.engine import evaluate
from rank_search.errors import RankSearchError
from rank_search.run import RunSpec, train


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A trained compact lenet5_wide (BatchNorm, tucker2) and its two deployed files."""
    folder = tmp_path_factory.mktemp("evaluate")
    spec = RunSpec(model="lenet5_wide", dataset="synthetic", method="posthoc", ranks="ratio:0.5", scheme="tucker2",
                   epochs=2)
    trainer = train(spec).trainer
    data = trainer.data
    compact = str(folder / "compact.pt")
    save_compact(compact, trainer.compact_model(), plan=trainer.method.plan, model=spec.model, dataset=spec.dataset,
                 method=spec.method, in_channels=data.in_channels, num_classes=data.num_classes,
                 image_size=data.image_size)
    out = {"compact": compact}
    for fmt, suffix in (("onnx", ".onnx"), ("torch-export", ".pt2")):
        out[fmt] = deploy(compact, fmt=fmt, out=str(folder / f"model{suffix}")).path
    return out


@pytest.fixture(scope="module")
def results(files) -> dict[str, dict]:
    return {kind: evaluate_file(path, dataset="synthetic", repeats=2) for kind, path in files.items()}


def test_every_format_gives_the_pytorch_accuracy_and_macs(files, results, synthetic_data) -> None:
    model = load_compact(files["compact"])
    accuracy, _ = evaluate(model, synthetic_data.test, torch.device("cpu"))
    assert accuracy > 0.5  # trained: a meaningful comparison
    macs = count_macs(model, (1, 8, 8))[0]
    for kind, result in results.items():
        assert result[schema.EVAL_FORMAT] == kind and result[schema.EVAL_DATASET] == "synthetic"
        assert result[schema.TEST_ACCURACY] == accuracy, kind
        assert result[schema.MACS] == macs, kind
        for b in schema.LATENCY_BATCH_SIZES:
            assert result[schema.latency_key(b)] > 0
        assert result[schema.LATENCY_REPEATS] == 2 and result[schema.LATENCY_THREADS] == torch.get_num_threads()


def test_params_are_the_weights_each_file_stores(files, results) -> None:
    model = load_compact(files["compact"])
    assert results["compact"][schema.PARAMS] == count_params(model)
    folded, pairs = fold_batchnorm(model, torch.randn(2, 1, 8, 8))
    assert len(pairs) == 3
    # folding drops each BatchNorm's scale and shift and gives its bias-free conv a bias
    assert results["torch-export"][schema.PARAMS] == count_params(folded) == count_params(model) - sum(
        model.get_submodule(bn).num_features for _, bn in pairs)
    assert results["onnx"][schema.PARAMS] == count_params(folded)


def test_a_file_for_another_input_or_no_model_file(files, tmp_path) -> None:
    with pytest.raises(RankSearchError, match=r"takes inputs of 1x8x8, data set 'mnist5k' has 1x28x28"):
        evaluate_file(files["onnx"], dataset="mnist5k")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RankSearchError, match=r"is not a rank-search compact.pt, an ONNX file or a torch.export"):
        evaluate_file(str(tmp_path / "notes.txt"), dataset="synthetic")
    with pytest.raises(RankSearchError, match=r"model file .* does not exist"):
        evaluate_file(str(tmp_path / "none.onnx"), dataset="synthetic")
    with pytest.raises(RankSearchError, match=r"--repeats must be an integer >= 1, got 0"):
        evaluate_file(files["compact"], dataset="synthetic", repeats=0)
    with pytest.raises(RankSearchError, match=r"--threads must be an integer >= 1, got 0"):
        evaluate_file(files["compact"], dataset="synthetic", threads=0)
    with pytest.raises(RankSearchError, match=r"unknown dataset 'mnist'"):
        evaluate_file(files["compact"], dataset="mnist")


def test_threads_apply_while_measuring_only(files) -> None:
    before = torch.get_num_threads()
    result = evaluate_file(files["onnx"], dataset="synthetic", repeats=1, threads=1, batch_sizes=(2,))
    assert result[schema.LATENCY_THREADS] == 1 and schema.latency_key(2) in result
    assert torch.get_num_threads() == before
