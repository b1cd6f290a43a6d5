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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hpsearch import results as res
from hpsearch.options import SweepOptions, flag, smoke_options, smoke_overrides, sweep_dir_of, sweep_name
from hpsearch.ray_session import check_resources, ensure_ray
from hpsearch.skips import excluded_lines, skip_lines
from search_spaces import Space, get_space, parse_space
from trainables.budget import default_grace, max_trial_tokens, max_warmup_tokens, plan_run
from trainables.config import EvalArgs, PretrainConfig, load_config
from trainables.corpus import load_data
from trainables.errors import DiskFullError, SweepError, first_line
from trainables.files import atomic_write_text, is_out_of_space
from trainables.model_config import preset_config
from trainables.status import INTERRUPTED, METRIC

RESUMABLE_OPTIONS = frozenset({"address", "max_concurrent", "dashboard", "dashboard_host", "verbose",
                               "results_dir", "storage"})
"""What ``--resume`` may change: how a sweep runs, never what it searches (that comes from sweep.json)."""


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


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, decided before Ray starts or anything is written."""

    opts: SweepOptions
    name: str
    sweep_dir: Path
    tune_dir: str
    space: Space
    base: PretrainConfig
    tokens: np.ndarray
    corpus_source: str
    corpus_key: str
    max_t: int
    num_samples: int
    rerun: bool = False
    """The name's earlier sweep never started a trial: its leftovers are replaced."""
    warm: list = field(default_factory=list)
    """--warm-start: (values, loss) of the earlier sweep's completed trials inside this space."""

    @property
    def axes(self) -> list[str]:
        return list(self.space.axes)


# -- the steps ----------------------------------------------------------------------------------

def base_config(opts: SweepOptions, space: Space) -> PretrainConfig:
    """The config every trial starts from: --config or the model preset, the corpus, the space's fixed values."""
    if opts.config:
        cfg = load_config(opts.config)
    else:
        model = preset_config(opts.model)
        cfg = PretrainConfig(model=model, preset=opts.model, eval=EvalArgs(eval_freq=10, eval_iter=3))
    data = opts.data if opts.data is not None else cfg.data.path
    reading = {k: v for k, v in (("format", opts.data_format), ("text_field", opts.text_field),
                                 ("sample_tokens", opts.sample_tokens), ("sample_seed", opts.sample_seed))
               if v is not None}
    cfg = replace(cfg, data=replace(cfg.data, path=str(Path(data).expanduser().resolve()) if data else None,
                                    pattern=opts.data_pattern if opts.data else cfg.data.pattern, **reading))
    engine = {k: v for k, v in (("precision", opts.precision), ("compile", opts.compile or None)) if v is not None}
    if engine:
        cfg = replace(cfg, train=replace(cfg.train, **engine))
    if opts.checkpoint_minutes is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, checkpoint_minutes=opts.checkpoint_minutes))
    overrides = dict(space.fixed)
    if opts.max_tokens_per_trial is not None:
        overrides["max_tokens"] = opts.max_tokens_per_trial
    cfg = cfg.with_hparams(overrides, source=f"space '{space.name}' fixed values")
    ev = {k: v for k, v in (("eval_freq", opts.eval_freq), ("eval_iter", opts.eval_iter)) if v is not None}
    return replace(cfg, eval=replace(cfg.eval, **ev)) if ev else cfg


