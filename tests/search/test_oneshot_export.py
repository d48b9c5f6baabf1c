"""`export --oneshot` (issue 31): a one-shot front point exported without fine-tuning (its compact
model the nested model's truncation, BatchNorm re-estimated as the search did, its csv accuracy
reproduced), a config whose `train --config` fine-tunes it, the picks, and the refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main

from test_oneshot_launch import SPACE, _space

# resnet20 has BatchNorm: the re-estimation matters; one trial keeps the sweep short
BN_SPACE = {**SPACE, "model": "resnet20", "epochs": 1}
RECORD_FILES = (schema.SWEEP_FILE, schema.DENSE_RECORD_FILE, schema.DENSE_WEIGHTS_FILE, schema.NESTED_WEIGHTS_FILE,
                schema.NESTED_RECORD_FILE, schema.ONESHOT_FILE)


@pytest.fixture(scope="module")
def sweep(private_ray, tmp_path_factory) -> str:
    from rank_search.search import LaunchConfig, oneshot_sweep
    from rank_search.search.sweep import launch

    root = tmp_path_factory.mktemp("oneshot-export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(oneshot_sweep, "ALLOCATIONS", 24)
        out = launch(LaunchConfig(space=_space(root, BN_SPACE), storage=str(root / "runs"), name="ose", num_samples=1,
                                  searcher="oneshot", seed=1))
    return out.path


def _front(path: str) -> list[dict]:
    from rank_search.search.oneshot_sweep import read_oneshot

    return [r for r in read_oneshot(path) if r["front"] and r["plan"].layers]


def _export(path: str, out: Path, *flags: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["export", path, "--oneshot", "--json", "--out", str(out), *flags]) == 0
    return json.loads(capsys.readouterr().out)


def _truncation(path: str, plan):
    """The nested model truncated to ``plan`` as ``search_task`` does it: (compact model, data)."""
    import torch

    from rank_search.data import load_dataset
    from rank_search.methods import create_method
    from rank_search.methods._nested_model import nest
    from rank_search.models import create_model_for
    from rank_search.plan import RankPlan
    from rank_search.search.oneshot import compact_of

    data = load_dataset("synthetic", seed=0)
    method = create_method("nested", {"min_ratio": 0.1}, ranks="ratio:0.25", scheme="channel")
    dense = create_model_for("resnet20", data)
    model = nest(dense, method.nested_schemes(dense, method.resolve_plan(dense)))
    model.load_state_dict(torch.load(Path(path, schema.NESTED_WEIGHTS_FILE), weights_only=True))
    return compact_of(model, RankPlan.from_dict(plan.to_dict()), data, bn_images=method.knobs.bn_images).eval(), data


def test_the_weights_are_the_truncation_before_fine_tuning(sweep, tmp_path, capsys) -> None:
    import torch

    from rank_search.checkpoint import load_compact
    from rank_search.engine import evaluate

    out = _export(sweep, tmp_path / "x.yaml", "--pick", "max-compression", "--weights", capsys=capsys)
    row = next(r for r in _front(sweep) if r["point"] == out["point"])
    assert out["weights"] == str(tmp_path / "x.pt") and out["method"] == "nested"
    m = out["metrics"]
    assert m[schema.VAL_ACCURACY] == pytest.approx(row["val_accuracy"], abs=1e-6)
    assert m[schema.MACS_COMPRESSION] == pytest.approx(row["macs_compression"], rel=1e-9)
    assert 0.0 <= m[schema.TEST_ACCURACY] <= 1.0 and m[schema.EPOCHS] == 0
    exported = load_compact(str(tmp_path / "x.pt"))
    reference, data = _truncation(sweep, row["plan"])
    x = next(iter(data.val))[0]
    with torch.no_grad():
        assert torch.allclose(exported(x), reference(x), atol=1e-5)
    assert evaluate(exported, data.val, torch.device("cpu"))[0] == pytest.approx(row["val_accuracy"], abs=1e-6)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "x.pt"), "--dataset", "synthetic", "--repeats", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[schema.TEST_ACCURACY] == pytest.approx(m[schema.TEST_ACCURACY], abs=1e-6)


def test_train_config_fine_tunes_the_point(sweep, tmp_path, capsys) -> None:
    from rank_search.run import RunSpec

    out = _export(sweep, tmp_path / "x.yaml", capsys=capsys)
    assert out["weights"] is None and not (tmp_path / "x.pt").exists()
    record = yaml.safe_load((tmp_path / "x.yaml").read_text())
    row = next(r for r in _front(sweep) if r["point"] == out["point"])
    run = record["run"]
    assert run["method"] == "nested" and run["ranks"] == row["plan"].to_dict() and run["epochs"] == 1
    assert run["settings"]["nested.weights"] == str(Path(sweep, schema.NESTED_WEIGHTS_FILE))
    nested = yaml.safe_load(Path(sweep, schema.NESTED_RECORD_FILE).read_text())["run"]["settings"]
    assert run["settings"]["train.lr"] == pytest.approx(0.1 * nested["train.lr"])  # as the sweep's trials
    assert RunSpec.from_dict(run).to_dict() == run
    assert record["provenance"]["oneshot_point"] == row["point"]
    assert record["provenance"]["oneshot_val_accuracy"] == row["val_accuracy"]
    assert record["metrics"][schema.VAL_ACCURACY] == pytest.approx(row["val_accuracy"], abs=1e-6)
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "x.yaml"), "--out", str(tmp_path / "ft")]) == 0
    assert f"{schema.VAL_ACCURACY}" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ft" / schema.METRICS_FILE).read_text())
    assert 0.0 <= metrics[schema.VAL_ACCURACY] <= 1.0 and metrics[schema.EPOCHS] == 1
    assert metrics[schema.MACS_COMPRESSION] == pytest.approx(row["macs_compression"], rel=1e-9)
    trained = yaml.safe_load((tmp_path / "ft" / schema.CONFIG_FILE).read_text())["run"]
    assert trained["ranks"] == run["ranks"] and trained["settings"]["nested.weights"] == run["settings"]["nested.weights"]


def test_the_picks_are_the_trial_export_rules_on_the_front(sweep, tmp_path, capsys) -> None:
    front = _front(sweep)
    assert len(front) >= 2, front
    most = _export(sweep, tmp_path / "c.yaml", "--pick", "max-compression", capsys=capsys)["point"]
    best = _export(sweep, tmp_path / "a.yaml", "--pick", "max-accuracy", capsys=capsys)["point"]
    assert most == max(front, key=lambda r: (r["macs_compression"], r["val_accuracy"]))["point"]
    assert best == max(front, key=lambda r: (r["val_accuracy"], r["macs_compression"]))["point"]
    cheapest = min(r["macs"] for r in front)
    bounded = _export(sweep, tmp_path / "b.yaml", "--pick", "max-accuracy", "--max-macs", str(cheapest), capsys=capsys)
    assert bounded["point"] == min(front, key=lambda r: r["macs"])["point"]
    capsys.readouterr()
    assert main(["export", sweep, "--oneshot", "--pick", "max-accuracy", "--out", str(tmp_path / "t.yaml")]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(f"exported one-shot point {best} (pick max-accuracy), before fine-tuning: val_acc ")
    assert "test_acc" in text[0] and "macs_compression" in text[0] and "train --config" in text[1]


def test_pick_row_knee_is_the_knee_of_the_rows() -> None:
    from rank_search.cli._pick import pick_row

    rows = [{"point": i, "val_accuracy": a, "macs_compression": c, "macs": 100 / c}
            for i, (a, c) in enumerate([(0.99, 1.5), (0.97, 4.0), (0.60, 8.0), (0.95, 3.0)])]
    assert pick_row(rows, pick="knee")["point"] == 1
    assert pick_row(rows, pick="max-accuracy")["point"] == 0
    assert pick_row(rows, pick="max-compression", min_accuracy=0.9)["point"] == 1
    with pytest.raises(Exception, match="no point meets --min-accuracy 0.999"):
        pick_row(rows, pick="knee", min_accuracy=0.999)


def _copy(sweep: str, tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "exp"
    folder.mkdir()
    for name in RECORD_FILES:
        if name not in drop:
            shutil.copy2(Path(sweep, name), folder / name)
    return folder


@pytest.mark.parametrize("case, expected", [
    ("not-oneshot", f"--oneshot needs a one-shot sweep (launch --searcher oneshot): .* has no {schema.ONESHOT_FILE}"),
    ("no-nested", f"--oneshot needs the sweep's nested model: .* has no {schema.NESTED_WEIGHTS_FILE}"),
    ("damaged", f"{schema.ONESHOT_FILE} in .* is damaged near line 3"),
    ("include-stopped", "--include-stopped picks among trials; --oneshot picks among one-shot front points"),
    ("bounds", "no point meets --min-accuracy 2.0"),
])
def test_refusals_are_one_line(sweep, tmp_path, capsys, case, expected) -> None:
    drop = {"not-oneshot": (schema.ONESHOT_FILE,), "no-nested": (schema.NESTED_WEIGHTS_FILE,)}.get(case, ())
    folder = _copy(sweep, tmp_path, drop=drop)
    if case == "damaged":
        lines = (folder / schema.ONESHOT_FILE).read_text().splitlines()
        lines[2] = lines[2].replace(",", ",x", 1)
        (folder / schema.ONESHOT_FILE).write_text("\n".join(lines) + "\n")
    flags = {"include-stopped": ["--include-stopped"], "bounds": ["--min-accuracy", "2.0"]}.get(case, [])
    capsys.readouterr()
    code = main(["export", str(folder), "--oneshot", "--weights", "--out", str(tmp_path / "x.yaml"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and all(part in err[0] for part in expected.split(" .* ")), err
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "x.pt").exists()
