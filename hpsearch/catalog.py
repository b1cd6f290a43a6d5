"""The sweeps in a results directory and where each stands: what `hpsearch ls` prints.

A sweep's state comes from its sweep.json (see hpsearch.sweep): ``finished`` or ``interrupted`` is
written when its results are collected; with neither, the sweep is running if Tune has saved its
state (a driver that was killed looks the same: ``--resume`` continues it), else it failed before its
first trial started. Trials done are counted from trials.parquet once written, else from Tune's last
saved experiment state.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainables.errors import SweepError
from trainables.status import INTERRUPTED, METRIC, RANKED

FINISHED, INTERRUPTED_STATE, RUNNING, NOT_STARTED, UNREADABLE = \
    "finished", "interrupted", "running", "failed-before-start", "unreadable"


@dataclass(frozen=True)
class SweepRow:
    name: str
    mode: str
    space: str
    done: int | None
    total: int | None
    best: float | None
    state: str
    started: str = ""


def list_sweeps(results_dir: str | Path) -> list[SweepRow]:
    """One row per directory of ``results_dir`` holding a sweep.json, oldest first (then by name)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise SweepError(f"no directory {root}: no sweep was written there (pass the --results-dir "
                         "`hpsearch sweep` wrote to)")
    rows = [sweep_row(d) for d in sorted(root.iterdir()) if (d / "sweep.json").is_file()]
    return sorted(rows, key=lambda r: (r.started, r.name))


def sweep_row(sweep_dir: Path) -> SweepRow:
    try:
        meta = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        return SweepRow(sweep_dir.name, "?", "?", None, None, None, UNREADABLE)
    space = meta.get("space") if isinstance(meta.get("space"), dict) else {}
    mode = str(meta.get("mode", "?"))
    trials = _trials(sweep_dir / "trials.parquet")
    tune_dir = _tune_dir(sweep_dir, meta)
    if "interrupted" in meta:
        state = INTERRUPTED_STATE
    elif "finished" in meta:
        state = FINISHED
    elif trials is not None or _tune_states(tune_dir):
        state = RUNNING
    else:
        state = NOT_STARTED
    if trials is not None and state != RUNNING:
        done = int((trials["status"] != INTERRUPTED).sum())
        loss = pd.to_numeric(trials.loc[trials["status"].isin(RANKED), METRIC], errors="coerce")
        loss = loss[loss.map(math.isfinite)]
        best = float(loss.min()) if len(loss) else None
    else:
        done, best = (_tune_done(tune_dir) if state == RUNNING else 0), None
    return SweepRow(sweep_dir.name, mode, str(space.get("name", "?")), done, _total(meta, space, mode), best,
                    state, str(meta.get("started", "")))


def format_table(rows: list[SweepRow]) -> str:
    """The rows as an aligned text table."""
    head = ("NAME", "MODE", "SPACE", "TRIALS", "BEST VAL LOSS", "STATE")
    body = [(r.name, r.mode, r.space,
             f"{'?' if r.done is None else r.done}/{'?' if r.total is None else r.total}",
             "-" if r.best is None else f"{r.best:.4f}", r.state) for r in rows]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (head, *body))


def _trials(path: Path) -> pd.DataFrame | None:
    try:
        trials = pd.read_parquet(path) if path.is_file() else None
    except Exception:  # a damaged table: the row shows what sweep.json says
        return None
    return trials if trials is not None and {"status", METRIC} <= set(trials.columns) else None


def _tune_dir(sweep_dir: Path, meta: dict) -> Path | None:
    """The sweep's local Tune directory (None for URI storage, which is not looked into)."""
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    storage = options.get("storage")
    if not storage:
        return sweep_dir / "tune"
    return None if "://" in str(storage) else Path(str(storage)) / sweep_dir.name


def _tune_states(tune_dir: Path | None) -> list[Path]:
    return sorted(tune_dir.glob("experiment_state-*.json")) if tune_dir is not None and tune_dir.is_dir() else []


def _tune_done(tune_dir: Path | None) -> int | None:
    """Trials Tune's last saved state records as ended (TERMINATED or ERROR); None if unreadable."""
    states = _tune_states(tune_dir)
    try:
        data = json.loads(max(states, key=lambda p: p.stat().st_mtime).read_text()) if states else None
        trials = [json.loads(t[0]) for t in data["trial_data"]] if data else []
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return sum(t.get("status") in ("TERMINATED", "ERROR") for t in trials)


def _total(meta: dict, space: dict, mode: str) -> int | None:
    """Trials the sweep will run: num_samples, times the grid's size for a grid sweep."""
    n = meta.get("num_samples")
    if not isinstance(n, int):
        return None
    if mode != "grid":
        return n
    size = 1
    for dist in (space.get("axes") or {}).values():
        values = next(iter(dist.values()), None) if isinstance(dist, dict) and len(dist) == 1 else None
        if not isinstance(values, list):
            return None
        size *= len(values)
    return size * n
