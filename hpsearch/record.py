"""A sweep's record on disk: sweep.json (what it searches, how, on what corpus and versions), written before
the first trial and read back by ``--resume``; whether Tune started it; the sweeps a name can resume."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.errors import SweepError, first_line
from trainables.files import atomic_write_text
from trainables.status import METRIC

if TYPE_CHECKING:
    from hpsearch.plan import SweepPlan


def tune_started(sweep_dir: Path, tune_dir: str) -> bool:
    """Whether the sweep got as far as Tune's first saved state (then --resume can continue it)."""
    if (sweep_dir / "trials.parquet").is_file():
        return True
    if "://" not in tune_dir:
        return any(Path(tune_dir).glob("experiment_state-*.json"))
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(tune_dir)
        return any(Path(i.path).name.startswith("experiment_state-")
                   for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))
    except Exception:  # storage unreachable: assume it holds state, so nothing is overwritten
        return True


def read_record(record: Path) -> dict:
    """A sweep.json, or a one-line SweepError naming it."""
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{record}: cannot be read ({first_line(exc, limit=120)}); restore it or start the "
                         "sweep again under a new --name") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("options"), dict) and isinstance(meta.get("space"), dict)):
        raise SweepError(f"{record}: not a sweep record (no options or space); start the sweep under a new --name")
    return meta


def resumable_sweeps(results_dir: str | Path) -> str:
    """The message for --resume without --name: which sweeps in ``results_dir`` can be resumed."""
    root = Path(results_dir)
    found = []
    for record in sorted(root.glob("*/sweep.json")):
        try:
            meta = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "finished" not in meta:
            found.append(f"{record.parent.name} ({'interrupted' if 'interrupted' in meta else 'unfinished'})")
    if not found:
        return (f"--resume needs --name NAME, the sweep to continue; no sweep in {root} is unfinished "
                "(start a new one without --resume)")
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    example = found[0].split(" ", 1)[0]
    return (f"--resume needs --name NAME, the sweep to continue; unfinished in {root}: {shown}; "
            f"e.g. hpsearch sweep --name {example} --resume")


RECORD_FILES = ("sweep.json", "space.yaml", "optuna.db")
"""What a sweep writes into its directory before Tune starts (removed again if it never starts)."""


def record_sweep(plan: SweepPlan) -> None:
    """sweep.json (the sweep's definition, for --resume, export and report) and space.yaml."""
    if plan.opts.resume:
        return
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    if plan.rerun:  # the study of a sweep that never started holds nothing worth keeping
        (plan.sweep_dir / "optuna.db").unlink(missing_ok=True)
    meta = {
        "name": plan.name, "mode": plan.opts.mode, "metric": METRIC,
        "space": plan.space.to_dict(), "base_config": plan.base.to_dict(), "options": asdict(plan.opts),
        "corpus": {"source": plan.corpus_source, "key": plan.corpus_key, "tokens": int(len(plan.tokens))},
        "max_trial_tokens": plan.max_t, "num_samples": plan.num_samples,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": versions(), "started": utc_now(),
    }
    atomic_write_text(plan.sweep_dir / "sweep.json", json.dumps(meta, indent=2))
    atomic_write_text(plan.sweep_dir / "space.yaml", plan.space.to_yaml())


def forget_sweep(plan: SweepPlan) -> None:
    """Undo :func:`record_sweep` for a sweep that failed before Tune started: the name stays free.

    Only the files hpsearch wrote are removed, and a directory only when it is then empty. The record of
    a sweep that was there before (a rerun) is kept: that name can be run again as it is.
    """
    if plan.opts.resume or plan.rerun or tune_started(plan.sweep_dir, plan.tune_dir):
        return
    for name in RECORD_FILES:
        (plan.sweep_dir / name).unlink(missing_ok=True)
    if "://" not in plan.tune_dir:
        (Path(plan.tune_dir) / "tuner.pkl").unlink(missing_ok=True)
    for d in (Path(plan.tune_dir), plan.sweep_dir):
        try:
            d.rmdir()  # only if empty
        except OSError:
            pass


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    """Versions recorded in every sweep.json ("untracked experiments might as well not exist")."""
    import optuna
    import ray
    import tiktoken
    import torch

    from hpsearch import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "tiktoken": tiktoken.__version__, "hpsearch": __version__}
