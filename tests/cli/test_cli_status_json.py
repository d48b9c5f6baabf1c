"""`status --json`: one strict JSON object on stdout with the documented, stable keys, read from
disk like the text (no Ray, nothing unpickled), on hand-made finished, interrupted, unstarted
and booby-trapped experiments (the finished real sweep is in tests/search/test_launch_data.py)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from rank_search import schema
from rank_search.cli import main
from rank_search.cli.status import JSON_KEYS, METRIC_KEYS, SWEEP_STATES, TRIAL_KEYS, TRIAL_STATES

from _experiments import booby_trap, hand_made


def status_json(capsys, path, *flags: str) -> dict:
    """`status PATH --json`: exit 0, stdout one JSON object (strict: no NaN), nothing on stderr."""
    assert main(["status", str(path), "--json", *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))


def check_keys(out: dict) -> None:
    """The stable key set: the top level, every trial, the counts, the metrics."""
    assert tuple(out) == JSON_KEYS
    assert out["state"] in SWEEP_STATES
    assert tuple(out["counts"]) == TRIAL_STATES and sum(out["counts"].values()) == len(out["trials"])
    objectives = [o["metric"] for o in out["objectives"]]
    for trial in out["trials"]:
        assert tuple(trial) == TRIAL_KEYS
        assert trial["state"] in TRIAL_STATES
        assert list(trial["metrics"]) == list(METRIC_KEYS) + [m for m in objectives if m not in METRIC_KEYS]
        assert not any(k.startswith(schema.SPACE_PREFIX) for k in trial["config"])
        assert type(trial["epoch"]) is int and type(trial["num_failures"]) is int
    ids = [t["trial_id"] for t in out["trials"]]
    assert set(out["front"]) <= set(ids) and set(out["top"]) <= set(ids)
    assert out["knee"] is None or out["knee"] in out["front"]


def _text_ids(text: str, heading: str) -> list[str]:
    """The trial ids of the table under the line starting with ``heading`` in status's text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 2  # the heading, the header
    ids = []
    for line in lines[start:]:
        if not line.strip():
            break
        ids.append(line.split()[0])
    return ids


def test_a_finished_experiment(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path, trials={"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED"}, num_samples=3)
    out = status_json(capsys, exp)
    check_keys(out)
    assert (out["experiment"], out["name"], out["space"], out["num_samples"]) == (str(exp), "exp", "tiny", 3)
    assert (out["state"], out["driver"], out["resume"], out["diverged"]) == ("finished", "unknown", None, 0)
    assert out["objectives"] == [{"metric": "val_accuracy", "mode": "max"},
                                 {"metric": "macs_compression", "mode": "max"}]
    assert out["counts"]["TERMINATED"] == 3 and sum(out["counts"].values()) == 3
    a = out["trials"][0]
    assert (a["trial_id"], a["state"], a["epoch"], a["epochs"], a["finished"], a["diverged"]) == \
        ("a", "TERMINATED", 2, 2, True, False)
    assert a["metrics"][schema.VAL_ACCURACY] == pytest.approx(0.52) and a["metrics"][schema.TEST_ACCURACY] == 0.5
    assert a["metrics"][schema.COMPACT_MACS] is None  # not reported by this hand-made trial: null, not NaN
    assert a["config"] == {"method": "factorized", "rank.all": 0.5}
    assert (a["folder"], a["checkpoint"], a["damaged"]) == ("trial_a", "checkpoint_000001", None)
    # the front and the best trials as the text shows them, in its order
    assert main(["status", str(exp)]) == 0
    text = capsys.readouterr().out
    assert out["front"] == _text_ids(text, "Pareto front over")
    assert out["top"] == _text_ids(text, "best ")
    knee = next(line.split()[0] for line in text.splitlines() if line.endswith("<- knee"))
    assert out["knee"] == knee
    assert status_json(capsys, exp, "--top", "1")["top"] == out["top"][:1]
    assert status_json(capsys, exp, "--top", "0")["top"] == []


