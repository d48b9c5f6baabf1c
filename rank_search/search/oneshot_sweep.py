"""`launch --searcher oneshot` (issue 31): train once, search many, fine-tune the front.

After the dense reference (``reference.py``), a sweep with this searcher:
1. trains the ``nested`` method from the dense reference once, for ``nested_epochs`` (by default
   the model's ``nested_epochs_factor`` times the space's epochs) at ``nested_lr``, as a Ray task with a
   trial's resources; its weights and record go to the experiment folder (``nested.pt``,
   ``nested.yaml``);
2. runs the one-shot search on it (``search.oneshot``: ``ALLOCATIONS`` allocations, each
   evaluated once with ``nested.bn_images`` BatchNorm images) as a second task; every evaluated
   allocation goes to ``oneshot.csv``, its front marked;
3. makes the sweep's trials of at most ``--num-samples`` front points spread along it in log
   MACs compression (the front's dense end, no layer factorized, is the dense reference and no
   trial): each fine-tunes that truncation (``nested.weights``) for
   ``finetune_epochs(space)`` epochs at ``finetune_lr`` and reports what every trial reports.
Each step is read back from the folder when it is there, so a relaunch or `resume` never repeats
it. The two tasks' seconds are charged in ``dense.yaml`` (``oneshot_seconds``, with
``nested_seconds`` and ``oneshot_search_seconds``). The trials' configs are the define-by-run
values of ``OneShotTrials``: every trial is an enqueued point that names its front point.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import yaml

from .. import schema
from ..errors import RankSearchError
from ..storage import Location
from .progress import say
from .settings import LaunchConfig

# *our choice* (docs/nested.md): three times a trial's epochs where the model measured none
# (``models.nested_epochs_factor``: 4 for the CIFAR ResNets); on the LeNet-5 tuning tasks, at the
# model's rate (``nested_lr``), more epochs did not raise the front
NESTED_EPOCHS_FACTOR = 3
# *our choice*: the 16 uniform allocations and 16 others; 64 raised the tuning tasks' fronts by about
# 0.003 log HV at a third of the one-shot cost, which buys the third factor of epochs
ALLOCATIONS = 32  # each evaluated once: 36 to 64 of 64 lay within a screen's 0.02 margin, so it saved nothing
# *our choice* (docs/nested.md): a front point fine-tunes at a tenth of its nested model's rate; at
# the space's central rate LeNet-5's fine-tuned points fell far below the front they came from
FINETUNE_LR_SHARE = 0.1
POINT_KEY = "oneshot.point"  # the one parameter a one-shot trial has: its front point's index
_COLUMNS = ("point", "macs", "macs_compression", "val_accuracy", "val_loss", "bn_images", "front", "plan")


def nested_epochs(space, cfg: LaunchConfig) -> int:
    """The nested training's epochs: ``--nested-epochs``, else the space's times the factor measured
    for its model (``models.nested_epochs_factor``), else times ``NESTED_EPOCHS_FACTOR``."""
    from ..models import nested_epochs_factor

    if cfg.nested_epochs is not None:
        return cfg.nested_epochs
    return (nested_epochs_factor(space.model) or NESTED_EPOCHS_FACTOR) * space.epochs


def finetune_epochs(space) -> int:
    """A front point's fine-tuning: a third of the space's epochs, at least 1 (*our choice*: the
    measured runs fine-tuned 2 epochs after a 6-epoch dense reference)."""
    return max(1, round(space.epochs / 3))


def finetune_lr(space, record: dict) -> float:
    """A front point's fine-tuning rate: ``FINETUNE_LR_SHARE`` times the rate the nested model of
    ``record`` (its ``nested.yaml``) trained at; ``nested_lr(space)``'s where the record has none."""
    rate = ((record.get("run") or {}).get("settings") or {}).get("train.lr")
    return FINETUNE_LR_SHARE * float(rate if rate is not None else nested_lr(space))


