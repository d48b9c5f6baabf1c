"""A self-contained HTML report: figures embedded as base64 PNG, front tables, sweep settings."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ._labels import format_value, short_label

HEADERS = {"trial_id": "trial", "config/method": "method", "epochs_run": "epochs"}

# Tables never break a word: every front-table cell stays on one line (``nowrap``), and a table
# wider than the window (a phone at 390 px) scrolls sideways in its own box (``.table-wrap``), not
# the page. Fact tables wrap their long sentences at spaces only, never inside a word.
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.6em 0 1.2em; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.85em; table-layout: auto; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
table.front { width: 100%; } table.front th, table.front td { white-space: nowrap; }
table.facts th, table.facts td { white-space: normal; overflow-wrap: normal; } table.facts th { min-width: 8em; }
table.facts td { min-width: 14em; }
td.text, th.text { text-align: left; }
tr.knee td { font-weight: bold; background: #fff7e0; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto;
       font-size: 0.8em; } .muted { color: #666; }
"""


@dataclass
class ReportFigure:
    title: str
    caption: str
    png: bytes


@dataclass
class ReportSweep:
    label: str
    path: str
    facts: list[tuple[str, str]]  # (name, value) rows of the sweep's summary table
    front: pd.DataFrame  # front trials, ``knee`` column marks the knee
    columns: list[str]  # front columns to show, in order
    settings_yaml: str | None
    figures: list[ReportFigure] = field(default_factory=list)


def _numeric_column(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(fig: ReportFigure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure><img alt="{_esc(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{_esc(fig.title)}.</b> {_esc(fig.caption)}</figcaption></figure>")


def front_table_html(front: pd.DataFrame, columns: Sequence[str]) -> str:
    """The front as an HTML table; numbers formatted per metric, the knee row highlighted."""
    cols = [c for c in columns if c in front.columns]
    if front.empty or not cols:
        return '<p class="muted">No trial on the front yet.</p>'
    # a heading of two words or more takes two lines, split at a space by us (cells never wrap)
    head = "".join(f'<th class="{"num" if _numeric_column(front[c]) else "text"}" title="{_esc(c)}">'
                   f'{"<br>".join(_esc(part) for part in _two_lines(header(c)))}</th>' for c in cols)
    rows = []
    for _, row in front.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            numeric = isinstance(v, (int, float)) and not isinstance(v, (bool, np.bool_))
            if isinstance(v, (bool, np.bool_)):
                text = (c if c == "knee" else "yes") if v else ""
            else:
                text = format_value(c, v) if numeric else ("-" if v is None or v != v else str(v))
            cells.append(f'<td class="{"num" if numeric else "text"}">{_esc(text)}</td>')
        cls = ' class="knee"' if bool(row.get("knee", False)) else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table class="front"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _two_lines(text: str) -> list[str]:
    """``text`` split at the space nearest its middle (one part when it has no space)."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return [text]
    cut = min(spaces, key=lambda i: abs(len(text) - 2 * i))
    return [text[:cut], text[cut + 1:]]


def header(column: str) -> str:
    """A front table's column heading: a short human label (``val. accuracy``); the column's
    own name (as in the CSV files) goes into its tooltip."""
    return HEADERS.get(column) or short_label(column)


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    body = "".join(f'<tr><th class="text">{_esc(k)}</th><td class="text">{_esc(v)}</td></tr>' for k, v in facts)
    return f'<div class="table-wrap"><table class="facts">{body}</table></div>'


def render_report(*, title: str, intro: Sequence[tuple[str, str]], figures: Sequence[ReportFigure],
                  sweeps: Sequence[ReportSweep], summary_text: str = "") -> str:
    """The whole report as one HTML string (no external files, no scripts)."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             f"<title>{_esc(title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>", _facts(intro)]
    parts += ["<h2>Overview</h2>", *(_img(f) for f in figures)]
    for sweep in sweeps:
        parts += [f"<h2>Sweep {_esc(sweep.label)}</h2>", f'<p class="muted">{_esc(sweep.path)}</p>',
                  _facts(sweep.facts), "<h3>Pareto front</h3>", front_table_html(sweep.front, sweep.columns),
                  *(_img(f) for f in sweep.figures)]
        if sweep.settings_yaml:
            parts += ["<details><summary>Sweep settings (rank_search_sweep.yaml)</summary>",
                      f"<pre>{_esc(sweep.settings_yaml)}</pre></details>"]
        else:
            parts.append('<p class="muted">No rank_search_sweep.yaml in this experiment.</p>')
    if summary_text:
        parts += ["<h2>Text summary</h2>", f"<pre>{_esc(summary_text)}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)
