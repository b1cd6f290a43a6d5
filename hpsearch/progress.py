"""The sweep's live view in the terminal: one line per event, in the project's words.

Tune's own console output is a box of every trial every 30 s (hundreds of lines for a small sweep),
without the validation loss. By default a sweep prints instead (verbosity 1):

    [  0:42] 9c3e_00003 started   peak_lr=0.004 batch_size=8
    [  1:10] 9c3e_00001 completed best 6.1208 at 16,384 tokens | 2 running, 3 of 12 done | best 6.1208 (9c3e_00001) | 49,152 tokens | ETA ~4 min

``-v`` brings back Tune's tables (verbosity 2), ``-q`` prints neither (verbosity 0): only the final
summary. Trial ids are the ones of the results table; statuses are those of :mod:`trainables.status`.

Tune pickles callbacks into the sweep's state and restores them on ``--resume``, so this one keeps
no reference to a logger: it prints.
"""

from __future__ import annotations

import math
import time

from ray.tune import Callback

from trainables.status import COMPLETED, DIVERGED, EARLY_STOPPED, METRIC, SKIPPED


def tune_verbosity(verbose: int) -> int:
    """Tune's console verbosity for the sweep's: 0 quiet and 1 (our lines) silence Tune; 2-3 are Tune's 1-2."""
    return max(0, min(verbose, 3) - 1)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:3d}:{s:02d}"


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def error_line(trial) -> str:
    """The last line of a trial's error (its exception), from the error file Tune wrote; '' if none."""
    try:
        text = open(trial.error_file, encoding="utf-8", errors="replace").read() if trial.error_file else ""
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class SweepProgress(Callback):
    """Prints a line when a trial starts, ends (with its status and best loss), errors, or sets a new best."""

    def __init__(self, planned: int | None, axes: list[str]):
        self.planned, self.axes = planned, list(axes)
        self._t0: float | None = None
        self._tokens: dict[str, int] = {}
        self._done: set[str] = set()
        self._best: tuple[float, str] = (math.inf, "")

    def __getstate__(self):  # a restored sweep starts its own clock
        return {**self.__dict__, "_t0": None}

    def _say(self, trial_id: str, what: str, detail: str = "") -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
        print(f"[{_clock(time.monotonic() - self._t0)}] {trial_id} {what:<16}{detail}", flush=True)

    def setup(self, **info):
        self._t0 = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info):
        config = trial.config or {}
        self._say(trial.trial_id, "started", " ".join(f"{a}={_value(config[a])}" for a in self.axes if a in config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._tokens[trial.trial_id] = int(result.get("tokens_seen") or 0)
        value = result.get(METRIC)
        if isinstance(value, (int, float)) and math.isfinite(value) and value < self._best[0]:
            self._best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        status = last.get("hp_status")
        if status not in (COMPLETED, DIVERGED, SKIPPED):
            status = EARLY_STOPPED  # the scheduler ended it before its run did
        self._end(trials, trial, status, last)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trials, trial, "errored", {"message": error_line(trial)})

    def _end(self, trials, trial, status: str, last: dict) -> None:
        self._done.add(trial.trial_id)
        loss = last.get(METRIC)
        mine = (f"best {loss:.4f} at {int(last.get('tokens_seen') or 0):,} tokens"
                if isinstance(loss, (int, float)) and math.isfinite(loss) else str(last.get("message") or "")[:120])
        running = sum(1 for t in trials if t.status == "RUNNING" and t.trial_id not in self._done)
        of = f" of {self.planned}" if self.planned else ""
        parts = [mine, f"{running} running, {len(self._done)}{of} done"]
        if self._best[1]:
            parts.append(f"best {self._best[0]:.4f} ({self._best[1]})")
        parts.append(f"{sum(self._tokens.values()):,} tokens")
        elapsed = time.monotonic() - (self._t0 or time.monotonic())
        if self.planned and len(self._done) < self.planned and elapsed > 0:
            remaining = elapsed / len(self._done) * (self.planned - len(self._done))
            parts.append(f"ETA ~{remaining / 60:.0f} min" if remaining >= 90 else f"ETA ~{remaining:.0f} s")
        self._say(trial.trial_id, status, " | ".join(parts))
