"""Flat Tune config (what the sampler produced) -> validated ``RunSpec``."""
from __future__ import annotations

from typing import Any, Mapping

from search_spaces import RANK_PREFIX, SPACE_PREFIX

from ..errors import RankSearchError
from ..plan import candidate_layers, scheme_for
from ..run import RunSpec
from .groups import layer_groups


def spec_from_config(config: Mapping[str, Any], model) -> RunSpec:
    """Build the run of one trial.

    Args:
        config: the trial's flat config (``method``, ``<method>.<knob>``, ``train.*``,
            ``rank.<group>``, ``space.*``).
        model: a dense instance of the space's model (for rank groups and scheme fallback).
    """
    method = config["method"]
    scheme = config.get(f"{method}.scheme")
    settings = {k: v for k, v in config.items()
                if (k.startswith("train.") or k.startswith(f"{method}.")) and k != f"{method}.scheme"}
    from ..methods import METHODS

    cls = METHODS.get(method)
    ranks: Any = None
    if cls.uses_plan:
        scheme = scheme or cls.default_scheme
        layers = candidate_layers(model)
        entries = {}
        for layer, group in layer_groups(model, config[SPACE_PREFIX + "grouping"]).items():
            key = RANK_PREFIX + group
            if key not in config:
                raise RankSearchError(f"trial config has no rank ratio {key!r}")
            entries[layer] = {"scheme": scheme_for(layers[layer], scheme), "rank": f"ratio:{float(config[key])}"}
        ranks = {"layers": entries}
    return RunSpec(
        model=config[SPACE_PREFIX + "model"], dataset=config[SPACE_PREFIX + "dataset"], method=method,
        ranks=ranks, scheme=scheme, epochs=int(config[SPACE_PREFIX + "epochs"]),
        seed=int(config[SPACE_PREFIX + "seed"]), data_root=config.get(SPACE_PREFIX + "data_root"),
        settings=settings,
    )
