"""The ``refine`` searcher: a steady-state local search around the Pareto front.

Each new trial copies one parent from the current Pareto front of the finished trials and
mutates it: a float or int parameter moves by a Gaussian step of ``step`` times its range (in
log space for a log-scaled one), a categorical one changes to another choice with probability
``switch``, a parameter the parent lacks (a knob of another method) is drawn from its prior.
A step that passes a bound is reflected back inside by its overshoot (clipped, a parent at a
bound would put half its children on the bound itself). The parent is drawn with probability
proportional to its exclusive hypervolume contribution (two objectives; plain uniform over the
front with more), measured from the report's reference point where the settings give one (an
objective's floor, a log ratio objective's 1x), mixed half and half with a uniform draw, so
the front's extremes and its sparse stretches are refined first, in the spirit of SMS-EMOA's
hypervolume selection. Two
settings say which part of the front matters:
``floors`` (objective index -> the least useful value, e.g. validation accuracy no more than
5 pt below the dense reference's) keeps parents to the trials that reach every floor, whenever
any does, so the search does not spend its trials refining compressed models nobody would
deploy; ``log_objectives`` (indices of ratio objectives: compression, speed-up) measures those
contributions in log space, where 2x -> 4x counts as much as 8x -> 16x (as the report's log
hypervolume does). With probability ``explore``, and while no trial has finished,
a trial is drawn from the priors instead. A child equal to a trial already asked is mutated
again, then drawn from the priors (NSGA-II in a small generation re-runs identical
configurations).

``fill`` (a parameter that sets an objective directly, the target MACs compression of a
budget-driven space, with that objective's index and a spacing) makes every other searched
trial fill the front's widest gap instead: over the whole front (no floor), the parameter's
bounds, the trials running and the earlier fills, the widest stretch of that objective (in log
space for a log-scaled parameter) wider than the spacing gets a child at its middle, copied from
the front trial just below it (the more accurate neighbour), with the values ``fill_fixed`` names
(the uniform allocation: a fill is a uniform-grid point where the front is sparse). With the
spacing of a uniform grid of the sweep's budget the front is then nowhere much sparser than such
a grid: on resnet20 (benchmarks/RESULTS.md) the floor alone kept every parent within 5 pt of
dense and left 8-16x untried, where a uniform grid still found 65-86% models. A fill that lands
below the front still counts as covering its target, so a gap is not asked twice; a gap whose
child would repeat an earlier trial (the same parameters, the target within half the spacing:
a warm-start trial below the front) goes to the next widest gap.

``share`` (a categorical parameter and its choices: the space's planned methods) chooses that
parameter for an enqueued trial that leaves it open (the warm start's second round): by Thompson
sampling, each choice's draw from Beta(1 + its finished trials that dominate a trial of another
choice, 1 + its finished trials that a trial of another choice dominates), the largest draw
taken. The last enqueued trial (the warm start's most compressed end, no other enqueued trial
waiting) is not drawn, since no later enqueued trial learns from that choice: it takes the
choice of the most compressed trial (along the fill objective) on the front of the trials that
reach every floor, or with none, the largest posterior mean. A trial no other choice's trial
is comparable with (alone at its compression, or neither more accurate nor more compressed)
counts neither way, and a choice's own trials never count
against each other. A method whose trials keep landing below the others' then gets few of
the remaining warm-start points, and one that has not finished a trial yet still gets some.
The same draws gate a refinement's switch of that parameter: a child whose mutation moved it to
another choice keeps the move only when that choice's draw beats its parent's choice's.

Why not NSGA-II or TPE for a budget-driven space: the warm start already spreads the target
compression over the range with every method, and what is left to do is to move the good
configurations along the front and improve them locally. A generation of four makes NSGA-II
recombine the same parents into identical children, and TPE's density estimate needs more
trials than a 16-trial sweep has (benchmarks/RESULTS.md, search quality).

Parameters fixed by the caller (the enqueued warm-start points) are never sampled here.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

PARENT_KEY = "refine:parent"  # trial system attribute: number of the parent trial, -1 when drawn from the priors
FILL_KEY = "refine:fill"  # trial system attribute: True for a child that fills the front's widest gap
SHARE_KEY = "refine:share"  # trial system attribute: the choice ``share`` made for an enqueued trial


def dominance(values: np.ndarray) -> np.ndarray:
    """``d[i, j]``: row ``i`` of ``values`` dominates row ``j`` (every column maximised): at least
    as good in every column and better in one."""
    v = np.asarray(values, dtype=float)
    return np.all(v[:, None] >= v[None], axis=2) & np.any(v[:, None] > v[None], axis=2)


def front(values: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (every column maximised)."""
    return [int(i) for i in np.flatnonzero(~dominance(values).any(axis=0))]