def plan_sweep(opts: SweepOptions, *, space: Space | None = None, log=print) -> SweepPlan:
    """Validate everything that can be checked without Ray; for ``--resume`` the definition comes from sweep.json.

    ``space`` runs a space built in code (the transfer and scaling studies) instead of ``opts.space``.
    """
    if opts.resume and not opts.name:
        raise SweepError(resumable_sweeps(opts.results_dir))
    if opts.smoke_test:
        changes = smoke_overrides(opts)
        if changes:
            log(f"--smoke-test overrides: {'; '.join(changes)}")
        opts = smoke_options(opts)
    name = sweep_name(opts)
    sweep_dir = sweep_dir_of(name, opts.results_dir)
    rerun = False
    if opts.resume:
        record = sweep_dir / "sweep.json"
        if not record.is_file():
            raise SweepError(f"--resume: no sweep named '{name}' in {sweep_dir.parent} "
                             "(nothing to resume); start it without --resume")
        meta = read_record(record)
        opts = SweepOptions.from_record(meta["options"], **{k: getattr(opts, k) for k in RESUMABLE_OPTIONS},
                                        resume=True, name=name)
        space = parse_space(meta["space"], source=str(record))
        if not tune_started(sweep_dir, tune_dir_of(opts, name, sweep_dir)):
            log(f"sweep '{name}' never started a trial; starting it from its record")
            opts, rerun = replace(opts, resume=False), True
    else:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            if tune_started(sweep_dir, tune_dir_of(opts, name, sweep_dir)):
                raise SweepError(f"sweep '{name}' already exists in {sweep_dir}; pass --resume to continue it, "
                                 "or choose another --name")
            log(f"sweep '{name}' never started a trial; starting it again")
            rerun = True
        if space is None:
            space = get_space(opts.space)
        else:  # the record names it; its axes and fixed values are in sweep.json
            opts = replace(opts, space=space.name)
    base = base_config(opts, space)  # reads --config: every file the user gave is checked before Ray is imported
    space.to_tune(opts.mode)  # a grid mode on a continuous space fails here, before anything runs
    corpus = load_data(base.data, log=log)
    tokens = np.ascontiguousarray(corpus.tokens)
    # the corpus must hold a window in each split; per-trial misfits (a batch larger than the data,
    # warmup longer than the run) are the trial's own 'skipped-invalid'
    plan_run(base.with_hparams({"batch_size": 1, "warmup_steps": 0}), len(tokens), source=corpus.source)
    max_t = max_trial_tokens(base, space, len(tokens))
    check_search(opts, max_t)
    check_trackers(opts)
    warm = []
    if opts.warm_start and not opts.resume:
        from hpsearch.searchers import OPTUNA_MODES
        from hpsearch.warmstart import warm_points

        if opts.mode not in OPTUNA_MODES:
            raise SweepError(f"--warm-start seeds an Optuna sampler, which --mode {opts.mode} does not use; "
                             f"use --mode {' or '.join(OPTUNA_MODES)}")
        warm = warm_points(sweep_dir_of(opts.warm_start, opts.results_dir), base, space)
        log(f"warm start: {len(warm)} completed trial(s) of sweep {opts.warm_start} lie inside this space and "
            "are told to the sampler first; they are not trained again")
    return SweepPlan(opts=opts, name=name, sweep_dir=sweep_dir, tune_dir=tune_dir_of(opts, name, sweep_dir),
                     space=space, base=base, tokens=tokens, corpus_source=corpus.source, corpus_key=corpus.key,
                     max_t=max_t, num_samples=opts.num_samples or (1 if opts.mode == "grid" else 12), rerun=rerun,
                     warm=warm)


def check_search(opts: SweepOptions, max_t: int) -> None:
    """The scheduler's and searcher's arguments, checked before anything is written (Ray only asserts)."""
    asha = {"grace_tokens": None, "reduction_factor": SweepOptions.__dataclass_fields__["reduction_factor"].default}
    if opts.mode != "optuna-asha":
        given = [flag(k) for k, default in asha.items() if getattr(opts, k) != default]
        if given:
            raise SweepError(f"{' and '.join(given)} set ASHA early stopping, which only --mode optuna-asha uses "
                             f"(this sweep is --mode {opts.mode}); drop {'them' if len(given) > 1 else 'it'} or use "
                             "--mode optuna-asha")
    elif opts.grace_tokens is not None and opts.grace_tokens > max_t:
        raise SweepError(f"--grace-tokens {opts.grace_tokens:,} exceeds the per-trial budget of {max_t:,} tokens "
                         f"(ASHA's max_t); use --grace-tokens <= {max_t:,} or raise --max-tokens-per-trial")


def tune_dir_of(opts: SweepOptions, name: str, sweep_dir: Path) -> str:
    return f"{opts.storage.rstrip('/')}/{name}" if opts.storage else str(sweep_dir / "tune")


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
        "versions": versions(), "started": _now(),
    }
    atomic_write_text(plan.sweep_dir / "sweep.json", json.dumps(meta, indent=2))
    atomic_write_text(plan.sweep_dir / "space.yaml", plan.space.to_yaml())


