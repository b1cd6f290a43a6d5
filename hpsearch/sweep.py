"""Run a sweep: many short pretraining runs on Ray Tune, results in pandas, the winner exported.

    opts = SweepOptions(space="demo", mode="optuna-asha", num_samples=12)
    outcome = run_sweep(opts)          # results/<name>/{trials.parquet, curves.parquet, best_config.yaml, ...}

`run_sweep` reads as its steps: plan (validate the options, the space, the scheduler's arguments, build
the base config, tokenize the corpus), start Ray, record the sweep, build the tuner (trainable,
searcher, scheduler), run it, collect the results. Nothing is written before the plan and the cluster
check pass; a sweep that fails before Tune starts leaves no record, and a name whose sweep never
started a trial can simply be run again. Trials cut off by Ctrl-C are ``interrupted`` (never ranked;
``--resume`` reruns them). Where a hyperparameter comes from: the space (or ``--config`` / the
model preset for fixed values) -> :func:`base_config` -> each trial's ``config`` dict ->
``PretrainConfig.with_hparams`` in the trainable -> ``Run`` builds the optimizer from it.

Rooms: :mod:`hpsearch.plan` (the plan), :mod:`hpsearch.record` (sweep.json), :mod:`hpsearch.tuner` (the
Tune side); here the steps in order and the outcome.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hpsearch import results as res
from hpsearch.options import SweepOptions
from hpsearch.lock import claim
from hpsearch.plan import SweepPlan, already_exists, base_config, plan_sweep, planned_trials, whole_trials
from hpsearch.ray_session import check_resources, ensure_ray, trial_slots
from hpsearch.record import forget_sweep, record_sweep, tune_started, utc_now
from hpsearch.skips import close_stale_trials, excluded_lines, skip_lines
from hpsearch.tuner import environ, make_tuner, tune_env
from hpsearch.tunelog import LOG_NAME, to_log_file
from search_spaces import Space
from trainables.budget import default_grace, max_warmup_tokens
from trainables.errors import DiskFullError, Interrupted, SweepError, first_line, shell_command
from trainables.files import atomic_write_text, is_out_of_space
from trainables.status import ERRORED, INTERRUPTED

__all__ = [  # what callers import from here: the steps live in hpsearch.plan, hpsearch.record and hpsearch.tuner
    "SweepOptions", "SweepOutcome", "SweepPlan", "base_config", "collect_results", "describe", "max_warmup_tokens",
    "plan_sweep", "record_sweep", "run_sweep",
]


@dataclass
class SweepOutcome:
    name: str
    sweep_dir: Path
    trials: pd.DataFrame
    curves: pd.DataFrame
    best: pd.Series | None
    best_config: Path | None
    wall_time_s: float
    axes: list[str] = field(default_factory=list)
    interrupted: int = 0
    """Trials Ctrl-C cut off (status 'interrupted'); `--resume` reruns them."""
    skips: list[str] = field(default_factory=list)
    """Skipped trials counted per reason, each with its fix (hpsearch.skips)."""


def collect_results(plan: SweepPlan, result_grid, *, wall_s: float, log=print) -> SweepOutcome:
    """trials/curves tables, best_config.yaml and the finished (or interrupted) record in sweep.json."""
    from hpsearch.export import export_native
    from hpsearch.finished import progress_of

    progress = progress_of(plan.tune_dir)
    trials, curves = res.collect(result_grid, plan.axes, cpus=plan.opts.cpus_per_trial,
                                 gpus=plan.opts.gpus_per_trial,
                                 finished=progress.finished if progress.stepped else None)
    res.save(plan.sweep_dir, trials, curves)
    interrupted = int((trials["status"] == INTERRUPTED).sum())
    best = res.best_trial(trials)
    best_path = None
    if best is not None and not interrupted:  # an interrupted sweep has no answer yet
        best_path = plan.sweep_dir / "best_config.yaml"
        atomic_write_text(best_path, export_native(plan.base, best, plan.axes))
    skips = skip_lines(trials, plan.base, len(plan.tokens), plan.axes)
    from hpsearch.searchers import OPTUNA_MODES, optuna_storage_url, write_study

    if plan.opts.mode in OPTUNA_MODES:
        skips += excluded_lines(optuna_storage_url(plan.sweep_dir), plan.name, plan.base, len(plan.tokens))
        if not interrupted:  # every Tune trial ended: a RUNNING Optuna trial will never be finished
            skips += close_stale_trials(optuna_storage_url(plan.sweep_dir), plan.name)
    else:  # grid ran without Optuna: its study is written from the results, for optuna-dashboard
        try:
            write_study(optuna_storage_url(plan.sweep_dir), plan.name, trials, curves, plan.space)
        except Exception as exc:  # a convenience: never costs the sweep its results
            log(f"warning: the Optuna study for optuna-dashboard was not written: {first_line(exc, limit=200)}")
    if plan.opts.budget_tokens:
        used = int(pd.to_numeric(trials.get("tokens_seen"), errors="coerce").fillna(0).sum()) if len(trials) else 0
        skips.append(f"tokens trained: {used:,} of the --budget-tokens {plan.opts.budget_tokens:,} "
                     f"({used / plan.opts.budget_tokens:.0%} used; a trial starts only if its whole run of "
                     f"{plan.max_t:,} tokens fits in what is left, so the budget is never exceeded)")
    record = json.loads((plan.sweep_dir / "sweep.json").read_text())
    for key in ("finished", "interrupted"):
        record.pop(key, None)
    record.update({"interrupted" if interrupted else "finished": utc_now(), "wall_time_s": round(wall_s, 1),
                   "best_trial": None if best is None else str(best["trial_id"]),
                   "summary": res.summary_line(trials), "skipped": skips})
    from hpsearch.footprint import prune_checkpoints  # finished trials' checkpoints, all but the best few

    record["checkpoints"] = prune_checkpoints(plan.tune_dir, trials, keep=plan.opts.keep_checkpoints, log=log).record()
    atomic_write_text(plan.sweep_dir / "sweep.json", json.dumps(record, indent=2))
    return SweepOutcome(plan.name, plan.sweep_dir, trials, curves, best, best_path, wall_s, plan.axes,
                        interrupted=interrupted, skips=skips)


def describe(plan: SweepPlan) -> list[str]:
    from hpsearch.searchers import optuna_storage_url, tpe_startup_trials

    o = plan.opts
    lines = [f"sweep '{plan.name}': mode {o.mode}, space '{plan.space.name}' ({len(plan.axes)} axes"
             f", {planned_trials(plan):,} trials), "
             f"model {plan.base.preset}, {o.cpus_per_trial:g} CPU + {o.gpus_per_trial:g} GPU per trial, "
             f"budget {plan.max_t:,} tokens per trial",
             f"results -> {plan.sweep_dir}; TensorBoard: {shell_command('tensorboard', '--logdir', plan.tune_dir)}"]
    if o.mode == "optuna-asha":
        grace = o.grace_tokens or default_grace(plan.max_t, max_warmup_tokens(plan.base, plan.space, plan.max_t))
        why = "--grace-tokens" if o.grace_tokens else "half the trial, and not before the space's longest warmup ends"
        lines.append(f"ASHA: no trial is stopped before {grace:,} tokens ({why}), "
                     f"then the best 1/{o.reduction_factor:g} go on at each rung")
        # a warm start's earlier trials are in the study, so they count as start-up trials too
        whole, startup = whole_trials(plan), max(0, tpe_startup_trials() - len(plan.warm))
        line = f"TPE: the first {startup} trials are sampled at random, then modelled"
        if whole <= startup:
            paid = f"{whole:,.0f}" if whole.is_integer() else f"{whole:,.1f}"
            line += (f"; this sweep {'can pay for' if o.budget_tokens else 'runs'} {paid} whole trials, so it is close "
                     "to a random search with early stopping (at that size the modes tie: bench/RESULTS.md 4b)")
        lines.append(line)
    if o.budget_tokens:
        lines.append(f"sweep budget: {o.budget_tokens:,} tokens in all, never exceeded: a trial starts only if its "
                     f"whole run ({plan.max_t:,} tokens) fits in what is left; what ASHA stops early is given back")
    lines.append(f"Optuna study: {shell_command('optuna-dashboard', optuna_storage_url(plan.sweep_dir))}"
                 + ("" if o.mode != "grid" else " (written when the sweep ends)"))
    return lines


def run_sweep(opts: SweepOptions, *, space: Space | None = None, log=print, command: str = "sweep") -> SweepOutcome:
    """Run (or with ``opts.resume`` finish) a sweep; ``space`` overrides ``opts.space`` (see plan_sweep).
    ``command``: the hpsearch subcommand whose ``--resume`` finishes it (a study's, for a study's sweep).

    The sweep's directory is held by a lock (:mod:`hpsearch.lock`) from before Ray starts until the
    results are written: a second process of the same name is refused meanwhile.
    """
    t0 = time.perf_counter()
    plan = plan_sweep(opts, space=space, log=log)
    with claim(plan.sweep_dir, plan.name, resume=plan.opts.resume):
        if not (plan.opts.resume or plan.rerun) and tune_started(plan.sweep_dir, plan.tune_dir):
            raise SweepError(already_exists(plan.name, plan.sweep_dir))  # it started while this one planned
        try:
            return _run(plan, t0, log, command)
        except KeyboardInterrupt as exc:  # a second Ctrl-C: Tune stops at once, before the results are collected
            if isinstance(exc, Interrupted) or not (plan.sweep_dir / "sweep.json").is_file():
                raise
            raise Interrupted(f"the sweep stopped before its results were collected; finish it with "
                              f"`{resume_command(plan, command)}`") from None


def resume_command(plan: SweepPlan, command: str = "sweep") -> str:
    return shell_command("hpsearch", command, "--name", plan.name, "--results-dir", plan.sweep_dir.parent, "--resume")


def stop_if_interrupted(outcome: SweepOutcome, command: str, name: str | None = None) -> None:
    """A study whose sweep was interrupted concludes nothing: Interrupted (exit 130) with the resume command
    of the study ``name`` (default: the sweep's own name)."""
    if outcome.interrupted:
        raise Interrupted(f"the study was interrupted ({outcome.interrupted} trial(s) did not finish), so it "
                          f"concludes nothing and wrote no {command} results yet; finish it with `"
                          + shell_command("hpsearch", command, "--name", name or outcome.name, "--results-dir",
                                          outcome.sweep_dir.parent, "--resume") + "`")


def _run(plan: SweepPlan, t0: float, log, command: str) -> SweepOutcome:
    o = plan.opts
    ensure_ray(address=o.address, dashboard=o.dashboard, dashboard_host=o.dashboard_host, log=log)
    check_resources(o.cpus_per_trial, o.gpus_per_trial)
    record_sweep(plan)
    try:
        tuner = make_tuner(plan)
    except BaseException:
        forget_sweep(plan)
        raise
    say = log if o.verbose else (lambda _line: None)  # -q: only the final summary
    for line in describe(plan):
        say(line)
    if o.resume and o.mode == "optuna-asha":
        log(ASHA_RESUME_NOTE)
    from hpsearch.finished import begin, progress_of, restore_state  # imports Ray: only once the sweep starts

    begin(plan.tune_dir)
    progress = progress_of(plan.tune_dir)
    try:
        slots = trial_slots(o.cpus_per_trial, o.gpus_per_trial, o.max_concurrent)
        with environ(tune_env(o, slots)), to_log_file(plan.sweep_dir, enabled=o.verbose <= 1):
            grid = tuner.fit()
            outcome = collect_results(plan, grid, wall_s=time.perf_counter() - t0, log=log)
        full = progress.disk_full
    except Exception as exc:
        if not (progress.disk_full or is_out_of_space(exc)):
            raise
        full = progress.disk_full or first_line(exc)
    if full:
        restore_state(progress.state_backup)  # Tune's last snapshot may not have fitted
        raise DiskFullError(disk_full_stop(plan, full))
    say("")
    say(res.leaderboard(outcome.trials, plan.axes, top=10))
    log(res.summary_line(outcome.trials))
    for line in outcome.skips:
        log(line)
    errored = outcome.trials.loc[outcome.trials["status"] == ERRORED, "trial_id"].astype(str).tolist()
    if errored:
        shown = ", ".join(errored[:10]) + (f" and {len(errored) - 10} more" if len(errored) > 10 else "")
        log(f"{len(errored)} trial(s) errored ({shown}): their error column in trials.parquet says why"
            + (f"; tracebacks in {plan.sweep_dir / LOG_NAME}" if o.verbose <= 1 else ""))
    log(f"sweep wall time {outcome.wall_time_s:.0f} s; results in {plan.sweep_dir}")
    if outcome.interrupted:
        log(f"interrupted: {outcome.interrupted} trial(s) did not finish and rank nowhere; finish them with "
            f"`{resume_command(plan, command)}`")
    elif outcome.best_config:
        log(f"best config: {outcome.best_config}  "
            f"(run it: {shell_command('hpsearch', 'pretrain', '--config', outcome.best_config)})")
    return outcome


ASHA_RESUME_NOTE = ("note: a resumed optuna-asha sweep starts ASHA's rungs empty (Tune's saved state does not keep "
                    "them), so a resumed trial is not compared with those that passed a rung before the stop: it may "
                    "train on where a straight run would have stopped it early (more compute, another status)")


def disk_full_stop(plan: SweepPlan, why: str) -> str:
    """One line for a sweep stopped by a full disk: what filled, and how to finish once space is freed."""
    return (f"sweep {plan.name} stopped because the disk is full ({why[:400]}); no trial was retried, and the "
            f"unfinished ones keep their last checkpoint (details in {plan.sweep_dir / LOG_NAME}, as far as they "
            f"fitted): free space under {plan.sweep_dir.parent}, then run "
            f"`{shell_command('hpsearch', 'sweep', '--name', plan.name, '--results-dir', plan.sweep_dir.parent, '--resume')}`")
