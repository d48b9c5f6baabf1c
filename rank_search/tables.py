"""The two tables a budget-driven sweep measures once and every trial reads, and their files.

``Profile`` (``sensitivity.csv`` + ``sensitivity.yaml``): one row per (layer, scheme, ratio) of
the layer sensitivity profile, and the cost it predicts under a proxy. ``LatencyTable``
(``layer_latency.csv`` + ``layer_latency.yaml``): measured time of each layer dense and at a few
ranks. Both live in one folder (a path or URI) and are written and read here only.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import safe_yaml, schema
from .errors import RankSearchError
from .surgery import format_rank

PROFILE_COLUMNS = ("layer", "scheme", "ratio", "rank", "val_accuracy", "val_loss", "macs", "layer_macs",
                   "energy", "opnorm_error", "ft_val_accuracy", "ft_val_loss")
LATENCY_COLUMNS = ("layer", "scheme", "rank", "latency_ms", "dense_latency_ms")


def parse_rank(text: str):
    """Inverse of ``surgery.format_rank``."""
    parts = tuple(int(p) for p in str(text).split("x"))
    return parts if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class Profile:
    """A sensitivity profile: one row per (layer, scheme, ratio) and the dense reference's
    numbers it is measured against (``meta``: model, dataset, dense_val_loss, dense_val_accuracy,
    input_shape, dense_macs)."""

    rows: tuple[Mapping[str, Any], ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def cost(self, row: Mapping[str, Any], proxy: str) -> float:
        """Predicted accuracy cost of one row under ``proxy`` (larger = worse; 0 = dense)."""
        if proxy == "energy":
            return 1.0 - float(row["energy"])
        key, base = ("val_loss", "dense_val_loss") if proxy == "bn" else ("ft_val_loss", "dense_ft_val_loss")
        value = row.get(key)
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)) or base not in self.meta:
            raise RankSearchError(f"the profile has no {key!r} values: it was measured without proxy {proxy!r}")
        return float(value) - float(self.meta[base])

    def curve(self, layer: str, scheme: str, proxy: str) -> tuple[list[float], list[float]]:
        """(log ratios ascending, costs made non-increasing in the ratio) of one layer."""
        points = sorted((float(r["ratio"]), self.cost(r, proxy)) for r in self.rows
                        if r["layer"] == layer and r["scheme"] == scheme)
        if not points:
            raise RankSearchError(f"the profile has no rows for layer {layer!r} in scheme {scheme!r}")
        xs, ys = [math.log(p[0]) for p in points], [max(0.0, p[1]) for p in points]
        for i in range(len(ys) - 2, -1, -1):  # a smaller ratio never costs less
            ys[i] = max(ys[i], ys[i + 1])
        return xs, ys

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=PROFILE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: row.get(k, "") for k in PROFILE_COLUMNS})
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str, meta: Mapping[str, Any]) -> "Profile":
        rows = []
        for row in csv.DictReader(io.StringIO(text)):
            rows.append({k: (v if k in ("layer", "scheme", "rank") else (float(v) if v not in ("", None) else None))
                         for k, v in row.items()})
        return cls(tuple(rows), dict(meta))


@dataclass(frozen=True)
class LatencyTable:
    """Measured layer times: rows (layer, scheme, rank, latency_ms, dense_latency_ms) and ``meta``
    (batch_size, threads, device, input_shape, model_ms: the whole dense model, seconds)."""

    rows: tuple[Mapping[str, Any], ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=LATENCY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({**row, "rank": format_rank(row["rank"])})
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str, meta: Mapping[str, Any]) -> "LatencyTable":
        rows = []
        for row in csv.DictReader(io.StringIO(text)):
            rows.append({"layer": row["layer"], "scheme": row["scheme"], "rank": parse_rank(row["rank"]),
                         "latency_ms": float(row["latency_ms"]), "dense_latency_ms": float(row["dense_latency_ms"])})
        return cls(tuple(rows), dict(meta))


def _save(folder: str, csv_file: str, meta_file: str, table) -> None:
    import yaml

    from .storage import Location

    loc = Location(folder)
    loc.makedirs()
    loc.write_text(csv_file, table.to_csv())
    loc.write_text(meta_file, yaml.safe_dump(dict(table.meta), sort_keys=False))


def _load(folder: str, csv_file: str, meta_file: str, cls, what: str, how: str):
    """``cls.from_csv`` of the files ``_save`` wrote; a one-line error says ``what`` is missing
    (and ``how`` to make it) or unreadable."""
    import yaml

    from .storage import Location

    loc = Location(folder)
    if not loc.is_file(csv_file) or not loc.is_file(meta_file):
        raise RankSearchError(f"{folder!r} holds no {what} ({csv_file} and {meta_file}); {how}")
    try:
        meta = safe_yaml.load(loc.read_text(meta_file), what=f"{meta_file} in {folder!r}")
        return cls.from_csv(loc.read_text(csv_file), meta if isinstance(meta, dict) else {})
    except safe_yaml.YAMLLimitError:
        raise  # its own line names the limit
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise RankSearchError(f"the {what} in {folder!r} cannot be read: {type(exc).__name__}") from None


def save_profile(folder: str, profile: Profile) -> None:
    """Write ``sensitivity.csv`` and its ``sensitivity.yaml`` into ``folder`` (a path or URI)."""
    _save(folder, schema.PROFILE_FILE, schema.PROFILE_META_FILE, profile)


def load_profile(folder: str) -> Profile:
    """Read a profile written by ``save_profile`` (or `rank-search profile --out FOLDER`)."""
    return _load(folder, schema.PROFILE_FILE, schema.PROFILE_META_FILE, Profile, "sensitivity profile",
                 f"write one with `rank-search profile --out {folder}`")


def save_layer_latency(folder: str, table: LatencyTable) -> None:
    """Write ``layer_latency.csv`` and ``layer_latency.yaml`` beside a profile in ``folder``."""
    _save(folder, schema.LAYER_LATENCY_FILE, schema.LAYER_LATENCY_META_FILE, table)


def load_layer_latency(folder: str) -> LatencyTable:
    """Read a table written by ``save_layer_latency``."""
    return _load(folder, schema.LAYER_LATENCY_FILE, schema.LAYER_LATENCY_META_FILE, LatencyTable,
                 "layer latency table", "a sweep with ranks.budget: latency measures it")