def make_trainable(plan: SweepPlan):
    """The Tune trainable with its resources: one process per trial, or a DDP driver for 2+ GPUs.

    Returns (trainable, max_concurrent): a DDP trial's workers hold GPUs that Tune cannot see, so
    its concurrency is capped by the cluster's GPUs.
    """
    from ray import tune

    from trainables.tune_trainable import train_trial

    o = plan.opts
    common = dict(base=plan.base.to_dict(), tokens=plan.tokens, cpus_per_trial=o.cpus_per_trial,
                  checkpoint_every=o.checkpoint_every, source=plan.corpus_source, fault_at_step=o.fault_at_step)
    if o.gpus_per_trial <= 1:
        # CPUs are always reserved, GPUs too: tune.with_resources({"gpu": 1}) alone reserves 0 CPUs
        return tune.with_resources(tune.with_parameters(train_trial, **common),
                                   {"cpu": o.cpus_per_trial, "gpu": o.gpus_per_trial}), o.max_concurrent
    import ray

    from trainables.ddp import DRIVER_CPUS, ddp_workers, train_trial_ddp

    n = ddp_workers(o.gpus_per_trial)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial_ddp, num_workers=n, storage_path=plan.tune_dir,
                             max_failures=o.max_failures, **common),
        {"cpu": DRIVER_CPUS})
    return trainable, o.max_concurrent or max(1, int(ray.cluster_resources().get("GPU", 0)) // n)


TRACKER_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def check_trackers(opts: SweepOptions) -> None:
    """Each --logger's package is installed (checked before anything is written)."""
    import importlib.util

    for name in opts.loggers:
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise SweepError(f"--logger {name} needs the {name} package: pip install -e '.[trackers]' "
                             f"(or pip install {'mlflow-skinny' if name == 'mlflow' else name})")


def tracker_callbacks(plan: SweepPlan) -> list:
    """Ray's own MLflow / W&B logger callbacks for --logger; their step is Tune's report count, and
    every report carries tokens_seen to plot against."""
    out = []
    if "mlflow" in plan.opts.loggers:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{plan.sweep_dir / 'mlflow.db'}"
        out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=plan.name,
                                        tags={"hpsearch.mode": plan.opts.mode, "hpsearch.space": plan.space.name}))
    if "wandb" in plan.opts.loggers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # offline unless the user opts in; passed to wandb.init itself, because Ray's logging actor gets only
        # WANDB_API_KEY from this process's environment
        out.append(WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT", "hpsearch"), group=plan.name,
                                       dir=str(plan.sweep_dir), mode=os.environ.get("WANDB_MODE", "offline")))
    return out


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


def make_tuner(plan: SweepPlan):
    """A new Tuner (searcher, scheduler, storage), or the sweep's own Tune state restored for --resume."""
    from ray import tune

    from hpsearch.finished import FinishedTrials
    from hpsearch.progress import SweepProgress, tune_verbosity
    from hpsearch.searchers import Proposals, make_search

    o = plan.opts
    trainable, max_concurrent = make_trainable(plan)
    if o.resume:
        if not tune.Tuner.can_restore(plan.tune_dir):
            raise SweepError(f"--resume: {plan.tune_dir} holds no Tune state (the sweep never started trials); "
                             "start it again without --resume")
        # Tuner.restore unpickles the experiment state: only ever restore the sweep's own storage.
        return tune.Tuner.restore(plan.tune_dir, trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    search, scheduler = make_search(o.mode, seed=o.seed, study_name=plan.name, sweep_dir=plan.sweep_dir,
                                    max_t=plan.max_t, grace_tokens=o.grace_tokens,
                                    reduction_factor=o.reduction_factor, max_concurrent=max_concurrent,
                                    proposals=Proposals(plan.base.to_dict(), len(plan.tokens)),
                                    budget_tokens=o.budget_tokens,
                                    warmup_tokens=max_warmup_tokens(plan.base, plan.space, plan.max_t),
                                    warm_start=plan.warm)
    storage_path, experiment = plan.tune_dir.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        param_space=plan.space.to_tune(o.mode),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", search_alg=search, scheduler=scheduler, num_samples=plan.num_samples,
            # Tune applies max_concurrent_trials to Searchers only; the variant generator takes its own
            max_concurrent_trials=None if o.mode == "grid" else max_concurrent,
            reuse_actors=o.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage_path, verbose=tune_verbosity(o.verbose),
            failure_config=tune.FailureConfig(max_failures=o.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[FinishedTrials(plan.tune_dir),
                       *([SweepProgress(planned_trials(plan), plan.axes)] if o.verbose == 1 else []),
                       *tracker_callbacks(plan)],
        ),
    )


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
    else:  # grid ran without Optuna: its study is written from the results, for optuna-dashboard
        try:
            write_study(optuna_storage_url(plan.sweep_dir), plan.name, trials, curves, plan.space)
        except Exception as exc:  # a convenience: never costs the sweep its results
            log(f"warning: the Optuna study for optuna-dashboard was not written: {first_line(exc, limit=200)}")
    if plan.opts.budget_tokens:
        used = int(pd.to_numeric(trials.get("tokens_seen"), errors="coerce").fillna(0).sum()) if len(trials) else 0
        skips.append(f"tokens trained: {used:,} of the --budget-tokens {plan.opts.budget_tokens:,} "
                     f"({used / plan.opts.budget_tokens:.0%}; trials running when it was reached finished their run)")
    record = json.loads((plan.sweep_dir / "sweep.json").read_text())
    for key in ("finished", "interrupted"):
        record.pop(key, None)
    record.update({"interrupted" if interrupted else "finished": _now(), "wall_time_s": round(wall_s, 1),
                   "best_trial": None if best is None else str(best["trial_id"]),
                   "summary": res.summary_line(trials), "skipped": skips})
    from hpsearch.footprint import prune_checkpoints  # finished trials' checkpoints, all but the best few

    record["checkpoints"] = prune_checkpoints(plan.tune_dir, trials, keep=plan.opts.keep_checkpoints, log=log).record()
    atomic_write_text(plan.sweep_dir / "sweep.json", json.dumps(record, indent=2))
    return SweepOutcome(plan.name, plan.sweep_dir, trials, curves, best, best_path, wall_s, plan.axes,
                        interrupted=interrupted, skips=skips)


