"""Run a sweep: many short pretraining runs on Ray Tune, results in pandas, the winner exported.

    opts = SweepOptions(space="demo", mode="optuna-asha", num_samples=12)
    outcome = run_sweep(opts)          # results/<name>/{trials.parquet, curves.parquet, best_config.yaml, ...}

`run_sweep` reads as its steps: plan (validate the options, load the space, build the base config,
tokenize the corpus), start Ray, record the sweep, build the tuner (trainable, searcher, scheduler),
run it, collect the results. Where a hyperparameter comes from: the space (or ``--config`` / the
model preset for fixed values) -> :func:`base_config` -> each trial's ``config`` dict ->
``PretrainConfig.with_hparams`` in the trainable -> ``Run`` builds the optimizer from it.
"""

from __future__ import annotations

import json
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
from hpsearch.options import SweepOptions, smoke_options, sweep_dir_of, sweep_name
from hpsearch.ray_session import check_resources, ensure_ray
from search_spaces import Space, get_space, parse_space
from trainables.config import EvalArgs, PretrainConfig, load_config
from trainables.corpus import load_tokens
from trainables.errors import SweepError
from trainables.files import atomic_write_text
from trainables.model import preset_config
from trainables.pretrain import plan_run
from trainables.status import METRIC

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
    cfg = replace(cfg, data=replace(cfg.data, path=str(Path(data).expanduser().resolve()) if data else None,
                                    pattern=opts.data_pattern if opts.data else cfg.data.pattern))
    overrides = dict(space.fixed)
    if opts.max_tokens_per_trial is not None:
        overrides["max_tokens"] = opts.max_tokens_per_trial
    cfg = cfg.with_hparams(overrides, source=f"space '{space.name}' fixed values")
    ev = {k: v for k, v in (("eval_freq", opts.eval_freq), ("eval_iter", opts.eval_iter)) if v is not None}
    return replace(cfg, eval=replace(cfg.eval, **ev)) if ev else cfg


def max_trial_tokens(base: PretrainConfig, space: Space, n_tokens: int) -> int:
    """Most tokens any trial can train on: ASHA's max_t."""
    if base.train.max_tokens:
        return int(base.train.max_tokens)
    epochs = base.train.num_epochs
    dist = space.axes.get("num_epochs")
    if dist is not None:
        epochs = int(max(getattr(dist, "values", None) or [getattr(dist, "high", epochs)]))
    train_tokens = int(n_tokens * base.data.train_ratio)
    return max(1, epochs * train_tokens)


def plan_sweep(opts: SweepOptions, *, space: Space | None = None, log=print) -> SweepPlan:
    """Validate everything that can be checked without Ray; for ``--resume`` the definition comes from sweep.json.

    ``space`` runs a space built in code (the transfer and scaling studies) instead of ``opts.space``.
    """
    if opts.smoke_test:
        opts = smoke_options(opts)
    name = sweep_name(opts)
    sweep_dir = sweep_dir_of(name, opts.results_dir)
    if opts.resume:
        record = sweep_dir / "sweep.json"
        if not record.is_file():
            raise SweepError(f"--resume: no sweep named '{name}' in {sweep_dir.parent} "
                             "(nothing to resume); start it without --resume")
        meta = json.loads(record.read_text())
        opts = SweepOptions.from_record(meta["options"], **{k: getattr(opts, k) for k in RESUMABLE_OPTIONS},
                                        resume=True, name=name)
        space = parse_space(meta["space"], source=str(record))
    else:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise SweepError(f"sweep '{name}' already exists in {sweep_dir}; pass --resume to continue it, "
                             "or choose another --name")
        if space is None:
            space = get_space(opts.space)
        else:  # the record names it; its axes and fixed values are in sweep.json
            opts = replace(opts, space=space.name)
    space.to_tune(opts.mode)  # a grid mode on a continuous space fails here, before anything runs
    base = base_config(opts, space)
    corpus = load_tokens(base.data.path, pattern=base.data.pattern, log=log)
    tokens = np.ascontiguousarray(corpus.tokens)
    # the corpus must hold a window in each split; per-trial misfits (a batch larger than the data,
    # warmup longer than the run) are the trial's own 'skipped-invalid'
    plan_run(base.with_hparams({"batch_size": 1, "warmup_steps": 0}), len(tokens), source=corpus.source)
    tune_dir = f"{opts.storage.rstrip('/')}/{name}" if opts.storage else str(sweep_dir / "tune")
    return SweepPlan(opts=opts, name=name, sweep_dir=sweep_dir, tune_dir=tune_dir, space=space, base=base,
                     tokens=tokens, corpus_source=corpus.source, corpus_key=corpus.key,
                     max_t=max_trial_tokens(base, space, len(tokens)),
                     num_samples=opts.num_samples or (1 if opts.mode == "grid" else 12))


