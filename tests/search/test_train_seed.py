"""`launch --train-seed`: the training seed of every trial, apart from the searcher's seed;
recorded in the sweep record, so a resume trains with it too."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main
from rank_search.search import LaunchConfig

# factorized only: no dense reference to train, one epoch per trial
SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 1, "seed": 3,
    "methods": {"factorized": {}},
    "ranks": {"grouping": "uniform", "ratio": {"float": [0.2, 0.8]}},
}


@pytest.fixture()
def space_file(tmp_path: Path) -> str:
    path = tmp_path / "seeded.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return str(path)


def test_the_flag_sets_the_training_seed_not_the_searchers(space_file) -> None:
    from rank_search.cli import build_parser

    args = build_parser().parse_args(["launch", "--space", space_file, "--train-seed", "7", "--searcher-seed", "2"])
    assert (args.train_seed, args.seed) == (7, 2)
    args = build_parser().parse_args(["launch", "--space", space_file])
    assert args.train_seed is None  # the space's seed


def test_preflight_trains_every_trial_with_it(space_file, tmp_path) -> None:
    from rank_search.search.sweep import preflight

    storage = str(tmp_path / "runs")
    assert preflight(LaunchConfig(space=space_file, storage=storage, name="a")).space.seed == 3
    pre = preflight(LaunchConfig(space=space_file, storage=storage, name="a", train_seed=7, seed=5))
    assert (pre.space.seed, pre.cfg.train_seed, pre.cfg.seed) == (7, 7, 5)
    assert not Path(storage).exists()


@pytest.mark.parametrize("value", [-1, True])
def test_a_bad_train_seed_is_refused(value) -> None:
    with pytest.raises(ValueError, match=r"--train-seed must be an integer >= 0, got "):
        LaunchConfig(space="demo", train_seed=value)


def test_a_negative_train_seed_is_one_line_exit_2_before_ray(space_file, tmp_path, capsys) -> None:
    import ray

    code = main(["launch", "--space", space_file, "--train-seed", "-1", "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--train-seed must be an integer >= 0, got -1" in err[0], err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_the_record_keeps_it_for_resume(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    path = str(tmp_path / "exp")
    write_sweep_record(path, LaunchConfig(space="demo", train_seed=7, seed=5), {"name": "demo"})
    cfg = config_from_record(read_sweep_record(path), path=path)
    assert (cfg.train_seed, cfg.seed) == (7, 5)
    old = read_sweep_record(path)
    del old["launch"]["train_seed"]  # a record written before the flag existed: the space's seed
    assert config_from_record(old).train_seed is None


def _trial_seeds(path: str) -> list[int]:
    """The training seed in each trial's final run record (what `export` hands to `train`)."""
    from analysis.loading import load_experiment

    exp = load_experiment(path)
    seeds = []
    for folder, ckpt in zip(exp.trials["folder"], exp.trials["checkpoint"]):
        run = yaml.safe_load(Path(path, folder, ckpt, schema.RUN_FILE).read_text())["run"]
        seeds.append(run["seed"])
    return seeds


@pytest.mark.ray
def test_launch_trains_every_trial_with_the_train_seed(private_ray, space_file, tmp_path, capsys) -> None:
    code = main(["launch", "--space", space_file, "--num-samples", "1", "--train-seed", "7", "--searcher-seed", "2",
                 "--storage", str(tmp_path), "--name", "seeded"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "training seed 7, searcher " in captured.err and " (seed 2), scheduler" in captured.err
    path = str(tmp_path / "seeded")
    record = yaml.safe_load(Path(path, schema.SWEEP_FILE).read_text())
    assert (record["launch"]["train_seed"], record["launch"]["seed"], record["space"]["seed"]) == (7, 2, 7)
    assert _trial_seeds(path) == [7]


@pytest.mark.ray
def test_resume_trains_with_the_recorded_train_seed(private_ray, space_file, tmp_path) -> None:
    """A launch stopped before its first trial (its record written, no Tune state): the resume
    starts it from the record alone, and its trials still train with the launch's seed."""
    from rank_search.search.sweep import preflight, resume
    from rank_search.search.sweep_record import write_sweep_record

    pre = preflight(LaunchConfig(space=space_file, num_samples=1, storage=str(tmp_path), name="early", train_seed=7))
    write_sweep_record(pre.path, pre.cfg, pre.space.to_plain())
    out = resume(pre.path)
    assert out.complete and out.counts == {"TERMINATED": 1}, out
    assert _trial_seeds(pre.path) == [7]