def oneshot_scheme(space) -> str:
    """The scheme the nested model trains in: the one scheme the space's methods plan in, which
    ``nested`` must support; else a one-line error naming the rule and the schemes."""
    from ..methods import METHODS
    from .check import method_schemes

    supported = METHODS.get("nested").supported_schemes
    schemes = sorted({s for m, knobs in space.methods.items() for s in method_schemes(m, knobs)})
    if len(schemes) != 1 or schemes[0] not in supported:
        raise RankSearchError(f"--searcher oneshot trains the nested method in the space's scheme: the space's "
                              f"methods must plan in one scheme of {', '.join(supported)}; space {space.name!r} "
                              f"plans in {', '.join(schemes) or 'no scheme'}")
    return schemes[0]


def nested_knobs(space) -> dict[str, Any]:
    """The nested method's knobs: the space's ``nested`` method's, a searched one at its
    midpoint, else the defaults (``scheme`` is ``oneshot_scheme``'s)."""
    knobs = space.methods.get("nested", {})
    return {k: d.midpoint() for k, d in knobs.items() if k not in ("scheme", "weights")}


def nested_lr(space, cfg: LaunchConfig | None = None) -> float:
    """The nested training's learning rate: ``--nested-lr``, else the one measured for the space's
    model (``models.nested_lr``), else the space's central rate."""
    from ..models import nested_lr as measured
    from .reference import train_settings

    if cfg is not None and cfg.nested_lr is not None:
        return float(cfg.nested_lr)
    rate = measured(space.model)
    return float(rate if rate is not None else train_settings(space)["train.lr"])


def nested_settings(space, cfg: LaunchConfig | None = None) -> dict[str, Any]:
    """The nested training's settings: the space's central train and distillation settings (with
    ``distill.weight`` above 0 the dense reference teaches; off by default, docs/nested.md), at
    ``nested_lr``."""
    from .reference import train_settings

    return {**train_settings(space), "train.lr": nested_lr(space, cfg),
            **{f"distill.{k}": d.midpoint() for k, d in space.distill.items()}}


def check_oneshot(space, cfg: LaunchConfig):
    """Pre-flight of a one-shot sweep (before any folder or Ray): the space qualifies; returns the
    space as run: a budget-driven one reads no profile (the search allocates the ranks)."""
    import dataclasses

    from ..methods import create_method

    scheme = oneshot_scheme(space)
    create_method("nested", nested_knobs(space), scheme=scheme)  # its knobs build
    if space.rank_mode == "sensitivity" and space.allocations != ("uniform",):
        space = dataclasses.replace(space, allocations=("uniform",))
    return space


@dataclass(frozen=True)
class OneShotTrials:
    """The define-by-run function of a one-shot sweep: trial ``POINT_KEY = i`` gets ``configs[i]``.

    Attributes:
        configs: each front point's flat trial config (``search_spaces.TrialSpec.to_config``).
        epochs: the epochs each trial fine-tunes.
    """

    configs: tuple[dict, ...]
    epochs: int

    def __call__(self, trial: Any) -> dict[str, Any]:
        index = trial.suggest_categorical(POINT_KEY, list(range(len(self.configs))))
        return dict(self.configs[index])

    def points(self) -> list[dict[str, Any]]:
        """The points to enqueue: every front point once, in order."""
        return [{POINT_KEY: i} for i in range(len(self.configs))]


def spread(compressions: list[float], count: int) -> list[int]:
    """Indices of at most ``count`` of ``compressions``, spread evenly in log compression: both
    ends, then the point nearest each of ``count`` evenly spaced values; sorted."""
    if len(compressions) <= count:
        return list(range(len(compressions)))
    logs = [math.log(c) for c in compressions]
    low, high = min(logs), max(logs)
    chosen: list[int] = []
    for k in range(count):
        goal = low + (high - low) * (k / (count - 1) if count > 1 else 0.5)
        free = [i for i in range(len(logs)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(logs[i] - goal), i)))
    return sorted(chosen)