def test_an_interrupted_experiment_names_its_resume_command(tmp_path, monkeypatch, capsys) -> None:
    exp = hand_made(tmp_path, trials={"a": "TERMINATED", "b": "RUNNING"}, num_samples=4)
    (exp / schema.DRIVER_FILE).write_text(json.dumps({"pid": 1, "ended": "2026-01-01T00:00:00"}))
    monkeypatch.setattr(sys, "argv", [".venv/bin/rank-search"])
    out = status_json(capsys, exp)
    check_keys(out)
    assert (out["state"], out["driver"]) == ("interrupted", "gone")
    assert {k: v for k, v in out["counts"].items() if v} == {"TERMINATED": 1, schema.INTERRUPTED: 1}
    assert [t["state"] for t in out["trials"]] == ["TERMINATED", schema.INTERRUPTED]
    assert out["resume"] == f".venv/bin/rank-search resume {exp}"


def test_an_experiment_without_trials(tmp_path, capsys) -> None:
    """A launch stopped before its first trial: the record alone."""
    exp = hand_made(tmp_path, trials={}, num_samples=2)
    (exp / schema.DRIVER_FILE).write_text(json.dumps({"pid": 1, "ended": "2026-01-01T00:00:00"}))
    out = status_json(capsys, exp)
    check_keys(out)
    assert (out["state"], out["trials"], out["front"], out["top"], out["knee"]) == ("interrupted", [], [], [], None)
    assert set(out["counts"].values()) == {0}


def test_integers_stay_integers_and_missing_values_are_null(tmp_path, capsys) -> None:
    """An integer knob only some trials have (a table makes it a float), a trial that has not
    reported yet (its metrics a table would hold as NaN) and a diverged one."""
    exp = hand_made(tmp_path, trials={"a": "TERMINATED", "b": "TERMINATED", "c": "PENDING"}, num_samples=3)
    params = exp / "trial_b" / "params.json"
    params.write_text(json.dumps({**json.loads(params.read_text()), "method": "trp", "trp.interval": 5}))
    (exp / "trial_c" / "result.json").unlink()
    lines = (exp / "trial_a" / "result.json").read_text().splitlines()
    last = json.loads(lines[-1])
    last.update({schema.DIVERGED: True, schema.VAL_ACCURACY: 0.0, schema.TRAIN_LOSS: math.nan})
    (exp / "trial_a" / "result.json").write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")
    out = status_json(capsys, exp)
    check_keys(out)
    a, b, c = out["trials"]
    assert b["config"] == {"method": "trp", "rank.all": 0.5, "trp.interval": 5} and type(b["config"]["trp.interval"]) is int
    assert "trp.interval" not in a["config"]
    assert a["diverged"] and out["diverged"] == 1 and "a" not in out["front"]
    assert (c["state"], c["epoch"], c["checkpoint"]) == ("PENDING", 0, None)
    assert set(c["metrics"].values()) == {None}


def test_status_json_unpickles_nothing(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path)
    marker = tmp_path / "code-ran"
    booby_trap(exp, marker)
    check_keys(status_json(capsys, exp))
    assert not marker.exists()


def test_the_help_names_the_keys(capsys) -> None:
    assert main(["status", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"keys: {', '.join(JSON_KEYS)}; each trial: {', '.join(TRIAL_KEYS)}" in text


def test_the_trial_states_cover_the_loaders() -> None:
    from analysis.loading import STATUSES

    assert set(TRIAL_STATES) >= {*STATUSES, schema.INTERRUPTED, "UNKNOWN"}


def test_json_values_are_strict_json() -> None:
    import numpy as np

    from rank_search.cli._scripting import json_value

    value = {"a": np.int64(3), "b": np.float64("nan"), "c": [np.bool_(True), math.inf, 1.5], 4: None, "d": (1, "x")}
    assert json_value(value) == {"a": 3, "b": None, "c": [True, None, 1.5], "4": None, "d": [1, "x"]}
    assert type(json_value(np.int64(3))) is int and type(json_value(np.bool_(False))) is bool
    json.dumps(json_value(value), allow_nan=False)


def test_an_error_is_one_line_on_stderr_and_nothing_on_stdout(tmp_path, capsys) -> None:
    assert main(["status", str(tmp_path / "missing"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and "does not exist" in captured.err
