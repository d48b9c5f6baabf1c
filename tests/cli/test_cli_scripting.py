"""The CLI as people script it: counting options, machine-readable output, listings, exit codes."""
from __future__ import annotations

import pytest

from rank_search.cli import main


def _rows(out: str) -> dict[str, str]:
    lines = [line for line in out.splitlines()[1:] if line.strip()][:-1]
    return {(line.split()[1] if line.startswith("*") else line.split()[0]): line for line in lines}


def test_layers_with_the_trp_authors_counting(capsys) -> None:
    assert main(["layers", "--model", "resnet20", "--dataset", "synthetic", "--counting", "trp"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    marked = [name for name, line in rows.items() if line.startswith("*")]
    assert len(marked) == 16 and "conv1" not in marked and "layer2.0.conv1" not in marked
    assert rows["fc"].split()[-1] == "0"  # the classifier is not counted
    assert "MACs of the convolutions (the TRP authors' counting); 16 stride-1" in out
    assert main(["layers", "--model", "resnet20", "--dataset", "synthetic"]) == 0
    assert _rows(capsys.readouterr().out)["fc"].split()[-1] == "640"  # 64 x 10
