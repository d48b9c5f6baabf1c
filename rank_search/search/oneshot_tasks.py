"""The two Ray tasks of a one-shot sweep (``oneshot_sweep``), each run in a worker with a trial's
resources: ``nested_task`` trains the nested model from the dense weights, ``search_task`` runs
the one-shot search (``search.oneshot``) on it. Both take and return plain values and bytes, so a
task lands on any node; the driver writes what they return to the experiment folder.
"""
from __future__ import annotations

import io
import time
from typing import Any

from .. import schema
from ..errors import RankSearchError

# the nested run's plan of record (its per-epoch metrics); the search reads every truncation
NESTED_RANKS = "ratio:0.25"


def nested_run(space, scheme: str, knobs: dict, settings: dict, epochs: int, dense: str):
    """The ``RunSpec`` of ``space``'s nested training (``settings``: ``train.*`` and ``distill.*``
    values; ``knobs``: the nested method's, which win over a ``nested.*`` key of ``settings``).
    The dense weights file ``dense`` is its start (with ``nested.init: dense``, the default) and
    its teacher (where ``settings`` distill)."""
    from ..overrides import split_prefixed
    from ..run import RunSpec
    from .trial import distilled

    init = dense if knobs.get("init", "dense") == "dense" else None
    teacher = dense if distilled(split_prefixed(settings, "distill")) else None
    return RunSpec(model=space.model, dataset=space.dataset, method="nested", ranks=NESTED_RANKS, scheme=scheme,
                   epochs=epochs, seed=space.seed, data_root=space.data_root,
                   settings={**settings, **{f"nested.{k}": v for k, v in knobs.items()}}, init=init, teacher=teacher)


def nested_model(space, settings: dict, scheme: str, knobs: dict, *, dense_state: dict | None = None):
    """(the space's nested model, its nested weights not loaded yet; the search's data: the
    space's seed and training batch size, so BatchNorm re-estimation sees the same batches; the
    nested method). The one recipe of ``search_task`` and ``export --oneshot``. ``dense_state``:
    dense weights loaded before nesting (else the model's initial ones)."""
    from ..data import load_dataset
    from ..methods import create_method
    from ..methods._nested_model import nest
    from ..models import create_model_for
    from ..overrides import split_prefixed

    batch = split_prefixed(settings, "train").get("batch_size")
    data = load_dataset(space.dataset, data_root=space.data_root, seed=space.seed,
                        **({"batch_size": int(batch)} if batch else {}))
    dense = create_model_for(space.model, data)
    if dense_state is not None:
        dense.load_state_dict(dense_state)
    method = create_method("nested", knobs, ranks=NESTED_RANKS, scheme=scheme)
    return nest(dense, method.nested_schemes(dense, method.resolve_plan(dense))), data, method


def nested_task(space_plain: dict, dense: bytes, threads: int, scheme: str, knobs: dict, settings: dict,
                 epochs: int) -> dict[str, Any]:
    """Train the nested model from the dense weights (with ``nested.init: dense``; they teach it
    where ``settings`` distill); runs in a Ray worker. Returns its weights (state_dict bytes) and
    record (its run, compact model of record's accuracies, seconds)."""
    import tempfile

    import torch
    from search_spaces import space_from_mapping

    from ..engine import DivergedError
    from ..run import train

    torch.set_num_threads(max(1, threads))
    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
        fh.write(dense)
        fh.flush()
        spec = nested_run(space, scheme, knobs, settings, epochs, fh.name)
        try:
            result = train(spec)
        except DivergedError as exc:
            raise RankSearchError(f"the nested model's training diverged: {exc}") from None
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in result.trainer.model.state_dict().items()}, buffer)
    run = {**spec.to_dict(), **{k: schema.DENSE_WEIGHTS_FILE for k in ("init", "teacher") if getattr(spec, k)}}
    record = {"run": run, "epochs": epochs, "scheme": scheme,
              **{k: float(result.metrics[k]) for k in (schema.VAL_ACCURACY, schema.TEST_ACCURACY)},
              "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    return {"weights": buffer.getvalue(), "record": record}


def search_task(space_plain: dict, dense: bytes, nested: bytes, threads: int, scheme: str, knobs: dict,
                 settings: dict, count: int, seed: int) -> dict[str, Any]:
    """The one-shot search on the nested weights, each allocation evaluated once with
    ``nested.bn_images``; runs in a Ray worker. Returns its rows (every evaluated allocation, the
    front marked) and record (counts, seconds)."""
    import torch
    from search_spaces import PLAN_PREFIX, PlanRanks, space_from_mapping

    from ..methods.nested import TruncationSampler
    from .oneshot import TruncationSpace, front, oneshot_search, sample_allocations

    torch.set_num_threads(max(1, threads))
    space = space_from_mapping(space_plain, name=space_plain.get("name") or "space")
    start, cpu = time.perf_counter(), time.process_time()
    dense_state = torch.load(io.BytesIO(dense), map_location="cpu", weights_only=True)
    model, data, method = nested_model(space, settings, scheme, knobs, dense_state=dense_state)
    model.load_state_dict(torch.load(io.BytesIO(nested), map_location="cpu", weights_only=True))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    sampler = TruncationSampler.for_model(model, method.knobs, space.seed)
    tspace = TruncationSpace(model, (data.in_channels, data.image_size, data.image_size), sampler.low)
    bn = method.knobs.bn_images
    points = oneshot_search(model, data, tspace, sample_allocations(tspace, count, seed=seed), bn_images=bn,
                            device=device)
    on_front = {id(p) for p in front(points)}
    rows = []
    for i, p in enumerate(points):
        plan = PlanRanks({n: (lp.scheme, lp.rank) for n, lp in p.plan.items()}).to_config()
        rows.append({"point": i, "macs": int(p.macs), "macs_compression": p.compression,
                     "val_accuracy": p.val_accuracy, "val_loss": p.val_loss, "bn_images": p.bn_images,
                     "front": int(id(p) in on_front),
                     "plan": ";".join(f"{k[len(PLAN_PREFIX):]}={v}" for k, v in plan.items())})
    record = {"allocations": count, "evaluated": len(points), "bn_images": bn,
              "front": len(on_front), "seed": seed, "seconds": time.perf_counter() - start,
              "cpu_seconds": time.process_time() - cpu}
    return {"rows": rows, "record": record}
