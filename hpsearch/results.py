"""A sweep's results: one pandas row per trial, every trial's curve, the leaderboard.

Statuses: completed, early-stopped (stopped by the scheduler), diverged, errored, skipped-invalid,
interrupted (Ctrl-C stopped the sweep while the trial ran; ``--resume`` reruns it).
Best = the lowest *best-over-training* validation loss among completed and early-stopped trials.
(Tune's ``get_best_result`` looks at the last report and silently drops NaN trials; not used.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.files import atomic_write
from trainables.errors import SweepError, brief, shell_command
from trainables.status import (COMPLETED, DIVERGED, EARLY_STOPPED, ERRORED, FAILED, INTERRUPTED, RANKED,  # noqa: F401
                               RUNNING, SKIPPED, STATUSES)

CURVE_COLUMNS = ["trial_id", "step", "epoch", "tokens_seen", "lr", "train_loss", "val_loss"]
BRANCH_COLUMNS = ["cooldown_tokens", "cooldown_val_loss"]
"""A WSD trial's cooldown branch (train.cooldowns): the budget it scores and its validation loss, on the
row of the evaluation that reported it (NaN elsewhere)."""
REQUIRED_COLUMNS = ("trial_id", "status", "best_val_loss", "best_val_tokens", "tokens_seen", "wall_time_s")
METRIC_COLUMNS = ["best_val_loss", "best_val_tokens", "final_val_loss", "final_train_loss",
                  "tokens_seen", "steps", "wall_time_s", "cpus", "gpus", "error"]


def trial_status(last: dict, error: object, finished: bool = True) -> str:
    """The results table's status; ``finished`` False: Tune stopped the trial on Ctrl-C (see hpsearch.finished)."""
    if error is not None:
        return ERRORED
    status = last.get("hp_status")
    if status in (COMPLETED, DIVERGED, SKIPPED):
        return status
    return EARLY_STOPPED if finished else INTERRUPTED


def _error_line(error: object) -> str:
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(error).__name__