def prepare_oneshot(path: str, space, cfg: LaunchConfig, refs) -> OneShotTrials:
    """The one-shot sweep's trials (steps 1-3 of the module docstring), each step read back from
    the experiment folder ``path`` when it was done before. ``refs``: the sweep's ``References``."""
    import ray

    from .oneshot_tasks import nested_task, search_task
    from .reference import _get, _task_resources, train_settings

    loc = Location(path)
    scheme, knobs = oneshot_scheme(space), nested_knobs(space)
    threads = int(round(cfg.cpus_per_trial))
    resources = _task_resources(cfg)
    dense = ray.put(loc.read_bytes(schema.DENSE_WEIGHTS_FILE))
    settings = train_settings(space)
    epochs, run_settings = nested_epochs(space, cfg), nested_settings(space, cfg)
    if loc.is_file(schema.NESTED_WEIGHTS_FILE) and loc.is_file(schema.NESTED_RECORD_FILE):
        _check_trained(path, loc.read_mapping(schema.NESTED_RECORD_FILE), cfg)
        say("nested model found in the experiment folder: reused")
    else:
        say(f"training the nested model ({epochs} epochs at learning rate {run_settings['train.lr']:g}, {scheme} "
            f"scheme, from the dense reference) ...")
        out = _get(ray.remote(**resources)(nested_task).remote(space.to_plain(), dense, threads, scheme, knobs,
                                                                 run_settings, epochs))
        loc.write_bytes(schema.NESTED_WEIGHTS_FILE, out["weights"])
        loc.write_text(schema.NESTED_RECORD_FILE, yaml.safe_dump({**out["record"], "requested_trials": cfg.num_samples},
                                                                 sort_keys=False))
        say(f"nested model: {out['record']['seconds']:.1f}s")
    record = loc.read_mapping(schema.NESTED_RECORD_FILE)
    if loc.is_file(schema.ONESHOT_FILE) and "search" in record:
        say("one-shot search found in the experiment folder: reused")
    else:
        say(f"one-shot search: {ALLOCATIONS} allocations ...")
        nested = ray.put(loc.read_bytes(schema.NESTED_WEIGHTS_FILE))
        out = _get(ray.remote(**resources)(search_task).remote(space.to_plain(), dense, nested, threads, scheme,
                                                                 knobs, settings, ALLOCATIONS, cfg.seed))
        record = {**record, "search": out["record"]}
        loc.write_text(schema.NESTED_RECORD_FILE, yaml.safe_dump(record, sort_keys=False))
        _charge(loc, record)
        loc.write_text(schema.ONESHOT_FILE, _to_csv(out["rows"]))  # last: the search's mark of done
    _charge(loc, record)
    # the front's dense end (no layer factorized) is the dense reference itself, not a trial
    rows = [r for r in read_oneshot(path) if r["front"] and r["plan"].layers]
    if not rows:
        raise RankSearchError(f"the one-shot front in {path!r} holds no factorized point (only the dense model): "
                              f"nothing to fine-tune; see {schema.ONESHOT_FILE}")
    rows.sort(key=lambda r: r["macs_compression"])
    picked = [rows[i] for i in spread([r["macs_compression"] for r in rows], cfg.num_samples)]
    epochs, lr = finetune_epochs(space), finetune_lr(space, record)
    configs = tuple(point_trial(space, r["plan"], dense=refs.dense, nested=loc.address(schema.NESTED_WEIGHTS_FILE),
                                lr=lr).to_config() for r in picked)
    search = record["search"]
    say(f"one-shot front: {len(rows)} of {search['evaluated']} allocations ({search['seconds']:.1f}s); "
        f"{len(picked)} fine-tuned as trials, {epochs} epoch(s) each at learning rate {lr:g}, at MACs compression "
        + ", ".join(f"{r['macs_compression']:.2f}x" for r in picked))
    return OneShotTrials(configs, epochs)