def contributions(points: np.ndarray, ref: Sequence[float | None] = (None, None)) -> np.ndarray:
    """Exclusive hypervolume contribution of each point of a two-objective front (both maximised),
    against the reference point ``ref``; an objective whose reference is None takes its minimum
    over the front less a tenth of its span (so the extremes count too)."""
    n = len(points)
    if n == 1:
        return np.ones(1)
    span = points.max(axis=0) - points.min(axis=0)
    span[span == 0] = 1.0
    ref = np.array([points[:, i].min() - 0.1 * span[i] if r is None else float(r) for i, r in enumerate(ref)])
    order = np.argsort(points[:, 0])  # first objective ascending: second descending along a front
    p = (points[order] - ref) / span
    out = np.empty(n)
    for k in range(n):
        left = p[k - 1, 0] if k > 0 else 0.0
        below = p[k + 1, 1] if k + 1 < n else 0.0
        out[order[k]] = max(p[k, 0] - left, 0.0) * max(p[k, 1] - below, 0.0)
    return out


def _reflect(x: float, lo: float, hi: float) -> float:
    """``x`` folded back into ``[lo, hi]`` (``lo < hi``) by the distance it overshot a bound (as often
    as it takes). A step past a bound comes back inside instead of stopping on it: clipped, a parent
    at a bound put half its children on the bound itself (on resnet20, 7 of the 20 refinements of 5
    seeds re-ran the 2x target, where the warm start had two trials already)."""
    span = hi - lo
    y = (x - lo) % (2 * span)
    return lo + (y if y <= span else 2 * span - y)


