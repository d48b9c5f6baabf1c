"""What a sweep measures once, before its trials: the dense reference (the space's model trained
dense, or the user's ``--dense`` weights) and, for a budget-driven space, the layer sensitivity
profile measured on it. Both live in the experiment folder (``dense.pt``, ``dense.yaml``,
``sensitivity.csv``, ``sensitivity.yaml``), on the sweep's storage, and are reused by `resume`
and by every trial (nothing is recomputed).

The work runs as Ray tasks with a trial's resources, so on a cluster it lands on nodes that
could run a trial (GPU nodes for GPU trials): one trains (or loads) the dense reference, then the
profile's points are dealt over as many tasks as trials may run at once (``profile_parts``), since
no trial starts before the profile is there; the parts merge into exactly the profile one task
would measure (``rank_search.profile.merge_profiles``). While the dense reference trains, the
slots the other parts will use are idle, so they import the profile's modules and load the data
meanwhile (``_warm_task``), which shortens the profile's wall time. The profile measures in
``channels_last`` when the space trains so.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import yaml

from .. import schema
from ..errors import RankSearchError
from ..storage import Location
from .progress import say
from .settings import LaunchConfig


@dataclass(frozen=True)
class References:
    dense: str | None  # path or URI of dense.pt
    profile: str | None  # folder (path or URI) holding the profile
    accuracy: float | None = None  # the dense reference's validation accuracy

    def constants(self) -> dict[str, Any]:
        """The trial-config constants that point every trial at them."""
        from search_spaces import reference_constants

        return reference_constants(dense=self.dense, profile=self.profile)


def needs_dense(space) -> bool:
    """A method of the space starts from trained weights, a trial may distill (``distill.weight``
    above 0: the reference teaches), or the space is budget-driven (its
    profile, when a trial may use the sensitivity allocation, is measured on the dense reference;
    a uniform-only space keeps the reference for the report's accuracy floor)."""
    from ..methods import METHODS

    if space.rank_mode == "sensitivity":
        return True
    weight = space.distill.get("weight")  # distillation: the reference is the teacher
    if weight is not None:
        values = [weight.high] if weight.kind in ("float", "int") else \
            [weight.value] if weight.kind == "fixed" else list(weight.choices)
        if any(isinstance(v, (int, float)) and v > 0 for v in values):
            return True
    for method, knobs in space.methods.items():
        dim = knobs.get("init")
        values = ([dim.value] if dim.kind == "fixed" else list(dim.choices)) if dim is not None else \
            [getattr(METHODS.get(method).Knobs(), "init", "scratch")]
        if "dense" in values:
            return True
    return False


def train_settings(space, *, searched_only: bool = False) -> dict[str, Any]:
    """The space's train settings at one value each (fixed ones as given, ranges at their
    midpoint); ``searched_only``: the searched ones alone (the sampler's parameters)."""
    return {f"train.{k}": d.midpoint() for k, d in space.train.items() if not (searched_only and d.kind == "fixed")}


def _reference_task(space_plain: dict, dense_bytes: bytes | None, threads: int) -> dict[str, Any]:
    """Train (or load) the dense reference; runs in a Ray worker. Returns its record, its weights
    and the training batch size of the data it was evaluated on (the profile's loaders use it)."""
    import torch

    from search_spaces import space_from_mapping

    from ..data import load_dataset
    from ..models import create_model_for
    from ..run import RunSpec, train
    from ..run.prepare import accuracy_on_test
    from ..weights import load_weights

    torch.set_num_threads(max(1, threads))
    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    out: dict[str, Any] = {}
    start = time.perf_counter()
    if dense_bytes is None:
        spec = RunSpec(model=space.model, dataset=space.dataset, method="full", ranks=None, epochs=space.epochs,
                       seed=space.seed, data_root=space.data_root, settings=train_settings(space))
        result = train(spec)
        model, data = result.trainer.model, result.trainer.data
        out["record"] = {"source": "trained", "run": spec.to_dict(),
                         **{k: result.metrics[k] for k in (schema.VAL_ACCURACY, schema.TEST_ACCURACY)}}
    else:
        import tempfile

        data = load_dataset(space.dataset, data_root=space.data_root, seed=space.seed)
        model = create_model_for(space.model, data)
        with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
            fh.write(dense_bytes)
            fh.flush()
            load_weights(model, fh.name, what="--dense")
        from ..engine import evaluate

        val_acc, _ = evaluate(model, data.val, torch.device("cpu"))
        out["record"] = {"source": "given", schema.VAL_ACCURACY: val_acc,
                         schema.TEST_ACCURACY: evaluate(model, data.test, torch.device("cpu"))[0]}
    out["record"]["seconds"] = time.perf_counter() - start
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    out["weights"] = buffer.getvalue()
    out["batch_size"] = int(data.train.batch_size)
    return out


def _profile_task(space_plain: dict, weights: bytes, batch_size: int, threads: int,
                  tasks: list[tuple[str, str, float]]) -> tuple[str, dict]:
    """One part of the profile (``tasks``: its (layer, scheme, ratio) points) of the dense weights, on the
    loaders the reference was evaluated on; runs in a Ray worker. Returns (CSV text, meta)."""
    import torch

    from search_spaces import space_from_mapping

    from ..data import load_dataset
    from ..models import create_model_for
    from ..profile import measure_profile

    torch.set_num_threads(max(1, threads))
    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    data = load_dataset(space.dataset, data_root=space.data_root, seed=space.seed, batch_size=batch_size)
    model = create_model_for(space.model, data)
    model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    prof = measure_profile(model, data, schemes=_space_schemes(space), proxies=_proxies(space.proxy),
                           meta={"model": space.model, "dataset": space.dataset}, tasks=[tuple(t) for t in tasks],
                           channels_last=bool(train_settings(space).get("train.channels_last", False)))
    return prof.to_csv(), dict(prof.meta)


def _latency_task(space_plain: dict, threads: int, device: str) -> tuple[str, dict]:
    """The space's layer latency table (``ranks.budget: latency``), timed in a Ray worker with a
    trial's resources, so on the kind of node and thread count a trial measures its own speed-up."""
    import torch

    from search_spaces import space_from_mapping

    from ..data import dataset_info
    from ..layer_latency import measure_layer_latency
    from ..models import create_model_for

    torch.set_num_threads(max(1, threads))
    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    info = dataset_info(space.dataset, data_root=space.data_root)
    model = create_model_for(space.model, info).eval()  # speed does not depend on the weights
    table = measure_layer_latency(model, (info.in_channels, info.image_size, info.image_size), _space_schemes(space),
                                  batch_size=space.latency_batch_size, device=device, threads=max(1, threads))
    return table.to_csv(), dict(table.meta)


def _prepare_layer_latency(path: str, space, cfg: LaunchConfig, resources: dict) -> None:
    """Under ``ranks.budget: latency``: the layer latency table in the experiment folder, timed
    once (kept on `resume`); says the predicted reachable speed-up per scheme."""
    import ray

    from ..allocation import max_compression
    from ..tables import load_layer_latency, save_layer_latency
    from ..data import dataset_info
    from ..tables import LatencyTable
    from ..models import create_model_for

    loc = Location(path)
    if loc.is_file(schema.LAYER_LATENCY_FILE) and loc.is_file(schema.LAYER_LATENCY_META_FILE):
        table = load_layer_latency(path)
    else:
        say(f"timing every eligible layer at batch {space.latency_batch_size} (the latency budget's costs) ...")
        device = "cuda" if cfg.gpus_per_trial > 0 else "cpu"
        text, meta = _get(ray.remote(**resources)(_latency_task).remote(space.to_plain(), int(round(cfg.cpus_per_trial)),
                                                                         device))
        table = LatencyTable.from_csv(text, meta)
        save_layer_latency(path, table)
        record = loc.read_mapping(schema.DENSE_RECORD_FILE)
        if record:
            loc.write_text(schema.DENSE_RECORD_FILE, yaml.safe_dump({**record, "latency_seconds": float(meta["seconds"])},
                                                                     sort_keys=False))
    info = dataset_info(space.dataset, data_root=space.data_root)
    model = create_model_for(space.model, info)
    shape = (info.in_channels, info.image_size, info.image_size)
    reach = {s: max_compression(model, shape, scheme=s, latency=table) for s in _space_schemes(space)}
    high = space.target_bounds()[1]
    say("layer latency: predicted speed-up at most " + ", ".join(f"{v:.2f}x ({s})" for s, v in reach.items())
        + (f"; targets above it (range up to {high:g}x) get the fastest allocation" if min(reach.values()) < high else ""))


def _warm_task(space_plain: dict) -> None:
    """Import what a profile task needs and load its data set (cached per worker process), in a
    worker the dense reference leaves idle; runs in a Ray worker."""
    from search_spaces import space_from_mapping

    from ..data import load_dataset
    from ..profile import measure_profile  # noqa: F401 (the import is the work)

    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    load_dataset(space.dataset, data_root=space.data_root, seed=space.seed)


def profile_parts(cfg: LaunchConfig, tasks: int, cluster: dict[str, float]) -> int:
    """How many Ray tasks measure a profile of ``tasks`` (layer, scheme, ratio) points: as many as
    trials could run at once (``--max-concurrent``, else the ``cluster``'s CPUs, and GPUs for GPU
    trials, per trial), at most one per point."""
    if cfg.max_concurrent is not None:
        slots = cfg.max_concurrent
    else:
        slots = int(cluster.get("CPU", 1.0) // cfg.cpus_per_trial)
        if cfg.gpus_per_trial > 0:
            slots = min(slots, int(cluster.get("GPU", 0.0) // cfg.gpus_per_trial))
    return max(1, min(slots, tasks))


def _profile_plan(space, cfg: LaunchConfig) -> tuple[list, list, int]:
    """The profile's (layer, scheme) pairs in model order, its points, and how many tasks share them."""
    import ray

    from ..data import dataset_info
    from ..models import create_model_for
    from ..profile import profile_points, profile_tasks

    model = create_model_for(space.model, dataset_info(space.dataset, data_root=space.data_root))
    order = profile_tasks(model, _space_schemes(space))
    points = profile_points(order)
    return order, points, profile_parts(cfg, len(points), ray.cluster_resources())


def _measure_profile_parts(space, cfg: LaunchConfig, resources: dict, weights: bytes, batch_size: int, plan):
    """The sweep's profile, measured in parallel parts and merged (see the module docstring)."""
    import ray

    from ..tables import Profile
    from ..profile import merge_profiles

    order, points, parts = plan
    say(f"sensitivity profile: {len({name for name, _ in order})} layer(s), {len(order)} (layer, scheme) pair(s), "
        f"{len(points)} points, in {parts} parallel task(s) ...")
    task = ray.remote(**resources)(_profile_task)
    ref = ray.put(weights)
    start = time.perf_counter()
    futures = [task.remote(space.to_plain(), ref, batch_size, int(round(cfg.cpus_per_trial)),
                           [list(t) for t in points[k::parts]]) for k in range(parts)]
    results = _get(futures)
    measured = [Profile.from_csv(text, meta) for text, meta in results]
    return merge_profiles(measured, order, time.perf_counter() - start)


def _get(futures):
    """``ray.get``, with a rank-search error raised in a worker re-raised as itself."""
    import ray

    try:
        return ray.get(futures)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), RankSearchError) else None
        if cause is not None:
            raise RankSearchError(str(cause)) from None
        raise


def _proxies(proxy: str) -> tuple[str, ...]:
    """The profile columns a proxy needs (energy needs no evaluation at all)."""
    return ("energy",) if proxy == "energy" else (proxy, "energy")


def _space_schemes(space) -> list[str]:
    """Every scheme the space's planned methods can use (what the profile must cover)."""
    from .check import method_schemes

    return sorted({s for m, knobs in space.methods.items() for s in method_schemes(m, knobs)})


def check_dense_weights(space, path: str) -> None:
    """Pre-flight for ``--dense``: the file loads into the space's model (before any folder or Ray)."""
    from ..data import dataset_info
    from ..models import create_model_for
    from ..weights import load_weights

    load_weights(create_model_for(space.model, dataset_info(space.dataset, data_root=space.data_root)), path,
                 what="--dense")


def check_given_profile(space, folder: str) -> None:
    """Pre-flight for ``--profile``: a budget-driven space, and a profile of its model and data set
    with rows for every eligible layer in every scheme the space's methods use, under its proxy."""
    from ..tables import load_profile
    from ..data import dataset_info
    from ..models import create_model_for
    from ..plan import eligible_layers, scheme_for

    if space.rank_mode != "sensitivity":
        raise RankSearchError(f"--profile is used by a budget-driven space only (ranks.allocation: sensitivity); "
                              f"space {space.name!r} has {space.rank_mode!r} ranks")
    from .check import check_profile_values

    profile = load_profile(folder)
    check_profile_values(profile, folder, proxy=space.proxy)
    for key in ("model", "dataset"):
        have, want = profile.meta.get(key), getattr(space, key)
        if have is not None and have != want:
            raise RankSearchError(f"--profile {folder!r} was measured on {key} {have!r}, but space "
                                  f"{space.name!r} uses {want!r}")
    model = create_model_for(space.model, dataset_info(space.dataset, data_root=space.data_root))
    for name, layer in eligible_layers(model).items():
        for scheme in _space_schemes(space):
            try:
                profile.curve(name, scheme_for(layer, scheme), space.proxy)
            except RankSearchError as exc:
                raise RankSearchError(f"--profile {folder!r} does not fit space {space.name!r}: {exc}") from None


def prepare_references(path: str, space, cfg: LaunchConfig) -> References:
    """The sweep's dense reference and profile (and, under ``ranks.budget: latency``, the layer
    latency table): read from the experiment folder when there (a relaunch of the step), else
    computed once and written there."""
    refs = _prepare_dense_and_profile(path, space, cfg)
    if space.rank_mode == "sensitivity" and space.budget == "latency":
        _prepare_layer_latency(path, space, cfg, _task_resources(cfg))
    return refs


def _task_resources(cfg: LaunchConfig) -> dict:
    """A trial's resources, for the Ray tasks measuring what the trials share."""
    resources = {"num_cpus": cfg.cpus_per_trial, "num_gpus": cfg.gpus_per_trial}
    if cfg.resources:
        resources["resources"] = dict(cfg.resources)
    return resources


def _prepare_dense_and_profile(path: str, space, cfg: LaunchConfig) -> References:
    loc = Location(path)
    profile_needed = space.needs_profile or (cfg.profile is not None and space.rank_mode == "sensitivity")
    # the trials read the profile, or the layer latency table timed into the same folder
    folder = path if profile_needed or (space.rank_mode == "sensitivity" and space.budget == "latency") else None
    if not (needs_dense(space) or cfg.dense or cfg.searcher == "oneshot"):  # oneshot: the nested model's start
        return References(None, None)
    dense_uri = loc.address(schema.DENSE_WEIGHTS_FILE)
    have_dense = loc.is_file(schema.DENSE_WEIGHTS_FILE)
    have_profile = loc.is_file(schema.PROFILE_FILE) and loc.is_file(schema.PROFILE_META_FILE)
    if have_dense and (have_profile or not profile_needed):
        say("dense reference and profile found in the experiment folder: reused")
        return References(dense_uri, folder, _recorded_accuracy(loc))
    import ray

    given = None
    if cfg.dense:
        with open(cfg.dense, "rb") as fh:
            given = fh.read()
    what = ("loading the given dense weights" if given else f"training the dense reference ({space.epochs} epochs)")
    measure = profile_needed and not cfg.profile  # a given profile is copied, not measured
    say(f"{what}{' and measuring the sensitivity profile' if measure else ''} ...")
    resources = _task_resources(cfg)
    task = ray.remote(**resources)(_reference_task)
    start = time.perf_counter()
    plan = _profile_plan(space, cfg) if measure else None
    future = task.remote(space.to_plain(), given, int(round(cfg.cpus_per_trial)))
    # the profile's other parts would start in cold workers (imports, data), and the slots they
    # will use are idle while the dense reference trains: warm them meanwhile
    spare = plan[2] - 1 if plan else 0  # the profile's parts beyond the dense reference's worker
    warm = [ray.remote(**resources)(_warm_task).remote(space.to_plain()) for _ in range(spare)]
    out = _get(future)
    _get(warm)
    if measure:
        out["profile"] = _measure_profile_parts(space, cfg, resources, out["weights"], out["batch_size"], plan)
    loc.write_bytes(schema.DENSE_WEIGHTS_FILE, out["weights"])
    record = {**out["record"], "seconds_total": time.perf_counter() - start}
    if profile_needed:
        from ..tables import load_profile, save_profile

        if measure:
            save_profile(path, out["profile"])
            # wall time, and the parts' summed time (the CPU or GPU time the profile took)
            record["profile_seconds"] = float(out["profile"].meta["seconds"])
            record["profile_task_seconds"] = float(out["profile"].meta["task_seconds"])
        else:  # the user's profile, copied into the experiment (resume and every trial read it there)
            save_profile(path, load_profile(cfg.profile))
            record["profile"] = f"given: {cfg.profile}"
    loc.write_text(schema.DENSE_RECORD_FILE, yaml.safe_dump(record, sort_keys=False))
    say(f"dense reference: val_acc {record[schema.VAL_ACCURACY]:.4f} "
        f"({record['seconds_total']:.1f}s{', profile included' if measure else ', profile given' if profile_needed else ''})")
    return References(dense_uri, folder, float(record[schema.VAL_ACCURACY]))


def _recorded_accuracy(loc: Location) -> float | None:
    """``dense.yaml``'s validation accuracy; None when it is missing, unreadable or not a number."""
    value = loc.read_mapping(schema.DENSE_RECORD_FILE).get(schema.VAL_ACCURACY)
    return float(value) if schema.is_number(value) else None
