"""The sweep record (``rank_search_sweep.yaml`` at the experiment root): launch settings and the
space, written at launch and read by ``resume`` (and, without Ray, by status/export/analyze).

Read and written through ``rank_search.storage``, so a local folder and a URI (``file://``,
``s3://``, ...) behave alike.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

import yaml

from .. import schema
from ..errors import RankSearchError
from ..storage import Location
from .settings import LaunchConfig


def write_sweep_record(path: str, cfg: LaunchConfig, space_plain: dict) -> None:
    """Create the experiment folder ``path`` and write its record."""
    record = {
        "launch": {**dataclasses.asdict(cfg), "objectives": schema.format_objectives(cfg.objectives)},
        "space": space_plain,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    loc = Location(path)
    loc.makedirs()
    loc.write_text(schema.SWEEP_FILE, yaml.safe_dump(record, sort_keys=False))


def read_sweep_record(path: str) -> dict[str, Any]:
    """The record of the experiment at ``path``; a missing or unreadable one is a one-line error."""
    loc = Location(path)
    if not loc.is_file(schema.SWEEP_FILE):
        raise RankSearchError(f"{path!r} is not a rank-search experiment (no {schema.SWEEP_FILE})")
    try:
        record = yaml.safe_load(loc.read_text(schema.SWEEP_FILE))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} is not valid YAML") from None
    if not isinstance(record, dict) or not isinstance(record.get("launch"), dict):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} has no 'launch' mapping")
    return record


def config_from_record(record: dict) -> LaunchConfig:
    """The ``LaunchConfig`` a record was written from."""
    launch = dict(record["launch"])
    launch["objectives"] = schema.parse_objectives(",".join(launch["objectives"]))
    launch["resources"] = dict(launch.get("resources") or {})
    try:
        return LaunchConfig(**launch)
    except TypeError as exc:
        raise RankSearchError(f"{schema.SWEEP_FILE} holds settings this version does not know: {exc}") from None