def _check_trained(path: str, record: dict, cfg: LaunchConfig) -> None:
    """A nested model on disk is reused as trained; a ``--nested-epochs`` or ``--nested-lr`` asking
    otherwise is a one-line error (a setting not asked takes the trained value)."""
    trained = {"--nested-epochs": record.get("epochs"),
               "--nested-lr": (record.get("run") or {}).get("settings", {}).get("train.lr")}
    for flag, asked in (("--nested-epochs", cfg.nested_epochs), ("--nested-lr", cfg.nested_lr)):
        if asked is not None and asked != trained[flag]:
            raise RankSearchError(f"the nested model in {path!r} was trained with {flag} {trained[flag]}, this "
                                  f"launch asks for {asked}: relaunch with {flag} {trained[flag]}, or launch a new "
                                  f"experiment")


def point_trial(space, plan, *, dense: str | None, nested: str, lr: float):
    """The ``search_spaces.TrialSpec`` that fine-tunes front point ``plan`` (a ``PlanRanks``) of
    ``space``'s one-shot sweep: ``nested`` with ``nested.weights`` = ``nested`` (the address of
    ``nested.pt``) for ``finetune_epochs(space)`` epochs at rate ``lr`` (``finetune_lr``), the
    space's other central train settings."""
    from search_spaces import TrialSpec

    return TrialSpec(
        method="nested", model=space.model, dataset=space.dataset, epochs=finetune_epochs(space), seed=space.seed,
        knobs={**nested_knobs(space), "scheme": oneshot_scheme(space)},
        train={**{k: d.midpoint() for k, d in space.train.items()}, "lr": lr}, ranks=plan, rank_mode=space.rank_mode,
        grouping=space.grouping, space=space.name, data_root=space.data_root, dense=dense,
        latency_batch_size=space.latency_batch_size, nested=nested)


def _charge(loc: Location, record: dict) -> None:
    """``dense.yaml`` charged with the nested training and the search (their tasks' seconds)."""
    dense = loc.read_mapping(schema.DENSE_RECORD_FILE)
    nested = float(record.get("seconds", 0.0))
    search = float((record.get("search") or {}).get("seconds", 0.0))
    cost = {"nested_seconds": nested, "oneshot_search_seconds": search, "oneshot_seconds": nested + search}
    if dense and any(dense.get(k) != v for k, v in cost.items()):
        loc.write_text(schema.DENSE_RECORD_FILE, yaml.safe_dump({**dense, **cost}, sort_keys=False))


def _to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_oneshot(path: str) -> list[dict[str, Any]]:
    """The rows of ``oneshot.csv`` in ``path``, typed (``plan`` a ``search_spaces.PlanRanks``);
    a damaged file is one line."""
    from search_spaces import PLAN_PREFIX, PlanRanks

    text = Location(path).read_text(schema.ONESHOT_FILE)
    rows, i = [], 1
    try:
        for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            entries = dict(item.split("=", 1) for item in row["plan"].split(";") if item)
            plan = PlanRanks.from_config({PLAN_PREFIX + k: v for k, v in entries.items()}) or PlanRanks({})
            rows.append({"point": int(row["point"]), "macs": int(row["macs"]),
                         "macs_compression": float(row["macs_compression"]),
                         "val_accuracy": float(row["val_accuracy"]), "val_loss": float(row["val_loss"]),
                         "bn_images": int(row["bn_images"]), "front": row["front"] == "1", "plan": plan})
    except (KeyError, TypeError, ValueError, AttributeError, RankSearchError) as exc:
        raise RankSearchError(f"{schema.ONESHOT_FILE} in {path!r} is damaged near line {i}: {exc}; remove it and "
                              "resume to search again") from None
    if not any(r["front"] for r in rows):
        raise RankSearchError(f"{schema.ONESHOT_FILE} in {path!r} marks no front point; remove it and resume to "
                              "search again")
    return rows
