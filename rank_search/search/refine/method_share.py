"""Method share: Thompson sampling over a categorical parameter's choices (the planned methods),
scored by dominance wins and losses against the other choices' finished trials."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from .pareto import ObjectiveView, dominance, front
from .settings import ShareSettings


@dataclass(frozen=True)
class MethodShare:
    """Chooses an open method, and gates a mutation's switch of method.

    A choice's record counts its finished trials that dominate a trial of another choice (wins)
    and those a trial of another choice dominates (losses); trials of one choice never count
    against each other. Every method takes ``done``, the study's finished trials, in trial order.

    Attributes:
        settings: the parameter and its shared choices.
        fill_objective: index of the objective a gap fill follows (the MACs compression), or None.
    """

    settings: ShareSettings
    fill_objective: int | None = None

    def draws(self, done: Sequence[FrozenTrial], view: ObjectiveView, rng: np.random.RandomState,
              choices: Sequence[Any], *, greedy: bool = False) -> list[float]:
        """One draw per choice, in order, from Beta(1 + wins, 1 + losses); ``greedy``: each
        choice's posterior mean plus a thousandth of that draw (a tie-break). One ``beta`` each."""
        name = self.settings.param
        done = [t for t in done if t.values is not None and name in t.params and np.all(np.isfinite(t.values))]
        labels = np.array([str(t.params[name]) for t in done])
        # beats[i, j]: trial i dominates trial j, and they have different choices
        beats = (dominance(view.oriented(np.array([t.values for t in done], dtype=float))) if done
                 else np.zeros((0, 0), dtype=bool)) & (labels[:, None] != labels[None])
        out = []
        for c in choices:
            mine = labels == str(c)
            wins, losses = int(beats[mine].any(axis=1).sum()), int(beats[:, mine].any(axis=0).sum())
            draw = rng.beta(1 + wins, 1 + losses)
            out.append((1 + wins) / (2 + wins + losses) + 1e-3 * draw if greedy else draw)
        return out

    def leading(self, done: Sequence[FrozenTrial], view: ObjectiveView, choices: Sequence[Any]) -> Any | None:
        """The choice of the trial with the largest fill objective on the front of the finished
        trials that reach every floor. None without a fill objective, without floors (the
        front's top end is then its least accurate trial, not a usable model) or with no trial
        reaching them."""
        if self.fill_objective is None or not view.floors:
            return None
        name = self.settings.param
        names = {str(c): c for c in choices}
        done = [t for t in done if t.values is not None and str(t.params.get(name)) in names]
        done, raw = view.floored(done, strict=True)
        if not done:
            return None
        values = view.oriented(raw)
        lead = max(front(values), key=lambda i: values[i, self.fill_objective])
        return names[str(done[lead].params[name])]

    def choose(self, done: Sequence[FrozenTrial], view: ObjectiveView, rng: np.random.RandomState,
               choices: Sequence[Any], *, last: bool) -> Any:
        """One of ``choices`` for an enqueued trial that leaves the parameter open: the largest
        draw. ``last`` (no other enqueued trial waits, so none learns from this choice): the
        ``leading`` choice, or without one the largest posterior mean."""
        choice = self.leading(done, view, choices) if last else None
        if choice is None:
            choice = choices[int(np.argmax(self.draws(done, view, rng, choices, greedy=last)))]
        return choice

    def gate(self, done: Sequence[FrozenTrial], view: ObjectiveView, rng: np.random.RandomState,
             parent: FrozenTrial, child: dict[str, Any]) -> dict[str, Any]:
        """``child`` (mutated from ``parent``) as kept: a switch between two shared choices stays
        only when the new choice's draw beats the parent's choice's, else the parent's choice
        comes back (the other parameters as mutated)."""
        name, shared = self.settings.param, self.settings.choices
        if name not in child or child[name] == parent.params.get(name):
            return child
        old, new = parent.params[name], child[name]
        if old not in shared or new not in shared:
            return child
        draw_old, draw_new = self.draws(done, view, rng, [old, new])
        return child if draw_new > draw_old else {**child, name: old}