def collect(result_grid, axes: list[str], *, cpus: float, gpus: float,
            finished: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, curves) from a Tune ResultGrid; rows sorted by trial id so reruns compare equal.

    ``finished``: the ids of the trials that really ended (hpsearch.finished); the others were
    interrupted. None: unknown, every trial counts as finished.
    """
    rows, curves = [], []
    # a trial that never reported has no config in its Result: Tune's own trial record holds it
    tune_trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    planned = {Path(t.path).name: t.config for t in tune_trials if getattr(t, "path", None)}
    for result in result_grid:
        last = dict(result.metrics or {})
        trial_id = last.get("trial_id") or Path(result.path).name
        history = result.metrics_dataframe
        evals = pd.DataFrame(columns=CURVE_COLUMNS)
        if history is not None and len(history) and set(CURVE_COLUMNS[1:]) <= set(history.columns):
            # evaluation reports only: not the skip notice, not the diverged trial's closing repeat
            keep = history["hp_status"].isin((RUNNING, COMPLETED)) if "hp_status" in history else True
            branch = [c for c in BRANCH_COLUMNS if c in history.columns]
            h = history.loc[keep, CURVE_COLUMNS[1:] + branch].astype(float)
            h = h.loc[np.isfinite(h["val_loss"].to_numpy())].astype({"step": int, "tokens_seen": int})
            h.insert(0, "trial_id", trial_id)
            evals = h
        curves.append(evals)
        ended = finished is None or last.get("trial_id") in finished or Path(result.path).name in finished
        status = trial_status(last, result.error, ended)
        finite = evals["val_loss"].astype(float) if len(evals) else pd.Series(dtype=float)
        if len(finite):
            best_i = finite.idxmin()
            best, best_tokens = float(finite[best_i]), int(evals.loc[best_i, "tokens_seen"])
        else:
            best, best_tokens = math.nan, 0
        row = {"trial_id": trial_id, "status": status}
        config = result.config or planned.get(Path(result.path).name) or {}
        for axis in axes:
            row[axis] = config.get(axis)
        row.update({
            "best_val_loss": best,
            "best_val_tokens": best_tokens,
            "final_val_loss": float(evals["val_loss"].iloc[-1]) if len(evals) else math.nan,
            "final_train_loss": float(evals["train_loss"].iloc[-1]) if len(evals) else math.nan,
            "tokens_seen": int(last.get("tokens_seen") or 0),
            "steps": int(last.get("step") or 0),
            "wall_time_s": float(last.get("time_total_s") or 0.0),
            "cpus": cpus,
            "gpus": gpus,
            "error": _error_line(result.error) if result.error is not None else (last.get("message") or ""),
        })
        rows.append(row)
    trials = pd.DataFrame(rows, columns=["trial_id", "status", *axes, *METRIC_COLUMNS])
    trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    curve_df = pd.concat([c for c in curves if len(c)], ignore_index=True) if any(len(c) for c in curves) \
        else pd.DataFrame(columns=CURVE_COLUMNS)
    if len(curve_df):
        curve_df = curve_df.sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)
    return trials, curve_df


# -- files ----------------------------------------------------------------------------------------

def save(sweep_dir: Path, trials: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Write trials.parquet/.csv and curves.parquet, each atomically."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_dir / "trials.parquet", lambda p: trials.to_parquet(p, index=False))
    atomic_write(sweep_dir / "trials.csv", lambda p: trials.to_csv(p, index=False))
    atomic_write(sweep_dir / "curves.parquet", lambda p: curves.to_parquet(p, index=False))


def load(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(trials, curves, meta) of a finished sweep directory; SweepError naming the file if unusable."""
    d = Path(sweep_dir)
    trials_path, meta_path, curves_path = d / "trials.parquet", d / "sweep.json", d / "curves.parquet"
    if not d.is_dir():
        raise SweepError(f"no sweep at {d}; list sweeps with `ls {d.parent}` or run `hpsearch sweep --name NAME`")
    if not trials_path.is_file():
        raise SweepError(f"{d} has no trials.parquet (the sweep did not finish); "
                         f"finish it with `{shell_command('hpsearch', 'sweep', '--name', d.name, '--results-dir', d.parent, '--resume')}`")
    if not meta_path.is_file():
        raise SweepError(f"{meta_path} does not exist; the directory was not written by `hpsearch sweep`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SweepError(f"{meta_path}: not valid JSON ({exc}); restore it or rerun the sweep") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("space"), dict):
        raise SweepError(f"{meta_path}: expected an object with a 'space' key; rerun the sweep")
    trials = _read_parquet(trials_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in trials.columns]
    if missing:
        raise SweepError(f"{trials_path}: missing column(s) {', '.join(missing)}; {rewrite_hint(d)}")
    curves = _read_parquet(curves_path) if curves_path.is_file() else pd.DataFrame(columns=CURVE_COLUMNS)
    return trials, curves, meta


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise SweepError(f"{path}: cannot be read as parquet ({type(exc).__name__}: {exc}); "
                         f"{rewrite_hint(path.parent)}") from None


def rewrite_hint(sweep_dir: Path) -> str:
    """How to rebuild a sweep's damaged tables: --resume collects them again from Tune's records (finished
    trials are not trained again); a new sweep of that name would be refused."""
    command = shell_command("hpsearch", "sweep", "--name", sweep_dir.name, "--results-dir", sweep_dir.parent, "--resume")
    return f"rebuild the tables from Tune's records with `{command}` (finished trials are not trained again)"


# -- views ----------------------------------------------------------------------------------------

def ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed and early-stopped trials with a finite best_val_loss, best first (ties by trial id)."""
    loss = pd.to_numeric(trials["best_val_loss"], errors="coerce").to_numpy(dtype=float)
    ok = trials[trials["status"].isin(RANKED) & np.isfinite(loss)]
    return ok.sort_values(["best_val_loss", "trial_id"], kind="stable")


def trial_params(row: pd.Series, axes: list[str]) -> dict:
    """A trial's hyperparameters: its value on each axis the row holds (an empty cell, None or NaN, is unset)."""
    return {a: row[a] for a in axes if a in row and not (row[a] is None or (isinstance(row[a], float)
                                                                             and math.isnan(row[a])))}


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    r = ranked(trials)
    return None if r.empty else r.iloc[0]


def summary_line(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts()
    parts = [f"{counts[s]} {s}" for s in STATUSES if s in counts]
    tokens = int(trials["tokens_seen"].sum())
    wall = float(trials["wall_time_s"].sum())
    best = best_trial(trials)
    best_txt = f"; best val loss {best['best_val_loss']:.4f} ({best['trial_id']})" if best is not None else \
        "; no trial completed"
    return f"{len(trials)} trials: {', '.join(parts)}; {tokens:,} training tokens; {wall:,.0f} s of trial time{best_txt}"


def leaderboard(trials: pd.DataFrame, axes: list[str], *, top: int = 10, sort: str = "best_val_loss") -> str:
    if sort not in trials.columns:
        raise SweepError(f"cannot sort by {brief(sort, limit=60)}; choose one of: {', '.join(trials.columns)}")
    board = trials.copy()
    board["_rank"] = ~board["status"].isin(RANKED)
    board = board.sort_values(["_rank", sort, "trial_id"], kind="stable").head(top)
    cols = ["trial_id", "status", *axes, "best_val_loss", "best_val_tokens", "tokens_seen", "wall_time_s"]
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4g}".format):
        return board[cols].to_string(index=False)
