"""A finished sweep's footprint: finished trials lose their checkpoints, except the best few.

A trial's Tune checkpoints (``<tune dir>/<trial dir>/checkpoint_*``) only serve to continue it: a
retry after a crash, or ``--resume`` after Ctrl-C. Once a trial has finished (completed,
early-stopped, diverged, skipped-invalid, errored) nothing reads them again: ``--resume`` decides from
Tune's experiment state, not from these directories, that a finished trial is done, and reports,
exports and reruns work from the results tables and configs. So when a sweep's results are collected,
:func:`prune_checkpoints` deletes the checkpoints of its finished trials, except the best ``keep``
ranked trials (``--keep-checkpoints``, default 3), whose weights one may want to look at or continue.

    interrupted / unknown status   keep (``--resume`` continues them from their last checkpoint)
    best ``keep`` ranked trials    keep
    every other finished trial     checkpoint_* deleted

While a sweep still has interrupted trials its ranking is not final, so only trials that can never
rank (diverged, errored, skipped-invalid) lose theirs; the rest are pruned when ``--resume`` finishes
the sweep. Deletion stays inside the sweep's own local Tune directory: nothing is done for URI
storage (``s3://...``), symlinks are never followed, and a directory that cannot be removed is left
as it is (a sweep never fails because of pruning).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hpsearch.results import ranked
from trainables.status import COMPLETED, DIVERGED, EARLY_STOPPED, ERRORED, INTERRUPTED, SKIPPED

FINISHED = (COMPLETED, EARLY_STOPPED, DIVERGED, SKIPPED, ERRORED)
"""Statuses of trials that ``--resume`` never runs again: their checkpoints serve nothing."""


@dataclass
class Pruned:
    """What :func:`prune_checkpoints` did."""

    trials: list[str] = field(default_factory=list)
    """Finished trials whose checkpoints were deleted."""
    freed_bytes: int = 0
    kept: list[str] = field(default_factory=list)
    """The best ranked trials that kept theirs."""
    keep: int = 0
    skipped: str = ""
    """Why nothing was pruned (URI storage, no Tune directory), else empty."""

    def line(self) -> str:
        if self.skipped:
            return f"checkpoints not pruned: {self.skipped}"
        return (f"pruned checkpoints of {len(self.trials)} finished trials ({self.freed_bytes / 1e6:,.1f} MB freed; "
                f"kept the best {self.keep}: {', '.join(self.kept) or 'none'})")

    def record(self) -> dict:
        """For sweep.json."""
        return {"pruned_trials": len(self.trials), "freed_bytes": self.freed_bytes, "kept": self.kept,
                "keep": self.keep, **({"skipped": self.skipped} if self.skipped else {})}


def prune_checkpoints(tune_dir: str | Path, trials: pd.DataFrame, *, keep: int, log=print) -> Pruned:
    """Delete the ``checkpoint_*`` directories of finished trials outside the best ``keep`` ranked ones.

    ``tune_dir`` is the sweep's Tune directory (a URI is left alone), ``trials`` its results table
    (hpsearch.results.collect). Logs one line and returns what was done.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    pruned = Pruned(keep=keep)
    if "://" in str(tune_dir):
        pruned.skipped = f"storage {tune_dir} is not a local directory"
    elif not Path(tune_dir).is_dir() or Path(tune_dir).is_symlink():
        pruned.skipped = f"no Tune directory at {tune_dir}"
    if pruned.skipped:
        log(pruned.line())
        return pruned
    root = Path(tune_dir).resolve()
    status = dict(zip(trials["trial_id"].astype(str), trials["status"]))
    pruned.kept = [str(t) for t in ranked(trials)["trial_id"].head(keep)]
    final = not any(s == INTERRUPTED for s in status.values())
    prunable = FINISHED if final else (DIVERGED, SKIPPED, ERRORED)  # ranking not final: keep what may rank
    for trial_id, trial_dir in trial_dirs(root, status):
        if status[trial_id] not in prunable or trial_id in pruned.kept:
            continue
        freed = 0
        for checkpoint in sorted(trial_dir.glob("checkpoint_*")):
            if checkpoint.is_symlink() or not checkpoint.is_dir() or checkpoint.resolve().parent != trial_dir:
                continue
            size = tree_bytes(checkpoint)
            try:
                shutil.rmtree(checkpoint)
            except OSError:
                size -= tree_bytes(checkpoint) if checkpoint.exists() else 0  # partly removed: count what went
            freed += size
        if freed:
            pruned.trials.append(trial_id)
            pruned.freed_bytes += freed
    if pruned.trials:  # nothing to say when no finished trial had a checkpoint beyond the kept ones
        log(pruned.line())
    return pruned


def trial_dirs(root: Path, status: dict[str, str]) -> list[tuple[str, Path]]:
    """(trial id, directory) for each trial of ``status`` found directly under ``root`` (no symlinks).

    Tune names a trial's directory ``<trainable>_<trial id>_<tag>_<date>``; a trial that never
    reported is listed in the results table under its directory's name.
    """
    found = []
    for d in sorted(root.iterdir()):
        if d.is_symlink() or not d.is_dir():
            continue
        for trial_id in status:
            if d.name == trial_id or f"_{trial_id}_" in d.name:
                found.append((trial_id, d))
                break
    return found


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path``, symlinks counted as links (never followed)."""
    total = 0
    for dirpath, _, files in os.walk(path):  # os.walk does not descend into symlinked directories
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