def tune_env(opts: SweepOptions) -> dict[str, str]:
    """Environment Tune reads when a fit starts, for this sweep's options.

    - Below -v, Tune prints nothing of its own: its newer console output still prints an experiment box
      and two paths (one a TensorBoard command into Ray's temp session) at verbosity 0; its older one,
      chosen by RAY_AIR_NEW_OUTPUT=0, prints nothing at 0.
    - With --budget-tokens, one trial is queued ahead instead of up to 16 (grid), so the budget is
      checked as each trial is created.
    A variable the user set is kept.
    """
    env = {}
    if opts.verbose <= 1:
        env["RAY_AIR_NEW_OUTPUT"] = "0"
    if opts.budget_tokens:
        env["TUNE_MAX_PENDING_TRIALS_PG"] = "1"
    return {k: v for k, v in env.items() if k not in os.environ}


# Skipped and diverged trials report an infinite loss on purpose; Tune's TensorBoard logger would print
# "NaN or Inf found in input tensor." for each of them.
logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)


@contextlib.contextmanager
def environ(values: dict[str, str]):
    """``values`` set in os.environ for the block, removed afterwards (a later sweep may differ)."""
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)


def planned_trials(plan: SweepPlan) -> int:
    """Trials the sweep will run at most: every grid point num_samples times, or num_samples samples."""
    size = plan.space.grid_size() if plan.opts.mode == "grid" else None
    return size * plan.num_samples if size else plan.num_samples


def describe(plan: SweepPlan) -> list[str]:
    o = plan.opts
    lines = [f"sweep '{plan.name}': mode {o.mode}, space '{plan.space.name}' ({len(plan.axes)} axes"
             f", {planned_trials(plan):,} trials), "
             f"model {plan.base.preset}, {o.cpus_per_trial:g} CPU + {o.gpus_per_trial:g} GPU per trial, "
             f"budget {plan.max_t:,} tokens per trial",
             f"results -> {plan.sweep_dir}; TensorBoard: tensorboard --logdir {plan.tune_dir}"]
    if o.mode == "optuna-asha":
        grace = o.grace_tokens or default_grace(plan.max_t, max_warmup_tokens(plan.base, plan.space, plan.max_t))
        why = "--grace-tokens" if o.grace_tokens else "half the trial, and not before the space's longest warmup ends"
        lines.append(f"ASHA: no trial is stopped before {grace:,} tokens ({why}), "
                     f"then the best 1/{o.reduction_factor:g} go on at each rung")
    if o.budget_tokens:
        lines.append(f"sweep budget: no new trial starts after {o.budget_tokens:,} tokens trained in all")
    lines.append(f"Optuna study: optuna-dashboard sqlite:///{plan.sweep_dir / 'optuna.db'}"
                 + ("" if o.mode != "grid" else " (written when the sweep ends)"))
    return lines


def run_sweep(opts: SweepOptions, *, space: Space | None = None, log=print) -> SweepOutcome:
    """Run (or with ``opts.resume`` finish) a sweep; ``space`` overrides ``opts.space`` (see plan_sweep)."""
    t0 = time.perf_counter()
    plan = plan_sweep(opts, space=space, log=log)
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
    from hpsearch.finished import begin, progress_of, restore_state  # imports Ray: only once the sweep starts

    begin(plan.tune_dir)
    progress = progress_of(plan.tune_dir)
    try:
        with environ(tune_env(o)):
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
    log(f"sweep wall time {outcome.wall_time_s:.0f} s; results in {plan.sweep_dir}")
    if outcome.interrupted:
        log(f"interrupted: {outcome.interrupted} trial(s) did not finish and rank nowhere; finish them with "
            f"`hpsearch sweep --name {plan.name} --results-dir {plan.sweep_dir.parent} --resume`")
    elif outcome.best_config:
        log(f"best config: {outcome.best_config}  (run it: hpsearch pretrain --config {outcome.best_config})")
    return outcome


def disk_full_stop(plan: SweepPlan, why: str) -> str:
    """One line for a sweep stopped by a full disk: what filled, and how to finish once space is freed."""
    return (f"sweep {plan.name} stopped because the disk is full ({why[:400]}); no trial was retried, and the "
            f"unfinished ones keep their last checkpoint: free space under {plan.sweep_dir.parent}, then run "
            f"`hpsearch sweep --name {plan.name} --results-dir {plan.sweep_dir.parent} --resume`")


def _now() -> str:
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
