"""`status` after a kill or with damaged results (issue 10): interrupted trials shown as such, the
progress counter across a resume, --top checked, damaged result files named and left out, a line
being written is not damage, an all-diverged sweep suggests no export."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main

from _experiments import hand_made

from _hardening import _one_line_exit_2


@pytest.mark.parametrize("driver, shown", [
    ({"host": "HOST", "pid": "DEAD"}, "INTERRUPTED"),  # kill -9: the record has no end
    ({"host": "HOST", "pid": "ME", "ended": "2026-01-01T00:00:00"}, "INTERRUPTED"),  # Ctrl-C: ended
    ({"host": "HOST", "pid": "ME"}, "RUNNING"),  # a live driver
    ({"host": "elsewhere", "pid": 1}, "RUNNING"),  # another host's driver: Tune's word stands
    # a damaged record: no pid the kernel could have given (status crashed on the huge one; 0 or a
    # negative pid would signal a process group): unknown, Tune's word stands
    ({"host": "HOST", "pid": 10 ** 30}, "RUNNING"),
    ({"host": "HOST", "pid": 0}, "RUNNING"),
    ({"host": "HOST", "pid": -1}, "RUNNING"),
    (None, "RUNNING"),  # an experiment from before the driver record
])
def test_status_shows_interrupted_trials_when_no_driver_runs(tmp_path, capsys, driver, shown) -> None:
    import socket

    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    if driver is not None:
        dead = subprocess.Popen(["true"])
        dead.wait()
        record = {**driver, "host": socket.gethostname() if driver["host"] == "HOST" else driver["host"],
                  "pid": {"DEAD": dead.pid, "ME": os.getpid()}.get(driver["pid"], driver["pid"])}
        (exp / schema.DRIVER_FILE).write_text(json.dumps(record))
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out
    assert f"TERMINATED 1, {shown} 1" in out
    assert ("rank-search resume" in out) == (shown == "INTERRUPTED")


@pytest.mark.parametrize("pid", [10 ** 30, 0, -1, "x"])
def test_export_and_analyze_read_a_sweep_whose_driver_record_holds_an_impossible_pid(tmp_path, capsys, pid) -> None:
    import socket

    exp = hand_made(tmp_path / "sweeps")
    (exp / schema.DRIVER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    assert main(["export", str(exp), "--pick", "max-accuracy", "--out", str(tmp_path / "best.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["provenance"]["trial_id"] == "b"
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report").is_dir()


def test_progress_counter_counts_trials_finished_before_a_resume() -> None:
    from types import SimpleNamespace

    from rank_search.search.progress import ProgressPrinter

    printer = ProgressPrinter(total=6, epochs=2)
    done = [SimpleNamespace(status="TERMINATED") for _ in range(5)]
    last = SimpleNamespace(status="RUNNING", trial_id="x", config={"method": "full"}, last_result={})
    printer.on_trial_complete(0, done + [last], last)
    assert printer.finished == 6


def test_status_top_must_not_be_negative(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    assert "--top must be >= 0" in _one_line_exit_2(capsys, ["status", str(exp), "--top", "-1"])


# -- items 6 and 9: damaged result.json files are named, never read silently -----------------
@pytest.mark.parametrize("damage", ["binary", "truncated", "middle"])
def test_damaged_results_are_named_and_left_out(tmp_path, capsys, damage) -> None:
    exp = hand_made(tmp_path / "sweeps")  # trial b is the more accurate one
    result = exp / "trial_b" / "result.json"
    text = result.read_text()
    result.write_bytes({"binary": bytes(range(256)),
                        "truncated": text[: len(text) - 40].encode(),  # the final epoch's line cut
                        "middle": ("{oops\n" + text).encode()}[damage])
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "damaged results: trial b (trial_b/result.json" in out
    assert main(["export", str(exp), "--pick", "max-accuracy", "--out", str(tmp_path / "best.yaml")]) == 0
    captured = capsys.readouterr()
    assert "damaged results: trial b" in captured.err
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["provenance"]["trial_id"] == "a"  # not b's earlier epoch
    assert exported["metrics"][schema.TEST_ACCURACY] == 0.5
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0


@pytest.mark.parametrize("value", ["0.99", "abc", True, [1]])
def test_a_metric_that_is_not_a_number_is_damage_named_and_left_out(tmp_path, capsys, value) -> None:
    exp = hand_made(tmp_path / "sweeps")  # trial b is the more accurate one
    result = exp / "trial_b" / "result.json"
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    rows[-1][schema.VAL_ACCURACY] = value
    result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["status", str(exp)]) == 0
    assert f"damaged results: trial b (trial_b/result.json line {len(rows)}: val_accuracy is" in capsys.readouterr().out
    assert main(["status", str(exp), "--json"]) == 0
    capsys.readouterr()
    assert main(["export", str(exp), "--pick", "max-accuracy", "--out", str(tmp_path / "best.yaml")]) == 0
    assert "damaged results: trial b" in capsys.readouterr().err
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["provenance"]["trial_id"] == "a"
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0


def test_a_line_being_written_by_a_running_trial_is_not_damage(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    result = exp / "trial_b" / "result.json"
    result.write_text(result.read_text() + '{"epoch": 3, "val_acc')
    assert main(["status", str(exp)]) == 0
    assert "damaged" not in capsys.readouterr().out


def test_an_all_diverged_sweep_does_not_suggest_export(tmp_path, capsys) -> None:
    from rank_search.cli.launch import _finish
    from rank_search.search.sweep import SweepOutcome

    exp = hand_made(tmp_path / "sweeps")
    for result in exp.glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        rows[-1].update({schema.DIVERGED: True, schema.VAL_ACCURACY: 0.0})
        result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _finish(SweepOutcome(str(exp), True, {"TERMINATED": 2}, 2)) == 0
    captured = capsys.readouterr()
    assert "rank-search export" not in captured.out + captured.err
    assert "nothing to export" in captured.err
