"""Check a search space against the registries before a sweep: every method, knob value,
train setting and scheme must build (data files are not needed for this); and the data set's
files, where its trials will read them (``--download`` fetches them first, once)."""
from __future__ import annotations

from search_spaces import Dim, SearchSpace

from ..overrides import replace_validated
from ..data import PRESENCE_CHECKS, check_data, dataset_info, fetch_data
from ..engine import DistillConfig, TrainConfig
from ..errors import RankSearchError
from ..methods import METHODS, create_method
from ..models import create_model_for
from ..plan import build_plan
from ..groups import group_names
from .progress import say


def _probe_values(dim: Dim) -> list:
    if dim.kind == "fixed":
        return [dim.value]
    if dim.kind == "categorical":
        return list(dim.choices)
    return [int(dim.low), int(dim.high)] if dim.kind == "int" else [dim.low, dim.high]


def check_space(space: SearchSpace) -> list[str]:
    """Validate ``space``; return its rank-group names. Raises ``RankSearchError`` naming the problem."""
    info = dataset_info(space.dataset, data_root=space.data_root)
    model = create_model_for(space.model, info)
    for key, dim in space.train.items():
        for value in _probe_values(dim):
            replace_validated(TrainConfig(), {key: value}, prefix="train.")
    for key, dim in space.distill.items():
        for value in _probe_values(dim):
            replace_validated(DistillConfig(), {key: value}, prefix="distill.")
    ratio = _probe_values(space.ratio)
    for method, knobs in space.methods.items():
        cls = METHODS.get(method)
        schemes = _probe_values(knobs["scheme"]) if "scheme" in knobs else [None]
        for knob, dim in knobs.items():
            if knob == "scheme":
                continue
            for value in _probe_values(dim):
                create_method(method, {knob: value})
        for scheme in schemes:
            m = create_method(method, scheme=scheme)
            if cls.uses_plan:
                for r in ratio:
                    build_plan(model, f"ratio:{float(r)}", scheme=m.scheme)
    _check_epoch_budget(space)
    if space.rank_mode == "sensitivity":
        if space.budget == "macs":  # a latency target's reach is known once the layers are timed
            _check_targets(space, model, (info.in_channels, info.image_size, info.image_size))
        return []
    groups = group_names(model, space.grouping)
    if not groups and any(METHODS.get(m).uses_plan for m in space.methods):
        raise RankSearchError(f"model {space.model!r} has no eligible layers to search ranks for")
    return groups


def method_schemes(method: str, knobs) -> list[str]:
    """The schemes ``method`` may plan with under the space's ``knobs`` (none without a plan)."""
    cls = METHODS.get(method)
    if not cls.uses_plan:
        return []
    dim = knobs.get("scheme")
    if dim is None:
        return [cls.default_scheme]
    return [dim.value] if dim.kind == "fixed" else list(dim.choices)


def _check_targets(space: SearchSpace, model, input_shape) -> None:
    """Every scheme of the space can reach the top of its target range."""
    from ..allocation import max_compression

    high = space.target_bounds()[1]
    for method, knobs in space.methods.items():
        for scheme in method_schemes(method, knobs):
            reachable = max_compression(model, input_shape, scheme=scheme)
            if reachable < high:
                raise RankSearchError(
                    f"space {space.name!r}: ranks.target reaches {high:g}x MACs compression, but {space.model} in "
                    f"the {scheme} scheme (method {method}) reaches at most {reachable:.2f}x (every eligible layer "
                    f"at rank 1); lower the target range")


def _check_epoch_budget(space: SearchSpace) -> None:
    """A method that trains dense first and then fine-tunes (``finetune_epochs``, posthoc) needs
    more epochs than it fine-tunes when it starts from scratch; from the dense reference it
    fine-tunes every epoch, so any budget works."""
    for method, knobs in space.methods.items():
        default = METHODS.get(method).Knobs()
        if not hasattr(default, "finetune_epochs"):
            continue
        inits = _probe_values(knobs["init"]) if "init" in knobs else [getattr(default, "init", "scratch")]
        if "scratch" not in inits:
            continue
        finetune = max(_probe_values(knobs["finetune_epochs"]) if "finetune_epochs" in knobs
                       else [default.finetune_epochs])
        if finetune >= space.epochs:
            raise RankSearchError(
                f"space {space.name!r}: {method} from scratch trains dense for epochs - finetune_epochs, so "
                f"epochs must be > {method}.finetune_epochs ({finetune}), got {space.epochs}; raise --epochs, "
                f"lower {method}.finetune_epochs or start it from the dense reference ({method}.init: dense)")


# The profile columns an allocation reads, by proxy (tables.Profile.cost), besides ratio and rank.
_PROXY_COLUMNS = {"energy": ("energy",), "bn": ("val_loss",), "finetune": ("ft_val_loss",)}
_PROXY_META = {"bn": "dense_val_loss", "finetune": "dense_ft_val_loss"}


def check_profile_values(profile, folder: str, *, proxy: str) -> None:
    """Every row of a loaded sensitivity profile is whole (a cut ``sensitivity.csv`` leaves its
    last row short) and holds finite numbers where the allocation under ``proxy`` reads them, and
    the dense baseline it is measured against is finite; else one ``RankSearchError`` line."""
    import math

    columns = ("ratio", *_PROXY_COLUMNS.get(proxy, ()))
    for i, row in enumerate(profile.rows, start=2):  # line numbers of the CSV (1 is the header)
        if not row.get("layer") or not row.get("scheme") or not row.get("rank"):
            raise RankSearchError(f"profile {folder!r}: sensitivity.csv line {i} is incomplete (no layer, scheme or "
                                  "rank): a damaged or cut file; measure it again")
        for col in columns:
            value = row.get(col)
            if not isinstance(value, float) or not math.isfinite(value):
                raise RankSearchError(f"profile {folder!r}: sensitivity.csv line {i} (layer {row['layer']!r}) has "
                                      f"{col} {value!r}, not a finite number: a damaged or cut file; measure it again")
    base = _PROXY_META.get(proxy)
    if base is not None:
        value = profile.meta.get(base)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RankSearchError(f"profile {folder!r}: sensitivity.yaml has {base} {value!r}, not a finite number")


def download_data(dataset: str, data_root: str | None) -> None:
    """``--download``: fetch the data set once, in this process, before Ray starts (its trials
    and the dense reference only read it)."""
    if dataset not in PRESENCE_CHECKS:
        say(f"download: nothing to fetch, {dataset} is read from no files")
        return
    say(f"download: {dataset} into {data_root} (where its files are missing or damaged)")
    fetch_data(dataset, data_root=data_root)


def check_recorded_data(record: dict, *, download: bool) -> None:
    """Before `resume` starts Ray: the data set of the space as run (the sweep record's) is where
    its trials read it, fetched again where the launch had ``--download``. A record without a
    space passes (that is refused where the space is needed)."""
    plain = record.get("space")
    if not isinstance(plain, dict) or not isinstance(plain.get("dataset"), str):
        return
    if download:
        download_data(plain["dataset"], plain.get("data_root"))
    else:
        check_data(plain["dataset"], data_root=plain.get("data_root"))
