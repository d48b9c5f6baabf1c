"""`launch --data-root` / `--download` and the data set's pre-flight: the root overrides the
space's `data_root` for every trial and the dense reference and is kept in the sweep record for
`resume`; `--download` fetches once, in the driver, before Ray; missing files fail before any
folder or Ray (the one-line exit-2 cases are in tests/cli/test_bad_inputs.py)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main
from rank_search.errors import RankSearchError
from rank_search.search import LaunchConfig

# factorized only: no dense reference to train
CIFAR_SPACE = {
    "model": "lenet5", "dataset": "cifar10", "epochs": 1,
    "methods": {"factorized": {}},
    "ranks": {"grouping": "uniform", "ratio": {"float": [0.2, 0.8]}},
}
# posthoc from the dense reference: the reference trains too, on the same data root
SYNTHETIC_SPACE = {**CIFAR_SPACE, "dataset": "synthetic", "methods": {"posthoc": {}}}


def _space(tmp_path: Path, space: dict, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return str(path)


class RayStarted(Exception):
    """Raised in place of starting Ray: what ran before it is all a test needs."""


@pytest.fixture()
def no_ray(monkeypatch) -> list:
    """``ray_session`` of the sweep module and ``fetch_data`` of its checks replaced: Ray's start
    raises ``RayStarted``, and each fetch and each Ray start are logged in the returned list, in order."""
    import rank_search.search.check as check
    import rank_search.search.sweep as sweep

    events: list = []

    def ray_session(*args, **kwargs):
        events.append("ray")
        raise RayStarted

    monkeypatch.setattr(sweep, "ray_session", ray_session)
    monkeypatch.setattr(check, "fetch_data", lambda name, *, data_root: events.append(("fetch", name, data_root)))
    return events


def test_the_flags_parse() -> None:
    from rank_search.cli import build_parser

    args = build_parser().parse_args(["launch", "--space", "demo", "--data-root", "data", "--download"])
    assert (args.data_root, args.download) == ("data", True)
    args = build_parser().parse_args(["launch", "--space", "demo"])
    assert (args.data_root, args.download) == (None, False)  # the space's data_root, no download


def test_preflight_gives_every_trial_the_absolute_root(tmp_path, monkeypatch) -> None:
    from rank_search.search.sweep import preflight

    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, {**CIFAR_SPACE, "dataset": "synthetic", "data_root": "/the/space/s"})
    storage = str(tmp_path / "runs")
    assert preflight(LaunchConfig(space=space, storage=storage, name="a")).space.data_root == "/the/space/s"
    pre = preflight(LaunchConfig(space=space, storage=storage, name="a", data_root="data"))
    assert pre.cfg.data_root == pre.space.data_root == str(tmp_path / "data")  # found from any folder
    assert pre.space.to_plain()["data_root"] == str(tmp_path / "data")  # the space as run, in the record
    assert not Path(storage).exists() and not (tmp_path / "data").exists()
    # a relative data_root in the space file is the launching folder's too (trials run elsewhere)
    relative = _space(tmp_path, {**CIFAR_SPACE, "dataset": "synthetic", "data_root": "rel/d"}, "rel.yaml")
    assert preflight(LaunchConfig(space=relative, storage=storage, name="b")).space.data_root == str(tmp_path / "rel/d")


def test_preflight_finds_the_files_or_refuses_in_one_line(tmp_path) -> None:
    from rank_search.search.sweep import preflight

    space = _space(tmp_path, CIFAR_SPACE)
    storage = str(tmp_path / "runs")
    with pytest.raises(RankSearchError, match=r"^cifar10 needs a data root containing cifar-10-batches-py/; "):
        preflight(LaunchConfig(space=space, storage=storage))
    (tmp_path / "data").mkdir()
    with pytest.raises(RankSearchError, match=r"^cifar10 files not found: expected .*data/cifar-10-batches-py/"
                                              r"data_batch_1 \(and 6 more\); pass --download"):
        preflight(LaunchConfig(space=space, storage=storage, data_root=str(tmp_path / "data")))
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"")  # looked for, not read (their md5 is checked on loading)
    assert preflight(LaunchConfig(space=space, storage=storage, data_root=str(tmp_path / "data"))).groups
    # with --download, only where to put them
    assert preflight(LaunchConfig(space=space, storage=storage, data_root=str(tmp_path / "new"), download=True))
    assert not Path(storage).exists() and not (tmp_path / "new").exists()


@pytest.mark.parametrize("kw, match", [({"data_root": ""}, "--data-root must name a folder, got ''"),
                                       ({"data_root": "gs://b/d"}, "--data-root must be a local folder"),
                                       ({"download": "yes"}, "--download must be true or false, got 'yes'")])
def test_bad_data_settings_are_refused(kw, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        LaunchConfig(space="demo", **kw)


def test_the_record_keeps_them_for_resume(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    path = str(tmp_path / "exp")
    write_sweep_record(path, LaunchConfig(space="demo", data_root="/data", download=True), {"name": "demo"})
    record = read_sweep_record(path)
    assert (record["launch"]["data_root"], record["launch"]["download"]) == ("/data", True)
    cfg = config_from_record(record, path=path)
    assert (cfg.data_root, cfg.download) == ("/data", True)
    for key in ("data_root", "download"):  # a record written before the flags: the space's root, no download
        del record["launch"][key]
    assert (config_from_record(record).data_root, config_from_record(record).download) == (None, False)
    record["launch"]["download"] = "yes"
    with pytest.raises(RankSearchError, match=r"launch.download must be bool, got 'yes'"):
        config_from_record(record, path=path)


def test_launch_downloads_once_before_ray(tmp_path, no_ray) -> None:
    from rank_search.search.sweep import launch

    root = str(tmp_path / "data")
    cfg = LaunchConfig(space=_space(tmp_path, CIFAR_SPACE), storage=str(tmp_path / "runs"), name="x",
                       data_root=root, download=True)
    with pytest.raises(RayStarted):
        launch(cfg)
    assert no_ray == [("fetch", "cifar10", root), "ray"]
    del no_ray[:]
    with pytest.raises(RankSearchError, match="cifar10 files not found"):  # without --download: refused, no Ray
        launch(LaunchConfig(space=cfg.space, storage=cfg.storage, name="x", data_root=root))
    assert no_ray == [] and not (tmp_path / "runs").exists()


def test_resume_fetches_again_where_the_launch_downloaded(tmp_path, no_ray) -> None:
    """A launch stopped before its first trial (its record, no Tune state): its resume downloads
    again (once, before Ray) where the launch had --download, and otherwise checks the files."""
    from rank_search.search.sweep import preflight, resume
    from rank_search.search.sweep_record import write_sweep_record

    root = str(tmp_path / "data")
    pre = preflight(LaunchConfig(space=_space(tmp_path, CIFAR_SPACE), storage=str(tmp_path / "runs"), name="early",
                                 data_root=root, download=True))
    write_sweep_record(pre.path, pre.cfg, pre.space.to_plain())
    with pytest.raises(RayStarted):
        resume(pre.path)
    assert no_ray == [("fetch", "cifar10", root), "ray"]
    del no_ray[:]
    pre = preflight(LaunchConfig(space=pre.cfg.space, storage=str(tmp_path / "runs"), name="plain", data_root=root,
                                 download=True))
    write_sweep_record(pre.path, dataclasses.replace(pre.cfg, download=False), pre.space.to_plain())
    with pytest.raises(RankSearchError, match=r"^cifar10 files not found: expected "):
        resume(pre.path)
    assert no_ray == []


def _run_records(path: Path) -> list[dict]:
    from analysis.loading import load_experiment

    exp = load_experiment(str(path))
    return [yaml.safe_load(Path(path, folder, ckpt, schema.RUN_FILE).read_text())["run"]
            for folder, ckpt in zip(exp.trials["folder"], exp.trials["checkpoint"])]


@pytest.mark.ray
def test_a_sweep_trains_on_the_root_and_status_json_reads_it(private_ray, tmp_path, monkeypatch, capsys) -> None:
    """A real 2-trial launch with a relative --data-root and --download (the synthetic set needs
    no files: nothing to fetch): the record, the dense reference and every trial carry the
    absolute root and no trial downloads; then `status --json` of the finished sweep."""
    from rank_search.cli.status import JSON_KEYS, SWEEP_STATES, TRIAL_KEYS, TRIAL_STATES

    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, SYNTHETIC_SPACE)
    code = main(["launch", "--space", space, "--num-samples", "2", "--data-root", "data", "--download",
                 "--storage", str(tmp_path / "runs"), "--name", "rooted"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "download: nothing to fetch, synthetic is read from no files" in err
    root, path = str(tmp_path / "data"), tmp_path / "runs" / "rooted"
    record = yaml.safe_load((path / schema.SWEEP_FILE).read_text())
    assert (record["launch"]["data_root"], record["launch"]["download"], record["space"]["data_root"]) == \
        (root, True, root)
    assert yaml.safe_load((path / schema.DENSE_RECORD_FILE).read_text())["run"]["data_root"] == root
    runs = _run_records(path)
    assert [(r["data_root"], r["download"]) for r in runs] == [(root, False)] * 2

    assert main(["status", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert captured.err == "" and tuple(out) == JSON_KEYS
    assert (out["experiment"], out["name"], out["space"], out["num_samples"]) == (str(path), "rooted", space, 2)
    assert out["state"] == "finished" and out["state"] in SWEEP_STATES and out["driver"] == "gone"
    assert tuple(out["counts"]) == TRIAL_STATES and out["counts"]["TERMINATED"] == 2 and out["resume"] is None
    for trial in out["trials"]:
        assert tuple(trial) == TRIAL_KEYS and trial["state"] == "TERMINATED" and trial["finished"]
        assert (trial["epoch"], trial["epochs"]) == (1, 1)
        assert trial["config"]["method"] == "posthoc" and "rank.all" in trial["config"]
        assert not any(k.startswith(schema.SPACE_PREFIX) for k in trial["config"])
        metrics = trial["metrics"]
        assert 0 <= metrics[schema.VAL_ACCURACY] <= 1 and 0 <= metrics[schema.TEST_ACCURACY] <= 1
        assert type(metrics[schema.COMPACT_MACS]) is int and metrics[schema.MACS_COMPRESSION] > 1
        assert trial["checkpoint"] and (path / trial["folder"] / trial["checkpoint"]).is_dir()
    assert out["front"] and out["knee"] in out["front"] and len(out["top"]) == 2
