"""benchmarks/gpu_check.py cannot rot: its CPU smoke path runs every method in a tiny
configuration, and without CUDA its GPU path exits 2 with one clear line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rank_search.methods import METHODS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _report
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))
    return gpu_check


def test_the_cpu_smoke_path_trains_every_method_and_times_it(gpu_check, capsys, tmp_path) -> None:
    out = tmp_path / "report.md"
    rc = gpu_check.main(["--device", "cpu", "--quick", "--modes", "bf16+cl", "--image-size", "8", "--train-size", "16",
                         "--batch-size", "8", "--latency-batches", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert text.startswith("## GPU check: mixed-precision training and compact latency (")
    assert "`python3 benchmarks/gpu_check.py --device cpu --quick --modes bf16+cl" in text
    assert out.read_text() == text  # --out appends the same section
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    training = [r for r in rows if len(r) == 12 and r[0] != "| method"]
    latency = [r for r in rows if len(r) == 9 and r[0] != "| method"]
    methods = [r[0].removeprefix("| ") for r in training]
    assert methods == list(gpu_check.METHOD_ORDER) and set(methods) == set(METHODS.names())
    assert all(r[2] == "bf16+cl" and r[-1] == "ok |" for r in training), training
    assert [r[0].removeprefix("| ") for r in latency] == methods
    for r in latency:
        assert float(r[5]) > 0 and float(r[6]) > 0 and r[3] == "off" and r[4] == "1"


def test_bad_modes_and_method_names_are_refused(gpu_check) -> None:
    with pytest.raises(SystemExit, match=r"a mode is AMP\[\+cl\] with AMP one of off, bf16, fp16, got 'bf16\+x'"):
        gpu_check.main(["--device", "cpu", "--modes", "bf16+x"])
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid choices: "):
        gpu_check.main(["--device", "cpu", "--methods", "nope"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_without_cuda_the_gpu_path_exits_2_with_one_line(gpu_check, capsys) -> None:
    assert gpu_check.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("gpu_check: CUDA is not available on this machine (torch ")
    assert captured.err.endswith("or smoke-test it with --device cpu --quick\n") and captured.err.count("\n") == 1
