"""Parity that cannot pass on NaN (issue 27): a compact.pt holding NaN weights is refused by
`deploy` and `evaluate` in one line, and the parity check itself fails on any non-finite output
(NaN - NaN is NaN, and ``max(0.0, nan)`` is 0.0: it used to report a difference of 0)."""
from __future__ import annotations

import pytest
import torch

from rank_search.cli import main
from rank_search.errors import RankSearchError


def _compact(path, *, fill: float | None = None) -> str:
    from rank_search.checkpoint import save_compact
    from rank_search.models import create_model
    from rank_search.plan import build_plan
    from rank_search.surgery import compress

    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10, image_size=8)
    plan = build_plan(model, "ratio:0.5", scheme="channel")
    compact = compress(model, plan)
    if fill is not None:
        with torch.no_grad():
            for p in compact.parameters():
                p.fill_(fill)
    save_compact(str(path), compact, plan=plan, model="lenet5", dataset="synthetic", method="factorized",
                 in_channels=1, num_classes=10, image_size=8)
    return str(path)


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
@pytest.mark.parametrize("command", ["deploy", "evaluate"])
def test_a_non_finite_compact_file_is_one_line_exit_2(tmp_path, capsys, fill, command) -> None:
    src = _compact(tmp_path / "compact.pt", fill=fill)
    argv = (["deploy", src, "--format", "onnx", "--out", str(tmp_path / "m.onnx")] if command == "deploy"
            else ["evaluate", src, "--dataset", "synthetic", "--repeats", "1"])
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1, captured.err
    assert "non-finite values" in err[0] and "compact.pt" in err[0]
    assert "max abs difference" not in captured.out + captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compact.pt"], "something was written"


def test_parity_fails_on_a_non_finite_output_of_either_model(tmp_path) -> None:
    from rank_search.checkpoint import load_compact
    from rank_search.deploy.export import deploy, parity

    src = _compact(tmp_path / "compact.pt")
    out = tmp_path / "m.onnx"
    deploy(src, fmt="onnx", out=str(out))
    reference = load_compact(src)
    assert parity(reference, str(out), "onnx", (1, 8, 8)) <= 1e-4

    class NaNOut(torch.nn.Module):
        def forward(self, x):
            return reference(x) * float("nan")

    with pytest.raises(RankSearchError, match="PyTorch compact model gives non-finite outputs"):
        parity(NaNOut(), str(out), "onnx", (1, 8, 8))
