"""`write_report`: read a sweep, run the checks, draw the plots, (re)train seeds, write index.html."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from hpsearch.report.checks import run_checks, seed_noise_check
from hpsearch.report.data import dist_args, load_sweep, trial_config
from hpsearch.report.importance import hparam_importance
from hpsearch.report.page import render_page
from hpsearch.report.plots import plot_axis, plot_curves, plot_importance, plot_lr_schedule
from hpsearch.report.reruns import losses_by_role, rerun_top
from hpsearch.results import summary_line
from trainables.errors import SweepError


STUDY_PLOTS = {
    "transfer.png": "Width transfer: validation loss against LR per width, SP and μP; stars mark each "
                    "width's best LR (transfer.json holds the drift in octaves).",
    "scaling.png": "Budget transfer: loss against LR per budget; fitted eta_opt and B_opt against compute "
                   "with 95% bootstrap bands, DeepSeek LLM and Step Law as dashed reference lines.",
}


def write_report(sweep_dir: str | Path, *, reruns: int = 0, top_k: int = 5,
                 log: Callable[[str], None] | None = print) -> Path:
    """Write ``sweep_dir/report/`` (PNG plots + index.html) and return the index.html path.

    ``reruns`` > 0 retrains the best two configs with that many new seeds each (reruns.csv) and
    adds the seed-noise check; ``top_k`` trials are tabulated and drawn in curves.png.
    """
    def say(msg: str) -> None:
        if log is not None:
            log(msg)

    sweep = load_sweep(sweep_dir)
    if not len(sweep.ranked):
        raise SweepError(f"{sweep.dir / 'trials.parquet'}: no completed or early-stopped trial has a "
                         "finite best_val_loss; read the trials' error column, fix the space or the "
                         "code, and rerun the sweep")
    if reruns < 0:
        raise SweepError(f"--reruns must be >= 0, got {reruns}")
    out = sweep.dir / "report"
    out.mkdir(exist_ok=True)
    trials, curves, space = sweep.trials, sweep.curves, sweep.space
    say(f"report: {summary_line(trials)}")
    checks, notes = run_checks(trials, space), []
    plots: list[tuple[str, str]] = []  # (file name, caption)

    best = sweep.ranked.head(max(1, top_k))
    if curves is not None:
        plot_curves(curves, best, out / "curves.png")
        plots.append(("curves.png", f"Train (dashed) and val (solid) loss of the {len(best)} best trials."))
    else:
        notes.append("no curves.parquet: loss curves not drawn")
    top = sweep.ranked.iloc[0]
    plot_lr_schedule(top, trial_config(sweep.base, space, top), curves, out / "lr_schedule.png")
    plots.append(("lr_schedule.png", "Learning rate of the best trial: recomputed per step, with the "
                                     "values reported at evaluations."))
    for axis, dist in space.axes.items():
        if axis in trials.columns:
            name = f"axis_{re.sub(r'[^A-Za-z0-9_.-]', '_', axis)}.png"
            plot_axis(trials, axis, dist, out / name)
            plots.append((name, f"{axis}: {dist.kind} {dist_args(dist)}. Red x: diverged or errored trials."))
        else:
            notes.append(f"{axis}: in the space but not in trials.parquet; no plot")
    importances, importance_notes = hparam_importance(trials, space)
    notes += importance_notes
    if importances:
        plot_importance(importances, out / "importance.png")
        plots.append(("importance.png", "Share of the variation in best_val_loss each axis explains "
                                        "(rough with few trials)."))

    for study, caption in STUDY_PLOTS.items():  # written by `hpsearch transfer` / `hpsearch scale`
        if (sweep.dir / study).is_file():
            shutil.copyfile(sweep.dir / study, out / study)
            plots.append((study, caption))

    if reruns > 0:
        runs = rerun_top(trials, space, sweep.base, reruns=reruns, log=log)
        runs.to_csv(out / "reruns.csv", index=False)
        losses = losses_by_role(runs)
        checks.append(seed_noise_check(losses["winner"], losses["runner-up"]))

    index = out / "index.html"
    index.write_text(render_page(sweep, best, checks, notes, plots), encoding="utf-8")
    for c in checks:
        if c.fired:
            say(f"report: warning: {c.message}")
    say(f"report: wrote {index}")
    return index
