"""`deploy` for every scheme and both formats: the file reproduces the PyTorch compact model within
1e-4 for any batch size, records the input normalisation and the plan, and loads without
rank-search; a file that fails the parity check is never written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.checkpoint import load_compact, save_compact
from rank_search.deploy import deploy, open_model, sidecar_path
from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES
from rank_search.models import create_model
from rank_search.plan import build_plan
from rank_search.surgery import compress
from test_fold import randomize_batchnorm

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}


def _compact_file(folder: Path, scheme: str) -> str:
    torch.manual_seed(0)
    dense = randomize_batchnorm(create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8))
    plan = build_plan(dense, "ratio:0.5", scheme=scheme)
    path = str(folder / f"{scheme}.pt")
    save_compact(path, compress(dense, plan).eval(), plan=plan, model="lenet5_wide", dataset="synthetic",
                 method="posthoc", in_channels=1, num_classes=10, image_size=8)
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> dict:
    """{(scheme, format): (compact.pt, Deployment)}, each exported once."""
    folder = tmp_path_factory.mktemp("deploy")
    out = {}
    for scheme in SCHEMES.names():
        source = _compact_file(folder, scheme)
        for fmt, suffix in FORMATS.items():
            out[scheme, fmt] = source, deploy(source, fmt=fmt, out=str(folder / f"{scheme}{suffix}"))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_round_trip_within_tolerance_at_any_batch_size(deployed, scheme: str, fmt: str) -> None:
    source, result = deployed[scheme, fmt]
    assert result.max_abs_diff <= schema.PARITY_TOLERANCE
    assert len(result.folded) == 3  # every BatchNorm of lenet5_wide sits after its conv
    reference = load_compact(source)
    opened = open_model(result.path)
    assert opened.kind == fmt and opened.input_shape == (1, 8, 8)
    for batch in (1, 3, 33):  # the batch dimension is dynamic
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            assert (opened.forward(x) - reference(x)).abs().max() <= schema.PARITY_TOLERANCE


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_in_the_file_and_the_side_car(deployed, fmt: str) -> None:
    source, result = deployed["tucker2", fmt]
    plan = torch.load(source, weights_only=True)["plan"]
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
        meta = json.loads(props[schema.DEPLOY_METADATA_KEY])
        assert props["input_shape"] == "batchx1x8x8" and props["model"] == "lenet5_wide"
    else:
        extra = {schema.DEPLOY_METADATA_FILE: ""}
        torch.export.load(result.path, extra_files=extra)
        meta = json.loads(extra[schema.DEPLOY_METADATA_FILE])
    assert meta == open_model(result.path).metadata
    assert meta["format"] == schema.DEPLOY_FILE_FORMAT and meta["file_format"] == fmt
    assert meta["plan"] == plan and meta["model"] == "lenet5_wide" and meta["method"] == "posthoc"
    assert meta["input"]["shape"] == ["batch", 1, 8, 8] and meta["input"]["mean"] == [0.0]
    assert meta["input"]["std"] == pytest.approx([2 ** 0.5])  # synthetic: unit prototypes + unit noise
    assert meta["batchnorm_folded"] == {"features.1": "features.0", "features.5": "features.4.expand",
                                        "features.8": "features.7.expand"}
    side = yaml.safe_load(Path(sidecar_path(result.path)).read_text())
    assert {k: side[k] for k in meta} == meta
    assert side["parity_max_abs_diff"] == result.max_abs_diff <= schema.PARITY_TOLERANCE
    assert not [f for f in os.listdir(Path(result.path).parent) if ".partial-" in f]


def test_normalisation_of_the_real_data_sets() -> None:
    from rank_search.deploy import input_normalization

    mnist = input_normalization("mnist5k")
    assert (mnist["scale"], mnist["mean"], mnist["std"]) == (pytest.approx(1 / 255), [0.1307], [0.3081])
    assert input_normalization("cifar10")["mean"] == [0.4914, 0.4822, 0.4465]
    assert input_normalization("imagefolder")["std"] == [0.229, 0.224, 0.225]
    assert input_normalization("digits")["scale"] == 1 / 16


SCRIPT = """
import sys
sys.modules["rank_search"] = None  # any import of rank-search fails
import numpy as np, onnxruntime as ort, torch
x, want = torch.load(sys.argv[3], weights_only=True)
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
got_onnx = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
got_export = torch.export.load(sys.argv[2]).module()(x)
assert np.abs(got_onnx - want.numpy()).max() <= 1e-4, "onnx"
assert (got_export - want).abs().max() <= 1e-4, "torch.export"
print("ok", got_onnx.shape)
"""


def test_deployed_files_load_without_rank_search(deployed, tmp_path) -> None:
    source, onnx_result = deployed["tiled", "onnx"]
    _, export_result = deployed["tiled", "torch-export"]
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.save((x, load_compact(source)(x)), tmp_path / "io.pt")
    done = subprocess.run([sys.executable, "-c", SCRIPT, onnx_result.path, export_result.path, str(tmp_path / "io.pt")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok (5, 10)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_that_fails_the_parity_check_is_not_written(deployed, tmp_path, monkeypatch, fmt: str) -> None:
    from rank_search.deploy import export as export_module

    real = export_module.export_program

    def perturbed(model, example):  # an exporter that gets one weight wrong
        with torch.no_grad():
            model.features[0].weight[0, 0, 0, 0] += 0.5
        return real(model, example)

    monkeypatch.setattr(export_module, "export_program", perturbed)
    source, _ = deployed["channel", fmt]
    out = tmp_path / f"bad{FORMATS[fmt]}"
    with pytest.raises(RankSearchError, match=rf"the exported {fmt} model differs from the PyTorch compact model by "
                                              r"\S+ \(max abs\) > 0.0001; nothing was written"):
        deploy(source, fmt=fmt, out=str(out))
    assert os.listdir(tmp_path) == []


def test_bad_requests_are_one_line_errors(deployed, tmp_path) -> None:
    source, _ = deployed["channel", "onnx"]
    with pytest.raises(RankSearchError, match=r"--format must be one of onnx, torch-export, got 'tflite'"):
        deploy(source, fmt="tflite", out=str(tmp_path / "m.tflite"))
    with pytest.raises(RankSearchError, match=r"folder of --out .* does not exist"):
        deploy(source, fmt="onnx", out=str(tmp_path / "no" / "m.onnx"))
    with pytest.raises(RankSearchError, match=r"--out .* is SOURCE itself"):
        deploy(source, fmt="torch-export", out=source)
    with pytest.raises(RankSearchError, match=r"checkpoint .*channel.onnx.yaml. cannot be read safely"):
        deploy(sidecar_path(deployed["channel", "onnx"][1].path), fmt="onnx", out=str(tmp_path / "m.onnx"))


def test_a_model_torch_export_cannot_capture_is_one_line(tmp_path, monkeypatch) -> None:
    from rank_search.plan import RankPlan

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "models"))
    model = create_model("own_net:data_dependent", in_channels=1, num_classes=10, image_size=8)
    save_compact(str(tmp_path / "c.pt"), model, plan=RankPlan(), model="own_net:data_dependent", dataset="synthetic",
                 method="full", in_channels=1, num_classes=10, image_size=8)
    with pytest.raises(RankSearchError, match=r"^torch.export cannot capture the model: \w+") as info:
        deploy(str(tmp_path / "c.pt"), fmt="torch-export", out=str(tmp_path / "m.pt2"))
    assert "\n" not in str(info.value)