def record_sweep(plan: SweepPlan) -> None:
    """sweep.json (the sweep's definition, for --resume, export and report) and space.yaml."""
    if plan.opts.resume:
        return
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
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


def make_tuner(plan: SweepPlan):
    """A new Tuner (searcher, scheduler, storage), or the sweep's own Tune state restored for --resume."""
    from ray import tune

    from hpsearch.searchers import make_search

    o = plan.opts
    trainable, max_concurrent = make_trainable(plan)
    if o.resume:
        if not tune.Tuner.can_restore(plan.tune_dir):
            raise SweepError(f"--resume: {plan.tune_dir} holds no Tune state (the sweep never started trials); "
                             "start it again without --resume under a new --name")
        # Tuner.restore unpickles the experiment state: only ever restore the sweep's own storage.
        return tune.Tuner.restore(plan.tune_dir, trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    search, scheduler = make_search(o.mode, seed=o.seed, study_name=plan.name, sweep_dir=plan.sweep_dir,
                                    max_t=plan.max_t, grace_tokens=o.grace_tokens,
                                    reduction_factor=o.reduction_factor, max_concurrent=max_concurrent)
    storage_path, experiment = plan.tune_dir.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        param_space=plan.space.to_tune(o.mode),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", search_alg=search, scheduler=scheduler, num_samples=plan.num_samples,
            # Tune applies max_concurrent_trials to Searchers only; the variant generator takes its own
            max_concurrent_trials=None if o.mode in ("grid", "random") else max_concurrent,
            reuse_actors=o.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage_path, verbose=o.verbose,
            failure_config=tune.FailureConfig(max_failures=o.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )


def collect_results(plan: SweepPlan, result_grid, *, wall_s: float) -> SweepOutcome:
    """trials/curves tables, best_config.yaml and the finished record in sweep.json."""
    from hpsearch.export import export_native

    trials, curves = res.collect(result_grid, plan.axes, cpus=plan.opts.cpus_per_trial,
                                 gpus=plan.opts.gpus_per_trial)
    res.save(plan.sweep_dir, trials, curves)
    best = res.best_trial(trials)
    best_path = None
    if best is not None:
        best_path = plan.sweep_dir / "best_config.yaml"
        atomic_write_text(best_path, export_native(plan.base, best, plan.axes))
    record = json.loads((plan.sweep_dir / "sweep.json").read_text())
    record.update({"finished": _now(), "wall_time_s": round(wall_s, 1),
                   "best_trial": None if best is None else str(best["trial_id"]),
                   "summary": res.summary_line(trials)})
    atomic_write_text(plan.sweep_dir / "sweep.json", json.dumps(record, indent=2))
    return SweepOutcome(plan.name, plan.sweep_dir, trials, curves, best, best_path, wall_s, plan.axes)


def describe(plan: SweepPlan) -> list[str]:
    o, size = plan.opts, plan.space.grid_size() if plan.opts.mode == "grid" else None
    lines = [f"sweep '{plan.name}': mode {o.mode}, space '{plan.space.name}' ({len(plan.axes)} axes"
             + (f", {size * plan.num_samples:,} trials" if size else f", {plan.num_samples} trials") + "), "
             f"model {plan.base.preset}, {o.cpus_per_trial:g} CPU + {o.gpus_per_trial:g} GPU per trial, "
             f"budget {plan.max_t:,} tokens per trial",
             f"results -> {plan.sweep_dir}; TensorBoard: tensorboard --logdir {plan.tune_dir}"]
    if o.mode in ("optuna-asha", "quasi-random"):
        lines.append(f"Optuna study: optuna-dashboard sqlite:///{plan.sweep_dir / 'optuna.db'}")
    return lines


def run_sweep(opts: SweepOptions, *, space: Space | None = None, log=print) -> SweepOutcome:
    """Run (or with ``opts.resume`` finish) a sweep; ``space`` overrides ``opts.space`` (see plan_sweep)."""
    t0 = time.perf_counter()
    plan = plan_sweep(opts, space=space, log=log)
    o = plan.opts
    ensure_ray(address=o.address, dashboard=o.dashboard, dashboard_host=o.dashboard_host, log=log)
    check_resources(o.cpus_per_trial, o.gpus_per_trial)
    record_sweep(plan)
    tuner = make_tuner(plan)
    for line in describe(plan):
        log(line)
    outcome = collect_results(plan, tuner.fit(), wall_s=time.perf_counter() - t0)
    log("")
    log(res.leaderboard(outcome.trials, plan.axes, top=10))
    log(res.summary_line(outcome.trials))
    log(f"sweep wall time {outcome.wall_time_s:.0f} s; results in {plan.sweep_dir}")
    if outcome.best_config:
        log(f"best config: {outcome.best_config}  (run it: hpsearch pretrain --config {outcome.best_config})")
    return outcome


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
