"""A trial's flat Tune config (what the sampler produced) -> validated ``RunSpec``.

No model is built here: the sampled ratios become ``GroupRatios``, which ``run.prepare``
resolves into the integer plan against the model it builds (once).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import RankSearchError
from ..groups import GroupRatios
from ..run import RunSpec
from ..schema import METHOD_KEY, RANK_PREFIX, SPACE_PREFIX


def spec_from_config(config: Mapping[str, Any]) -> RunSpec:
    """Build the run of one trial.

    Args:
        config: the trial's flat config (``method``, ``<method>.<knob>``, ``train.*``,
            ``rank.<group>``, ``space.*``).
    """
    from ..methods import METHODS

    method = config[METHOD_KEY]
    scheme_key = f"{method}.scheme"
    settings = {k: v for k, v in config.items()
                if (k.startswith("train.") or k.startswith(f"{method}.")) and k != scheme_key}
    cls = METHODS.get(method)
    scheme = config.get(scheme_key)
    ranks: Any = None
    if cls.uses_plan:
        ratios = {k[len(RANK_PREFIX):]: float(v) for k, v in config.items() if k.startswith(RANK_PREFIX)}
        if not ratios:
            raise RankSearchError(f"trial config has no rank ratios ({RANK_PREFIX}<group> keys)")
        ranks = GroupRatios(str(config[SPACE_PREFIX + "grouping"]), ratios)
        scheme = scheme or cls.default_scheme
    return RunSpec(
        model=config[SPACE_PREFIX + "model"], dataset=config[SPACE_PREFIX + "dataset"], method=method,
        ranks=ranks, scheme=scheme, epochs=int(config[SPACE_PREFIX + "epochs"]),
        seed=int(config[SPACE_PREFIX + "seed"]), data_root=config.get(SPACE_PREFIX + "data_root"),
        settings=settings,
    )
