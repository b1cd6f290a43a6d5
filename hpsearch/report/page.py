"""The report's index.html: summary, checks, best trials, failed trials, plots and notes.

Every value from the sweep is HTML-escaped; the page links the PNGs beside it by file name.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from hpsearch.report.checks import Check
from hpsearch.report.data import Sweep, fmt
from hpsearch.results import summary_line
from trainables.errors import first_line
from trainables.status import FAILED

STYLE = "\n".join([
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
    "li.warn{color:#a40}li.ok{color:#276}table{border-collapse:collapse;font-size:90%}",
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}",
    "figure{display:inline-block;margin:.5em;vertical-align:top}img{max-width:520px}",
    "figcaption{font-size:85%;max-width:520px}",
])
MAX_FAILED = 10
"""Failed trials listed with their error (the rest are in trials.parquet)."""


def render_page(sweep: Sweep, best: pd.DataFrame, checks: list[Check], notes: list[str],
                plots: list[tuple[str, str]]) -> str:
    """The whole page; ``best`` are the trials tabulated, ``plots`` (file name, caption) pairs."""
    e = html.escape
    axes = [a for a in sweep.space.axes if a in best.columns]
    head = "".join(f"<th>{e(h)}</th>" for h in ("trial", "status", "best val loss", *axes))
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(fmt(v))}</td>" for v in
                         (t["trial_id"], t["status"], round(float(t["best_val_loss"]), 4),
                          *(t[a] for a in axes))) + "</tr>"
        for _, t in best.iterrows())
    failed = sweep.trials[sweep.trials["status"].isin(FAILED)].head(MAX_FAILED)
    errors = "".join(f"<li><code>{e(str(t['trial_id']))}</code> {e(str(t['status']))}: "
                     f"{e(_error_line(t.get('error')))}</li>" for _, t in failed.iterrows())
    check_items = "".join(f"<li class=\"{'warn' if c.fired else 'ok'}\">{'⚠' if c.fired else '✓'} "
                          f"{e(c.message)}</li>" for c in checks)
    figures = "".join(f"<figure><img src=\"{e(f)}\" alt=\"{e(f)}\"><figcaption>{e(cap)}</figcaption>"
                      "</figure>" for f, cap in plots)
    parts = [
        "<!doctype html><html><head><meta charset=\"utf-8\">",
        f"<title>{e(sweep.name)} — hpsearch report</title><style>\n{STYLE}</style></head><body>",
        f"<h1>Sweep {e(sweep.name)} <small>({e(sweep.mode)})</small></h1>",
        f"<p>{e(summary_line(sweep.trials))}</p>",
        f"<h2>Checks</h2><ul>{check_items}</ul>",
        f"<h2>Best trials</h2><table><tr>{head}</tr>{rows}</table>",
    ]
    if errors:
        parts.append(f"<h2>Failed trials</h2><ul>{errors}</ul>")
    parts.append(f"<h2>Plots</h2>{figures}")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _error_line(error: Any) -> str:
    """A failed trial's error column, first line only; "(no message)" when empty or missing."""
    return first_line(error) if isinstance(error, str) and error.strip() else "(no message)"
