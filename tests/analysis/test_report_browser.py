"""The report as a real browser lays it out (headless Chromium; skipped where none is installed):
at a 1280 px desktop window and a 390 px phone, no front-table cell breaks a word or a line, and
a table wider than the window scrolls in its own box while the page itself does not (issue 28:
`TERMINATE/D` at 1280 px, one character per line at 390 px)."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from analysis.report import ReportSweep, render_report
from rank_search import schema

COLUMNS = ["trial_id", "config/method", "status", schema.VAL_ACCURACY, schema.MACS_COMPRESSION, schema.TEST_ACCURACY,
           schema.PARAMS_COMPRESSION, schema.LATENCY_SPEEDUP, schema.COMPACT_MACS, schema.COMPACT_PARAMS,
           "epochs_run", "knee"]


def real_front() -> pd.DataFrame:
    """A front as ``analyze`` shows it (values of a real sweep; the words issue 28 saw cut)."""
    return pd.DataFrame({
        "trial_id": ["947d75f8", "09e8261a"], "config/method": ["deeptwist", "posthoc"],
        "status": ["TERMINATED"] * 2, schema.VAL_ACCURACY: [0.978, 0.964], schema.MACS_COMPRESSION: [1.5007, 9.0058],
        schema.TEST_ACCURACY: [0.961, 0.959], schema.PARAMS_COMPRESSION: [1.0675, 11.2643],
        schema.LATENCY_SPEEDUP: [1.79, 6.91], schema.COMPACT_MACS: [7837536, 1305984],
        schema.COMPACT_PARAMS: [330690, 31338], "epochs_run": [2, 2], "knee": [False, True]})


BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

#: Measures the layout once the page is drawn and writes it into #probe (read from the dumped DOM).
PROBE = """<script>
window.addEventListener('load', () => {
  const lines = el => { const r = document.createRange(); r.selectNodeContents(el);
    return new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top))).size; };
  const cells = [...document.querySelectorAll('table.front th, table.front td')];
  const out = {
    width: window.innerWidth,
    broken: cells.filter(c => lines(c) > c.querySelectorAll('br').length + 1).map(c => c.textContent),
    page_scrolls: document.documentElement.scrollWidth > window.innerWidth + 1,
    front_scrolls: [...document.querySelectorAll('table.front')].map(t => t.parentElement.scrollWidth >
                                                                          t.parentElement.clientWidth),
  };
  window.parent.postMessage(JSON.stringify(out), '*');
});
</script>"""
#: The report in a frame exactly WIDTH px wide (a headless window is at least 500 px wide).
FRAME = """<!DOCTYPE html><html><body style="margin:0"><pre id="probe"></pre>
<iframe src="{src}" style="width:{width}px;height:900px;border:0"></iframe><script>
window.addEventListener('message', e => {{ document.getElementById('probe').textContent = e.data; }});
</script></body></html>"""


def _layout(tmp_path, width: int) -> dict:
    facts = [("space", "demo: lenet5_wide on mnist5k, 2 epochs; ranks: sensitivity or uniform allocation, macs target "
                       "1.5-10x (log), proxy bn"), ("experiment", "/home/someone/runs/demo-2026-12-06_11-46-32")]
    page = render_report(title="Rank search analysis: demo", intro=facts, figures=[],
                         sweeps=[ReportSweep("demo", "/runs/demo", facts, real_front(), COLUMNS, None)])
    (tmp_path / "report.html").write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    frame = tmp_path / "frame.html"
    frame.write_text(FRAME.format(src="report.html", width=width), encoding="utf-8")
    done = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", frame.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1), done.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
@pytest.mark.parametrize("width", [1280, 390])
def test_front_table_at_desktop_and_phone_widths(tmp_path, width) -> None:
    layout = _layout(tmp_path, width)
    assert layout["width"] == width
    assert layout["broken"] == []  # no cell wraps (a heading breaks only at its own <br>)
    assert not layout["page_scrolls"]  # the page fits the window
    # at 1280 px the front fits; on a phone it scrolls sideways inside its box
    assert layout["front_scrolls"] == [width < 1000]
