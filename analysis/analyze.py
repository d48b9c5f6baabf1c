"""Analyse one or more sweeps into a folder: trials.csv, pareto.csv, quality.csv, figures,
report.html.

``analyze`` writes into an existing folder (the CLI hands it a temporary one and renames it
when everything is written) and returns the text summary it also embeds in the report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from rank_search import schema
from rank_search.errors import RankSearchError

from ._labels import format_value, hypervolume_unit, ranks_text, short_label, slug
from .hypervolume import default_reference, hypervolume, reference_text
from .loading import Experiment, epoch_history, load_experiment, read_profile, run_record
from .pareto import pareto_mask
from .plots import (_get_hypervolume_info, _get_learning_curves_info, _get_pareto_front_info,
                    _get_rank_heatmap_info, _get_sensitivity_info, plot_hypervolume, plot_learning_curves,
                    plot_pareto_front, plot_rank_heatmap, plot_sensitivity, save_figure)
from .quality import Quality, quality
from .report import ReportFigure, ReportSweep, render_report
from .summary import front, table, with_stops
from .timing import latency_note

DEFAULT_OBJECTIVES = schema.DEFAULT_OBJECTIVES
SHOWN = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION,
         schema.LATENCY_SPEEDUP, schema.LATENCY_SPREAD, schema.COMPACT_MACS, schema.COMPACT_PARAMS)
TRIALS_FILE, PARETO_FILE, QUALITY_FILE, REPORT_FILE = "trials.csv", "pareto.csv", "quality.csv", "report.html"


@dataclass
class Sweep:
    label: str
    experiment: Experiment
    front: pd.DataFrame  # Pareto-optimal usable trials, best first objective first, ``knee`` column
    quality: Quality


@dataclass
class Analysis:
    sweeps: list[Sweep]
    objectives: tuple[tuple[str, str], ...]
    reference: np.ndarray
    files: list[str]
    summary: str


def sweep_labels(paths: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """User labels (one per path, distinct), else folder names made distinct."""
    if labels:
        if len(labels) != len(paths):
            raise RankSearchError(f"--labels needs one label per experiment ({len(paths)}), got {len(labels)}")
        if len(set(labels)) != len(labels):
            raise RankSearchError(f"--labels must be distinct, got {list(labels)}")
        return list(labels)
    names = [os.path.basename(p.rstrip("/")) or p for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def resolve_objectives(experiments: Sequence[Experiment],
                       objectives: Sequence[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """The user's objectives, else the first sweep's (when it has two or more), else the default
    pair; every metric must be reported by some trial."""
    if objectives:
        chosen = tuple(objectives)
    else:
        own = tuple(experiments[0].objectives) if experiments else ()
        chosen = own if len(own) >= 2 else DEFAULT_OBJECTIVES
    if len(chosen) < 2:
        raise RankSearchError(f"analysis needs at least 2 objectives, got {[f'{m}:{d}' for m, d in chosen]}")
    reported = set().union(*(set(e.trials.columns) for e in experiments if not e.trials.empty)) \
        if any(not e.trials.empty for e in experiments) else None
    for metric, _ in chosen:
        if reported is not None and metric not in reported:
            known = sorted(c for c in reported if not c.startswith("config/") and "/" not in c)
            raise RankSearchError(f"objective {metric!r} is not reported by any trial; reported metrics: "
                                  f"{', '.join(known)}")
    return chosen


def _front_columns(objectives: Sequence[tuple[str, str]]) -> list[str]:
    metrics = [m for m, _ in objectives]
    return ["trial_id", "config/method", "status", *metrics, *[m for m in SHOWN if m not in metrics], "epochs_run",
            "knee"]


def _pct(value: float | None) -> str:
    return format_value(schema.VAL_ACCURACY, value)


def _quality_facts(q: Quality) -> list[tuple[str, str]]:
    """(name, value) lines of the quality measures, for the report and the text summary."""
    if q.dense_accuracy is None and q.dense_test_accuracy is None:
        dense = f"unknown (no {schema.DENSE_RECORD_FILE} with accuracies, no finished full trial)"
    else:
        dense = f"val {_pct(q.dense_accuracy)}, test {_pct(q.dense_test_accuracy)}; from {q.dense_source}"
    pt = f"{100 * q.margin:g} pt"
    if q.floor is None:
        hv = f"{q.log_hypervolume:.4g} (no usable trial to set a floor)"
    elif q.floor_from_dense:
        hv = f"{q.log_hypervolume:.4g} (floor: val {_pct(q.floor)})"
    else:
        hv = f"{q.log_hypervolume:.4g} (floor: val {_pct(q.floor)} = best trial - {pt}, no dense reference)"
    levels = list(q.best_val)
    best = "; ".join(f"{level:g}×: {_pct(q.best_val[level])} / {_pct(q.test_of_best_val.get(level))}"
                     for level in levels)
    return [("dense reference", dense),
            (f"log hypervolume (log2 MACs ×, accuracy above dense - {pt})", hv),
            (f"best val accuracy / the same trial's test accuracy at >= {', '.join(f'{level:g}×' for level in levels)}",
             best or "-")]


def _facts(sweep: Sweep, hv: float) -> list[tuple[str, str]]:
    exp, t = sweep.experiment, sweep.experiment.trials
    launch = (exp.sweep or {}).get("launch", {})
    space = (exp.sweep or {}).get("space", {})
    counts = ", ".join(f"{k} {int(v)}" for k, v in with_stops(t).value_counts().items()) if not t.empty else "none"
    facts = [("trials", f"{len(t)}" + (f" of {launch['num_samples']}" if launch.get("num_samples") else "")
              + f" ({counts})")]
    if space:
        facts += [("space", f"{space.get('name')}: {space.get('model')} on {space.get('dataset')}, "
                            f"{space.get('epochs')} epochs; ranks: {ranks_text(space.get('ranks'))}"),
                  ("methods", ", ".join(space.get("methods", {})))]
    if launch:
        facts.append(("searcher / scheduler", f"{launch.get('searcher')} / {launch.get('scheduler')}"
                                              f" (seed {launch.get('seed')})"))
    facts += [("front", f"{len(sweep.front)} trials"), ("hypervolume", f"{hv:.4g}"), *_quality_facts(sweep.quality)]
    note = latency_note(t)
    if note:
        facts.append(("latency speed-ups", note))
    if not sweep.front.empty and sweep.front["knee"].any():
        k = sweep.front[sweep.front["knee"]].iloc[0]
        facts.append(("knee", f"trial {k['trial_id']} ({k.get('config/method')}): " + ", ".join(
            f"{short_label(m)} {format_value(m, k[m])}" for m in (schema.VAL_ACCURACY, schema.TEST_ACCURACY,
                                                                   schema.MACS_COMPRESSION) if m in k)))
    return facts


def _figure(fig, out_dir: str, stem: str, title: str, caption: str, files: list[str]) -> ReportFigure:
    paths = save_figure(fig, out_dir, stem)
    files += paths
    with open(paths[0], "rb") as fh:
        return ReportFigure(title, caption, fh.read())


def _summary(sweeps: Sequence[Sweep], objectives, reference, hvs: Mapping[str, float]) -> str:
    lines = [f"objectives: {', '.join(f'{m} ({d})' for m, d in objectives)}; "
             f"hypervolume reference point: {reference_text(objectives, reference)}"]
    cols = _front_columns(objectives)
    for s in sweeps:
        t = s.experiment.trials
        lines += ["", f"sweep {s.label} ({s.experiment.path}): {len(t)} trials, front of {len(s.front)}, "
                      f"hypervolume {hvs[s.label]:.4g}"]
        lines += [f"  {name}: {value}" for name, value in _quality_facts(s.quality)]
        note = latency_note(t)
        if note:
            lines.append(f"  latency speed-ups: {note}")
        if not s.front.empty:
            shown = s.front.assign(status=with_stops(s.front), knee=s.front["knee"].map({True: "<- knee", False: ""}))
            lines.append(table(shown, cols))
    return "\n".join(lines)


def analyze(paths: Sequence[str], out_dir: str, *, labels: Sequence[str] | None = None,
            objectives: Sequence[tuple[str, str]] | None = None, reference: Sequence[float] | None = None,
            log: Callable[[str], None] = lambda _: None) -> Analysis:
    """Load the sweeps at ``paths`` and write the analysis files into ``out_dir``.

    Args:
        labels: one per sweep (default: folder names).
        objectives: (metric, max|min) pairs (default: the first sweep's).
        reference: hypervolume reference point (default: ``default_reference`` over all trials).
        log: called with one progress line per step.
    """
    names = sweep_labels(paths, labels)
    experiments = [load_experiment(path) for path in paths]  # every folder is checked before any output
    objectives = resolve_objectives(experiments, objectives)
    metrics = [m for m, _ in objectives]
    directions = [d for _, d in objectives]
    everything = pd.concat([e.trials for e in experiments if not e.trials.empty], ignore_index=True) \
        if any(not e.trials.empty for e in experiments) else pd.DataFrame()
    if reference is not None and len(reference) != len(objectives):
        raise RankSearchError(f"the reference point needs {len(objectives)} values (one per objective: "
                              f"{', '.join(metrics)}), got {len(reference)}")
    try:
        ref = np.asarray(reference, dtype=float) if reference is not None \
            else default_reference(objectives, everything)
    except ValueError as exc:
        raise RankSearchError(str(exc)) from None
    sweeps = [Sweep(label, exp, front(exp, objectives=objectives), quality(exp))
              for label, exp in zip(names, experiments)]
    hvs = {s.label: hypervolume(s.front[metrics].to_numpy(dtype=float) if not s.front.empty else np.zeros((0, 2)),
                                directions, ref) for s in sweeps}
    files: list[str] = []
    for label, exp in zip(names, experiments):
        log(f"loaded sweep {label}: {len(exp.trials)} trials from {exp.path}")

    log("writing trials.csv, pareto.csv and quality.csv")
    _write_tables(sweeps, objectives, out_dir, files)

    log("drawing the Pareto front and hypervolume figures")
    by_label = {s.label: s.experiment.trials for s in sweeps}
    overview = [
        _figure(plot_pareto_front(_get_pareto_front_info(by_label, objectives)), out_dir, "pareto_front",
                "Pareto front", "Every trial (faded = dominated, hollow = unfinished), each sweep's front "
                "highlighted and joined by its staircase, the knee circled.", files),
        _figure(plot_hypervolume(_get_hypervolume_info(by_label, objectives, ref)), out_dir, "hypervolume",
                "Hypervolume vs trials", f"Volume dominated by the front of the first k trials (start order), "
                f"bounded by the reference point {reference_text(objectives, ref)}, in units of "
                f"{hypervolume_unit(metrics)}.", files),
    ]
    report_sweeps = []
    stems = [slug(s.label) for s in sweeps]
    stems = [st if stems.count(st) == 1 else f"{st}-{i + 1}" for i, st in enumerate(stems)]  # "a b", "a_b"
    for s, stem in zip(sweeps, stems):
        log(f"drawing rank heatmap and learning curves of sweep {s.label} ({len(s.front)} front trials)")
        exp = s.experiment
        records = {str(r["trial_id"]): run_record(exp.path, r["folder"], r.get("checkpoint"))
                   for _, r in s.front.iterrows()}
        profile = read_profile(exp.path)
        info = _get_rank_heatmap_info(s.front, objectives, label=s.label, run_records=records,
                                      profile=profile[0] if profile else None)
        histories = {str(r["trial_id"]): epoch_history(exp.path, r["folder"]) for _, r in s.front.iterrows()}
        figs = [
            _figure(plot_rank_heatmap(info), out_dir, f"rank_heatmap-{stem}", "Per-layer ranks of the front",
                    "Rank ratio (rank / max rank) of every layer for each front trial; cell text is the "
                    "integer rank from the trial's last checkpoint (Tucker-2: out×in ranks), and each layer's "
                    "maximum rank is under its name. A Tucker-2 cell's colour is the mean of its two ratios "
                    "(out rank / max out, in rank / max in).", files),
            _figure(plot_learning_curves(_get_learning_curves_info(s.front, histories, label=s.label)), out_dir,
                    f"learning_curves-{stem}", "Learning curves of the front",
                    "Validation accuracy after each epoch: a colour per trial, a marker per method; the knee "
                    "trial is drawn thicker, unfinished trials dashed, a curve that repeats an earlier trial's "
                    "dotted over it.", files),
        ]
        if profile is not None:
            log(f"drawing the sensitivity profile of sweep {s.label}")
            sens = _get_sensitivity_info(*profile, label=s.label, reference=s.quality.dense_accuracy)
            dense_words = f"dashed: {sens.dense_label}" if sens.dense_label else "no dense value in the profile"
            if sens.reference is not None:
                dense_words += (f"; dotted: the {sens.reference_label} (the dense reference's validation accuracy, "
                                f"as launch reports it; the proxy measures the dense model its own way)")
            figs.append(_figure(plot_sensitivity(sens), out_dir, f"sensitivity-{stem}", "Layer sensitivity profile",
                                f"The dense reference with only one layer decomposed, at each rank ratio (x "
                                f"axis, log scale): {sens.y_label.rsplit(' (', 1)[0]} (proxy {sens.proxy}, from "
                                f"{schema.PROFILE_FILE}). One curve per layer, coloured in model order; "
                                f"{dense_words}. A curve that falls early marks a layer to keep at a high rank.",
                                files))
        settings = yaml.safe_dump(exp.sweep, sort_keys=False) if exp.sweep else None
        report_sweeps.append(ReportSweep(s.label, exp.path, _facts(s, hvs[s.label]),
                                         s.front.assign(status=with_stops(s.front)),
                                         _front_columns(objectives), settings, figs))
    summary = _summary(sweeps, objectives, ref, hvs)
    log("writing report.html")
    intro = [("sweeps", ", ".join(f"{s.label} ({s.experiment.path})" for s in sweeps)),
             ("objectives", ", ".join(f"{m} ({d})" for m, d in objectives)),
             ("hypervolume reference", reference_text(objectives, ref)),
             ("hypervolume unit", hypervolume_unit(metrics))]
    text = render_report(title="Rank search analysis: " + ", ".join(names), intro=intro, figures=overview,
                         sweeps=report_sweeps, summary_text=summary)
    path = os.path.join(out_dir, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    files.append(path)
    return Analysis(sweeps, objectives, ref, files, summary)


def _write_tables(sweeps: Sequence[Sweep], objectives, out_dir: str, files: list[str]) -> None:
    metrics = [m for m, _ in objectives]
    tables, fronts = [], []
    for s in sweeps:
        t = s.experiment.trials.copy()
        if t.empty:
            continue
        t["on_front"] = t.index.isin(s.front.index)
        t["knee"] = t.index.isin(s.front.index[s.front["knee"].astype(bool)])
        t.insert(0, "sweep", s.label)
        tables.append(t)
        f = s.front.copy()
        f.insert(0, "sweep", s.label)
        fronts.append(f)
    trials = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["sweep", "trial_id"])
    pareto = pd.concat(fronts, ignore_index=True) if fronts else pd.DataFrame(columns=["sweep", "trial_id"])
    if len(sweeps) > 1 and not pareto.empty:
        pareto["on_combined_front"] = pareto_mask(pareto[metrics].to_numpy(dtype=float), [d for _, d in objectives])
    first = ["sweep", *[c for c in _front_columns(objectives) if c in pareto.columns]]
    pareto = pareto[first + [c for c in pareto.columns if c not in first]]
    quality_table = pd.DataFrame([{"sweep": s.label, **s.quality.row()} for s in sweeps])
    for name, df in ((TRIALS_FILE, trials), (PARETO_FILE, pareto), (QUALITY_FILE, quality_table)):
        path = os.path.join(out_dir, name)
        df.to_csv(path, index=False)
        files.append(path)
