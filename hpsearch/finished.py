"""Which trials really finished, so that a trial cut off by Ctrl-C is told apart from one ASHA stopped.

On Ctrl-C, Tune saves its state and stops every live trial on the way out; in the ResultGrid such a
trial looks exactly like one the scheduler stopped early (TERMINATED, last report mid-run), and would
be ranked. Tune does tell callbacks when a trial ends or the scheduler stops it
(``on_trial_complete``) and when it errors for good (``on_trial_error``), but not for the trials it
stops on the way out. :class:`FinishedTrials` records the first two, plus every trial already
finished when a resumed sweep starts; every other trial was interrupted, and ``--resume`` reruns it
from its last checkpoint (Tune saved it as RUNNING).

Tune pickles callbacks into ``tuner.pkl`` and restores a copy with ``--resume``, so the callback
writes into :data:`PROGRESS`, keyed by the sweep's Tune directory, instead of into itself.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables.status import DISK_FULL


@dataclass
class Progress:
    stepped: bool = False
    """Tune ran at least one step (a resumed sweep whose trials had all ended runs none)."""
    disk_full: str = ""
    """Set when a trial's checkpoint found the disk full: the sweep was stopped (as by Ctrl-C) because of it."""
    state_backup: dict = field(default_factory=dict)
    """Tune's top-level state files as they were when the disk filled (Tune rewrites them in place, so
    its last snapshot on a full disk can leave them truncated): path -> bytes."""
    finished: set[str] = field(default_factory=set)
    """Trials that ended, were stopped by the scheduler or errored for good: their ids and directory names
    (a trial that never reported has no id in its results, only its directory)."""


PROGRESS: dict[str, Progress] = {}


class FinishedTrials(Callback):
    def __init__(self, key: str):
        self.key = key

    def _progress(self) -> Progress:
        return PROGRESS.setdefault(self.key, Progress())

    def on_step_begin(self, iteration, trials, **info):
        progress = self._progress()
        progress.stepped = True
        # a trial seen ended at the start of a step ended properly (restored ones included)
        for t in trials:
            if t.status in (Trial.TERMINATED, Trial.ERROR):
                self._done(t)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # a checkpoint found the disk full: stop the sweep the way Ctrl-C does (Tune's own handler of
        # SIGUSR1 saves the state and ends the run; the trials stay unfinished and --resume reruns them).
        # Every retry would fill the disk again.
        if result.get(DISK_FULL) and not self._progress().disk_full:
            self._progress().disk_full = f"trial {trial.trial_id}: {result[DISK_FULL]}"
            # Tune's last state snapshot fails on the full disk with a traceback; the sweep's own one-line
            # error says what happened and how to finish (the snapshot before it is intact)
            logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL)
            self._progress().state_backup = read_state(self.key)
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._done(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._done(trial)

    def _done(self, trial) -> None:
        self._progress().finished.update((trial.trial_id, Path(trial.path).name))


STATE_FILES = ("experiment_state-*.json", "basic-variant-state-*.json", "searcher-state-*.pkl")


def read_state(tune_dir: str) -> dict:
    """Tune's top-level state files (local storage only): path -> bytes."""
    if "://" in tune_dir:
        return {}
    out = {}
    for pattern in STATE_FILES:
        for f in Path(tune_dir).glob(pattern):
            try:
                out[str(f)] = f.read_bytes()
            except OSError:
                pass
    return out


def restore_state(backup: dict) -> list[str]:
    """Put back every state file that is no longer what a reader can load (truncated by a full disk);
    returns the files restored. A file Tune rewrote whole since the backup is kept."""
    restored = []
    for path, data in backup.items():
        f = Path(path)
        try:
            current = f.read_bytes()
            if current == data or (f.suffix == ".json" and _valid_json(current)):
                continue
            f.unlink()  # first: its space is what the backup needs
            f.write_bytes(data)
            restored.append(path)
        except OSError:
            pass
    return restored


def _valid_json(data: bytes) -> bool:
    import json

    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def begin(key: str) -> None:
    """Forget an earlier fit's record of this sweep (call before ``Tuner.fit``)."""
    PROGRESS[key] = Progress()


def progress_of(key: str) -> Progress:
    return PROGRESS.get(key, Progress())
