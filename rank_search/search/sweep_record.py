"""The sweep record (``rank_search_sweep.yaml`` at the experiment root): launch settings and the
space, written at launch and read by ``resume`` (and, without Ray, by status/export/analyze).

Read and written through ``rank_search.storage``, so a local folder and a URI (``file://``,
``s3://``, ...) behave alike.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Callable

import yaml

from .. import safe_yaml, schema
from ..errors import RankSearchError
from ..storage import Location
from .settings import EXTRAS, LaunchConfig


def write_sweep_record(path: str, cfg: LaunchConfig, space_plain: dict, *,
                       on_made: Callable[[str], None] | None = None) -> None:
    """Create the experiment folder ``path`` and write its record. ``on_made(folder)`` runs once
    the folder holds the record and before others can see it (locally: while it is still a
    temporary sibling), e.g. to lock it; an error there leaves nothing behind."""
    record = {
        "launch": {**dataclasses.asdict(cfg), "objectives": schema.format_objectives(cfg.objectives)},
        "space": space_plain,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    text = yaml.safe_dump(record, sort_keys=False)
    loc = Location(path)
    if loc.uri:
        loc.makedirs()
        loc.write_text(schema.SWEEP_FILE, text)
        if on_made is not None:
            on_made(path)
        return
    # locally the folder appears with its record or not at all: a kill in between would leave a
    # folder that is neither an experiment (`resume` refuses it) nor free (`launch` refuses it)
    import os
    import tempfile

    parent = os.path.dirname(loc.root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(loc.root)}.partial-", dir=parent)
    try:
        with open(os.path.join(tmp, schema.SWEEP_FILE), "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # a full disk shows here, not as an empty record later
        os.chmod(tmp, 0o777 & ~_umask())
        if on_made is not None:
            on_made(tmp)
        os.rename(tmp, loc.root)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def record_num_samples(path: str, num_samples: int) -> None:
    """Set the record's ``launch.num_samples``: the trials a one-shot sweep runs, its front's
    points, when the front has fewer than were asked (``nested.yaml`` keeps the number asked)."""
    record = read_sweep_record(path)
    record["launch"]["num_samples"] = int(num_samples)
    Location(path).write_text(schema.SWEEP_FILE, yaml.safe_dump(record, sort_keys=False))


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_sweep_record(path: str) -> dict[str, Any]:
    """The record of the experiment at ``path``; a missing or unreadable one is a one-line error."""
    loc = Location(path)
    if not loc.is_file(schema.SWEEP_FILE):
        raise RankSearchError(f"{path!r} is not a rank-search experiment (no {schema.SWEEP_FILE})")
    try:
        record = safe_yaml.load(loc.read_text(schema.SWEEP_FILE), what=f"{schema.SWEEP_FILE} in {path!r}")
    except (yaml.YAMLError, UnicodeDecodeError):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} is not valid YAML") from None
    if not isinstance(record, dict) or not isinstance(record.get("launch"), dict):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} has no 'launch' mapping")
    return record


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_types(launch: dict, where: str) -> None:
    """Each setting has the type its LaunchConfig field declares (a hand-edited or damaged record)."""
    for f in dataclasses.fields(LaunchConfig):
        if f.name not in launch:
            continue
        value = launch[f.name]
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if allowed and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            raise RankSearchError(f"{where}: launch.{f.name} must be {' or '.join(kinds)}, got {value!r}")


def config_from_record(record: dict, *, path: str = "") -> LaunchConfig:
    """The ``LaunchConfig`` a record was written from; a damaged record is a one-line error."""
    where = f"{schema.SWEEP_FILE} in {path!r}" if path else schema.SWEEP_FILE
    launch = dict(record["launch"])
    known = {f.name for f in dataclasses.fields(LaunchConfig)}
    unknown = sorted(set(launch) - known)
    if unknown:
        raise RankSearchError(f"{where} holds settings this version does not know: {', '.join(map(str, unknown))}")
    if not isinstance(launch.get("space"), str):
        raise RankSearchError(f"{where}: launch.space must name the space, got {launch.get('space')!r}")
    objectives = launch.get("objectives", schema.format_objectives(schema.DEFAULT_OBJECTIVES))
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise RankSearchError(f"{where}: launch.objectives must be a list of METRIC:max|min, got {objectives!r}")
    resources = launch.get("resources") or {}
    if not isinstance(resources, dict):
        raise RankSearchError(f"{where}: launch.resources must be a mapping, got {resources!r}")
    log_to = launch.get("log_to") or []  # --log-to: absent in records older than the flag
    if not isinstance(log_to, list) or not all(isinstance(t, str) for t in log_to):
        raise RankSearchError(f"{where}: launch.log_to must be a list of tracker names, got {log_to!r}")
    launch["log_to"] = tuple(log_to)
    ablate = launch.get("ablate") or []  # --ablate: absent in records older than the flag
    if not isinstance(ablate, list) or not all(isinstance(t, str) for t in ablate):
        raise RankSearchError(f"{where}: launch.ablate must be a list of part names, got {ablate!r}")
    launch["ablate"] = tuple(ablate)
    # --refine-extra: a record older than it was launched when gap fills and parent weighting were
    # on by default, so it resumes with them (less what it ablated)
    extras = launch.get("refine_extras", [p for p in EXTRAS if p not in ablate])
    if not isinstance(extras, list) or not all(isinstance(t, str) for t in extras):
        raise RankSearchError(f"{where}: launch.refine_extras must be a list of part names, got {extras!r}")
    launch["refine_extras"] = tuple(extras)
    launch["ablate"] = tuple(p for p in ablate if p not in EXTRAS)
    _check_types(launch, where)
    # the --dense file and --profile folder are copied into the experiment (dense.pt,
    # sensitivity.csv) at launch and need not exist now; a restart of a launch stopped before it
    # copied them takes them back from the record (sweep._recorded_references)
    launch["dense"] = None
    launch["profile"] = None
    try:
        launch["objectives"] = schema.parse_objectives(",".join(objectives))
        launch["resources"] = {str(k): float(v) for k, v in resources.items()}
        return LaunchConfig(**launch)
    except (TypeError, ValueError) as exc:  # RankSearchError is a ValueError
        raise RankSearchError(f"{where}: {str(exc).splitlines()[0]}") from None
