"""A trial's flat Tune config (what the sampler produced) -> validated ``RunSpec``.

No model is built here: the sampled ratios become ``GroupRatios`` (or, in a budget-driven
space, the sampled target becomes ``BudgetRanks``), which ``run.prepare`` resolves into the
integer plan against the model it builds (once). A method whose ``init`` knob is ``dense``
starts from the sweep's dense reference.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..allocation import BudgetRanks, load_layer_latency, load_profile
from ..errors import RankSearchError
from ..groups import GroupRatios
from ..run import RunSpec
from ..schema import ALLOCATION_KEY, METHOD_KEY, RANK_PREFIX, SPACE_PREFIX, TARGET_KEY

DENSE_KEY = SPACE_PREFIX + "dense"  # path or URI of the sweep's dense reference (dense.pt)
PROFILE_KEY = SPACE_PREFIX + "profile"  # folder holding the sweep's sensitivity profile


def method_init(method: str, config: Mapping[str, Any]) -> str:
    """``dense`` or ``scratch``: the trial's ``<method>.init`` knob, else the method's default
    (``scratch`` for a method without the knob)."""
    from ..methods import METHODS

    default = getattr(METHODS.get(method).Knobs(), "init", "scratch")
    return str(config.get(f"{method}.init", default))


def _budget_ranks(config: Mapping[str, Any]) -> BudgetRanks:
    folder = config.get(PROFILE_KEY)
    if not folder:
        raise RankSearchError(f"a budget-driven trial needs the sweep's profile ({PROFILE_KEY} in its config)")
    budget = str(config.get(SPACE_PREFIX + "budget", "macs"))
    return BudgetRanks(float(config[TARGET_KEY]), str(config.get(ALLOCATION_KEY, "sensitivity")),
                       str(config.get(SPACE_PREFIX + "proxy", "energy")), load_profile(str(folder)), str(folder),
                       budget, load_layer_latency(str(folder)) if budget == "latency" else None)


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
    for knob, value in cls.search_defaults.items():
        settings.setdefault(f"{method}.{knob}", value)
    scheme = config.get(scheme_key)
    ranks: Any = None
    if cls.uses_plan and config.get(SPACE_PREFIX + "rank_mode", "per_group") == "sensitivity":
        ranks = _budget_ranks(config)
        scheme = scheme or cls.default_scheme
    elif cls.uses_plan:
        ratios = {k[len(RANK_PREFIX):]: float(v) for k, v in config.items() if k.startswith(RANK_PREFIX)}
        if not ratios:
            raise RankSearchError(f"trial config has no rank ratios ({RANK_PREFIX}<group> keys)")
        ranks = GroupRatios(str(config[SPACE_PREFIX + "grouping"]), ratios)
        scheme = scheme or cls.default_scheme
    dense = config.get(DENSE_KEY)
    init = str(dense) if dense and method_init(method, config) == "dense" else None
    return RunSpec(
        model=config[SPACE_PREFIX + "model"], dataset=config[SPACE_PREFIX + "dataset"], method=method,
        ranks=ranks, scheme=scheme, epochs=int(config[SPACE_PREFIX + "epochs"]),
        seed=int(config[SPACE_PREFIX + "seed"]), data_root=config.get(SPACE_PREFIX + "data_root"),
        settings=settings, **({"init": init} if init else {}),
    )
