"""`export --oneshot` (issue 31): a point of a one-shot sweep's front, without fine-tuning.

Contract:
- ``front_points`` reads the factorized front rows of ``oneshot.csv`` (``read_oneshot``); a folder
  that is not a one-shot sweep, or lacks ``nested.pt``, is one line.
- ``export_point`` rebuilds the point's compact model as the search evaluated it: the nested
  model (``nested.pt``, loaded with ``weights_only=True`` and checked key by key), the search's
  data (its seed and batch size), BatchNorm re-estimated on ``nested.bn_images`` training images
  (``oneshot.compact_of``); so its validation accuracy is the csv row's. It measures it on val
  and test, and returns the run that fine-tunes it: the sweep's trial config of that point
  (``oneshot_sweep.point_trial``), so `train --config` runs what a one-shot trial runs.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from .. import schema
from ..errors import RankSearchError
from ..storage import Location


@dataclass(frozen=True)
class PointExport:
    """A front point, exported.

    Attributes:
        run: the run that fine-tunes it (``RunSpec``).
        metrics: before fine-tuning, under ``train``'s metric names (``epochs`` 0).
        search_val_accuracy: the csv row's validation accuracy.
        compact: the compact checkpoint (``checkpoint.save_compact``'s bytes).
    """

    run: Any
    metrics: dict[str, Any]
    search_val_accuracy: float
    compact: bytes


def front_points(path: str) -> list[dict[str, Any]]:
    """The factorized front rows of the one-shot sweep at ``path`` (``read_oneshot``'s rows)."""
    from .oneshot_sweep import read_oneshot

    loc = Location(path)
    if not loc.is_file(schema.ONESHOT_FILE):
        raise RankSearchError(f"--oneshot needs a one-shot sweep (launch --searcher oneshot): {path!r} has no "
                              f"{schema.ONESHOT_FILE}")
    if not loc.is_file(schema.NESTED_WEIGHTS_FILE):
        raise RankSearchError(f"--oneshot needs the sweep's nested model: {path!r} has no "
                              f"{schema.NESTED_WEIGHTS_FILE}")
    rows = [r for r in read_oneshot(path) if r["front"] and r["plan"].layers]
    if not rows:
        raise RankSearchError(f"the one-shot front in {path!r} holds no factorized point (only the dense model)")
    return rows


def _space(path: str):
    from search_spaces import space_from_mapping

    from .sweep_record import read_sweep_record

    plain = read_sweep_record(path).get("space")
    if not isinstance(plain, dict):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} has no 'space' mapping")
    return space_from_mapping(plain, name=str(plain.get("name") or "space"))


def export_point(path: str, row: dict[str, Any]) -> PointExport:
    """``row`` (a ``front_points`` row) of the sweep at ``path`` (absolute, or a URI: the run
    names its ``nested.pt`` there) as the module docstring says."""
    import torch

    from ..checkpoint import save_compact
    from ..cost import compression_metrics, model_cost
    from ..engine import evaluate
    from ..models import create_model_for
    from .oneshot import compact_of
    from .oneshot_sweep import finetune_lr, point_trial
    from .trial import run_spec

    loc = Location(path)
    space = _space(path)
    dense = loc.address(schema.DENSE_WEIGHTS_FILE) if loc.is_file(schema.DENSE_WEIGHTS_FILE) else None
    lr = finetune_lr(space, loc.read_mapping(schema.NESTED_RECORD_FILE))
    run = run_spec(point_trial(space, row["plan"], dense=dense, nested=loc.address(schema.NESTED_WEIGHTS_FILE), lr=lr))
    model, data, bn_images = _nested_model(loc, space, run)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the search task chose
    plan = run.ranks
    compact = compact_of(model.to(device), plan, data, bn_images=bn_images, device=device).eval()
    val_accuracy, _ = evaluate(compact, data.val, device)
    test_accuracy, _ = evaluate(compact, data.test, device)
    compact = compact.cpu()
    shape = (data.in_channels, data.image_size, data.image_size)
    metrics = {schema.VAL_ACCURACY: val_accuracy, schema.TEST_ACCURACY: test_accuracy,
               **compression_metrics(model_cost(create_model_for(space.model, data), shape),
                                     model_cost(compact, shape)), schema.EPOCHS: 0}
    buffer = io.BytesIO()
    save_compact(buffer, compact, plan=plan, model=space.model, dataset=space.dataset, method="nested",
                 in_channels=data.in_channels, num_classes=data.num_classes, image_size=data.image_size)
    return PointExport(run, metrics, float(row["val_accuracy"]), buffer.getvalue())


def _nested_model(loc: Location, space, run):
    """(nested model with ``nested.pt`` loaded, the search's data, ``nested.bn_images``), by
    ``oneshot_tasks.nested_model``, the search task's recipe."""
    from ..weights import load_weights
    from .oneshot_tasks import nested_model
    from .reference import train_settings

    knobs = {k: v for k, v in run.knobs.items() if k != "weights"}
    model, data, method = nested_model(space, train_settings(space), run.scheme, knobs)
    what = f"{schema.NESTED_WEIGHTS_FILE} of {loc.path!r}"
    local = loc.local_path(schema.NESTED_WEIGHTS_FILE)
    if local is not None:
        load_weights(model, local, what=what)
    else:
        with tempfile.TemporaryDirectory(prefix="rank-search-oneshot-") as folder:
            local = os.path.join(folder, schema.NESTED_WEIGHTS_FILE)
            with open(local, "wb") as fh:
                fh.write(loc.read_bytes(schema.NESTED_WEIGHTS_FILE))
            load_weights(model, local, what=what)
    return model, data, method.knobs.bn_images