def _inside(value: Any, dist: BaseDistribution) -> bool:
    """Whether ``value`` is a value of ``dist`` (a knob may share a name with another method's)."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return isinstance(value, (int, float)) and dist.low <= value <= dist.high
    return False


class FrontSampler(BaseSampler):
    """See the module docstring. ``seed`` makes the search reproducible."""

    RETRIES = 10

    def __init__(self, seed: int | None = None, *, step: float = 0.15, switch: float = 0.2,
                 explore: float = 0.1, floors: dict[int, float] | None = None,
                 log_objectives: Sequence[int] = (), fill: tuple[str, int, float] | None = None,
                 fill_fixed: dict[str, Any] | None = None, share: tuple[str, Sequence[Any]] | None = None) -> None:
        if not (0 < step and 0 <= switch <= 1 and 0 <= explore <= 1):
            raise ValueError(f"FrontSampler: need step > 0 and switch, explore in [0, 1], got {step}, {switch}, {explore}")
        if fill is not None and not (len(fill) == 3 and float(fill[2]) > 0):
            raise ValueError(f"FrontSampler: fill must be (parameter, objective index, spacing > 0), got {fill!r}")
        if share is not None and not (len(share) == 2 and len(share[1]) > 0):
            raise ValueError(f"FrontSampler: share must be (parameter, non-empty choices), got {share!r}")
        self.share = None if share is None else (str(share[0]), tuple(share[1]))
        self.fill = None if fill is None else (str(fill[0]), int(fill[1]), float(fill[2]))
        self.fill_fixed = dict(fill_fixed or {})
        self.floors = {int(k): float(v) for k, v in (floors or {}).items()}
        self.log_objectives = tuple(int(i) for i in log_objectives)
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self.step, self.switch, self.explore = step, switch, explore
        self._children: dict[int, dict[str, Any] | None] = {}

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def before_trial(self, study, trial) -> None:
        # an enqueued (warm-start) trial samples what it does not fix from the priors
        parent, child, filling = None, None, False
        if "fixed_params" not in trial.system_attrs:
            filled = self._fill_child(study) if self._fill_turn(study) else None
            if filled is not None:
                (parent, child), filling = filled, True
            else:
                parent = self._pick_parent(study)
                child = None if parent is None else self._child(study, parent)
        self._children[trial.number] = child
        # Optuna's own samplers record their lineage the same way (NSGA-II's parents)
        study._storage.set_trial_system_attr(trial._trial_id, PARENT_KEY, -1 if parent is None else parent.number)
        if filling:
            study._storage.set_trial_system_attr(trial._trial_id, FILL_KEY, True)

    def _fill_turn(self, study) -> bool:
        """Whether this searched trial fills a gap: every other one, the first searched one included."""
        if getattr(self, "fill", None) is None:  # getattr: a sampler pickled before fills existed
            return False
        searched = [t for t in study.get_trials(deepcopy=False)
                    if PARENT_KEY in t.system_attrs and "fixed_params" not in t.system_attrs]
        fills = sum(1 for t in searched if t.system_attrs.get(FILL_KEY))
        return fills <= len(searched) - fills

    def _fill_child(self, study) -> tuple[FrozenTrial, dict[str, Any]] | None:
        """(parent, child) for the front's widest gap in the fill parameter whose child would not
        repeat a trial, or None when no such gap is wider than the spacing."""
        name, j, spacing = self.fill
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and name in t.params
                and np.all(np.isfinite(t.values)) and t.values[j] > 0]
        if not done:
            return None
        dist = done[0].distributions[name]
        if not isinstance(dist, (FloatDistribution, IntDistribution)) or dist.low <= 0:
            return None
        to_axis = (lambda v: math.log(v)) if dist.log else float
        on_front = [done[i] for i in front(self._oriented(study, np.array([t.values for t in done], dtype=float)))]
        covered = [to_axis(t.values[j]) for t in on_front]
        covered += [to_axis(t.params[name]) for t in trials if name in t.params and t.params[name] > 0
                    and (t.state == TrialState.RUNNING or t.system_attrs.get(FILL_KEY))]
        covered += [to_axis(dist.low), to_axis(dist.high)]
        axis = sorted(set(min(max(c, to_axis(dist.low)), to_axis(dist.high)) for c in covered))
        gaps = sorted(((b - a, a, b) for a, b in zip(axis, axis[1:])), reverse=True)
        asked = [t.params for t in trials if t.params]
        for width, a, b in gaps:
            if width <= spacing:
                return None
            mid = (a + b) / 2
            below = [t for t in on_front if to_axis(t.values[j]) <= mid]
            parent = (max(below, key=lambda t: t.values[j]) if below else min(on_front, key=lambda t: t.values[j]))
            child = dict(parent.params)
            child[name] = self._snap(math.exp(mid) if dist.log else mid, dist)
            child.update({k: v for k, v in getattr(self, "fill_fixed", {}).items()
                          if k in child and _inside(v, parent.distributions[k])})
            # a trial below the front leaves its gap open; a child that is that trial again (the same
            # parameters, the target within half the spacing) would repeat it: the next gap instead
            if not any(p.keys() == child.keys() and all(p[k] == v for k, v in child.items() if k != name)
                       and abs(to_axis(p[name]) - to_axis(child[name])) <= spacing / 2 for p in asked):
                return parent, child
        return None

    @staticmethod
    def _signs(study) -> np.ndarray:
        return np.array([1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions])

    def _oriented(self, study, raw: np.ndarray) -> np.ndarray:
        """Objective values as the front is taken: ratio objectives in log space, every column maximised."""
        values = raw.copy()
        for i in getattr(self, "log_objectives", ()):  # getattr: a sampler pickled before log objectives
            values[:, i] = np.log(np.maximum(values[:, i], 1e-12))
        return values * self._signs(study)

    def _floored(self, study, done: list[FrozenTrial], *, strict: bool = False) -> tuple[list[FrozenTrial], np.ndarray]:
        """``done`` (finished trials) with finite values and their values, kept to those reaching
        every floor while any does (``strict``: even when none does)."""
        signs = self._signs(study)
        raw = np.array([t.values for t in done], dtype=float).reshape(len(done), len(signs))
        ok = np.all(np.isfinite(raw), axis=1)
        done, raw = [t for t, k in zip(done, ok) if k], raw[ok]
        floors = getattr(self, "floors", {})  # getattr: a searcher pickled by an older version (a resumed sweep)
        if floors and done:
            useful = np.all([raw[:, i] * signs[i] >= v * signs[i] for i, v in floors.items()], axis=0)
            if useful.any() or strict:  # else every trial is below a floor: the whole front, as without floors
                done, raw = [t for t, k in zip(done, useful) if k], raw[useful]
        return done, raw

    def _pick_parent(self, study) -> FrozenTrial | None:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
        if not done or self._rng.rand() < self.explore:
            return None
        done, raw = self._floored(study, done)
        if not done:
            return None
        values = self._oriented(study, raw)
        idx = front(values)
        pts = values[idx]
        weights = np.full(len(idx), 1.0 / len(idx))
        if pts.shape[1] == 2:
            # a reference the front does not clear (every trial below the floor) is not used
            ref = [r if r is not None and pts[:, k].min() >= r else None for k, r in enumerate(self._reference(study))]
            c = contributions(pts, ref)
            if c.sum() > 0:
                weights = 0.5 * weights + 0.5 * c / c.sum()
        return done[idx[self._rng.choice(len(idx), p=weights)]]

    def _reference(self, study) -> list[float | None]:
        """The hypervolume reference point the parents' contributions are measured from, oriented
        as ``_oriented``: an objective's floor, a log ratio objective's ratio 1 (no compression),
        else None (below the front). The report's log hypervolume takes the same point, so the
        least compressed parent owns the whole strip from 1x (on resnet20 that strip, 1x-2x, is
        the largest single part of a sweep's hypervolume), where a reference a tenth of the
        front's span below it gave that parent a sliver."""
        signs = self._signs(study)
        floors = getattr(self, "floors", {})  # getattr: a sampler pickled before floors existed
        logs = getattr(self, "log_objectives", ())
        ref: list[float | None] = []
        for i, sign in enumerate(signs):
            if i in floors:
                ref.append(sign * (math.log(max(floors[i], 1e-12)) if i in logs else floors[i]))
            else:
                ref.append(0.0 if i in logs and sign > 0 else None)
        return ref

    def _child(self, study, parent: FrozenTrial) -> dict[str, Any]:
        """The parent's parameters mutated; a child equal to a trial asked before is mutated
        again (``RETRIES`` times), then drawn from the priors (as often), then kept."""
        seen = [t.params for t in study.get_trials(deepcopy=False) if t.params]
        dists = parent.distributions
        child: dict[str, Any] = {}
        for attempt in range(2 * self.RETRIES + 1):
            if attempt < self.RETRIES:
                moved = {k: self._mutate(v, dists[k]) for k, v in parent.params.items()}
                child = self._keep_switch(study, parent, moved)
            elif attempt < 2 * self.RETRIES:
                child = {k: self._prior(dists[k]) for k in parent.params}
            if child not in seen:
                break
        return child

    def _share_draws(self, study, choices: Sequence[Any], *, greedy: bool = False) -> list[float]:
        """One Thompson draw per choice from Beta(1 + its finished trials' wins, 1 + their losses)
        against the other choices' trials (see the module docstring); ``greedy``: each choice's
        posterior mean instead, plus a draw a thousandth as large that only breaks ties."""
        name = self.share[0]
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and name in t.params and np.all(np.isfinite(t.values))]
        labels = np.array([str(t.params[name]) for t in done])
        # beats[i, j]: trial i dominates trial j, and they have different choices
        beats = (dominance(self._oriented(study, np.array([t.values for t in done], dtype=float))) if done
                 else np.zeros((0, 0), dtype=bool)) & (labels[:, None] != labels[None])
        draws = []
        for c in choices:
            mine = labels == str(c)
            wins, losses = int(beats[mine].any(axis=1).sum()), int(beats[:, mine].any(axis=0).sum())
            draw = self._rng.beta(1 + wins, 1 + losses)
            draws.append((1 + wins) / (2 + wins + losses) + 1e-3 * draw if greedy else draw)
        return draws

    def _share_choice(self, study, trial, choices: Sequence[Any]) -> Any:
        """One of ``choices``, the largest of their Thompson draws. The last enqueued trial (no other
        one waits) is the warm start's most compressed end: no later enqueued trial learns from its
        choice, and on a flat front it holds most of the hypervolume, so it is not drawn but takes
        ``_leading_choice``, or with none the largest posterior mean (on ``demo`` at 10 seeds the
        draws gave it to ``trp``, ``elrt`` or ``lrpet`` on 4, at 0.60-0.96 validation accuracy, where
        ``posthoc`` and ``deeptwist`` reached 0.956-0.984 at the same 10x; benchmarks/RESULTS.md).
        Recorded in the trial's ``SHARE_KEY``."""
        last = not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        choice = self._leading_choice(study, choices) if last else None
        if choice is None:
            choice = choices[int(np.argmax(self._share_draws(study, choices, greedy=last)))]
        study._storage.set_trial_system_attr(trial._trial_id, SHARE_KEY, choice)
        return choice

    def _leading_choice(self, study, choices: Sequence[Any]) -> Any | None:
        """The choice of the most compressed trial (along the fill objective) on the front of the
        finished trials that reach every floor: the method that holds the usable front nearest the
        warm start's most compressed end. None without a fill objective, without floors (then the
        front's most compressed trial is its least accurate one, not a usable model) or without
        such a trial. A record
        of dominance counts can tie there: in a ``make demo`` run the top end was asked with four
        trials in, ``trp`` (one win, by one validation image at 2.6x) tied ``deeptwist`` (its 7.7x
        trial above ``lrpet``'s 4.4x) and the draw gave it ``trp`` (0.810 at 10x)."""
        fill, share = getattr(self, "fill", None), getattr(self, "share", None)
        if fill is None or share is None or not getattr(self, "floors", {}):
            return None
        names = {str(c): c for c in choices}
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and str(t.params.get(share[0])) in names]
        done, raw = self._floored(study, done, strict=True)
        if not done:
            return None
        values = self._oriented(study, raw)
        lead = max(front(values), key=lambda i: values[i, fill[1]])
        return names[str(done[lead].params[share[0]])]

    def _keep_switch(self, study, parent: FrozenTrial, child: dict[str, Any]) -> dict[str, Any]:
        """A child whose mutation switched the shared parameter (the method) keeps the switch only
        when the new choice's Thompson draw beats the parent's choice's; else it keeps the parent's
        choice (its other parameters mutated as drawn). A method whose trials keep losing is then
        rarely switched to (on resnet20 the plain switch sent 4 of the 20 refinements of 5 seeds
        to ``deeptwist``, 3 of them below the floor)."""
        share = getattr(self, "share", None)  # getattr: a sampler pickled before shares existed
        if share is None or share[0] not in child or child[share[0]] == parent.params.get(share[0]):
            return child
        old, new = parent.params[share[0]], child[share[0]]
        if old not in share[1] or new not in share[1]:
            return child
        draw_old, draw_new = self._share_draws(study, [old, new])
        return child if draw_new > draw_old else {**child, share[0]: old}

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        share = getattr(self, "share", None)  # getattr: a sampler pickled before shares existed
        if share is not None and param_name == share[0] and "fixed_params" in trial.system_attrs \
                and isinstance(param_distribution, CategoricalDistribution):
            choices = [c for c in share[1] if c in param_distribution.choices]
            if choices:
                return self._share_choice(study, trial, choices)
        child = self._children.get(trial.number)
        if child is None or param_name not in child or not _inside(child[param_name], param_distribution):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return child[param_name]

    def _mutate(self, value: Any, dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            if others and self._rng.rand() < self.switch:
                return others[self._rng.randint(len(others))]
            return value
        if isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high = float(dist.low), float(dist.high)
            if high <= low:
                return dist.low
            lo, hi = (math.log(low), math.log(high)) if dist.log else (low, high)
            x = math.log(value) if dist.log else float(value)
            x = _reflect(x + self._rng.normal(0.0, self.step * (hi - lo)), lo, hi)
            return self._snap(math.exp(x) if dist.log else x, dist)
        return value

    def _prior(self, dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution):
            return dist.choices[self._rng.randint(len(dist.choices))]
        if isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high = float(dist.low), float(dist.high)
            if dist.log:
                return self._snap(math.exp(self._rng.uniform(math.log(low), math.log(high))), dist)
            return self._snap(self._rng.uniform(low, high), dist)
        raise TypeError(f"FrontSampler: unsupported distribution {dist!r}")

    @staticmethod
    def _snap(v: float, dist) -> Any:
        """``v`` on the distribution's grid (int, stepped float) and inside its bounds."""
        if isinstance(dist, IntDistribution):
            v = round((v - dist.low) / dist.step) * dist.step + dist.low
            return int(min(max(v, dist.low), dist.high))
        if dist.step is not None:
            v = round((v - dist.low) / dist.step) * dist.step + dist.low
        return float(min(max(v, dist.low), dist.high))

    def after_trial(self, study, trial, state, values: Sequence[float] | None) -> None:
        self._children.pop(trial.number, None)
