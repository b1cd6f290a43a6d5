"""Run a sweep: many short pretraining runs on Ray Tune, results in pandas, the winner exported.

    opts = SweepOptions(space="demo", mode="optuna-asha", num_samples=12)
    outcome = run_sweep(opts)          # results/<name>/{trials.parquet, curves.parquet, best_config.yaml, ...}
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hpsearch import results as res
from search_spaces import MODES
from search_spaces import Space, get_space, parse_space
from trainables.files import atomic_write_text
from trainables.config import DataArgs, EvalArgs, PretrainConfig, load_config
from trainables.corpus import load_tokens
from trainables.errors import SweepError, did_you_mean
from trainables.model import preset_config
from trainables.pretrain import plan_run

DEFAULT_RESULTS = Path("results")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SweepOptions:
    """Everything that defines a sweep. Field docstrings double as CLI help."""

    space: str = "demo"
    """Built-in space name (see `hpsearch spaces`) or a YAML space file."""
    mode: str = "optuna-asha"
    """grid | optuna-asha | random | quasi-random."""
    name: str | None = None
    """Sweep name: results go to results/<name>/ (default: <space>-<mode>-<time>)."""
    data: str | None = None
    """Corpus: a text file or a directory of text files (default: the embedded corpus)."""
    data_pattern: str = "**/*.txt"
    model: str = "tiny"
    """Model preset of every trial (ignored when --config gives one)."""
    config: str | None = None
    """A pretraining config YAML every trial starts from (space values override it)."""
    num_samples: int | None = None
    """Trials to sample (default 12; grid: each point once)."""
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    """An existing Ray cluster ('auto' or host:port); default: a local Ray on 127.0.0.1."""
    storage: str | None = None
    """Where Tune keeps trial checkpoints and state: a directory every node reaches, or an fsspec URI
    (default: results/<name>/tune; multi-node clusters need shared or cloud storage)."""
    seed: int = 0
    max_tokens_per_trial: int | None = None
    """Token budget of each trial (caps num_epochs; the LR schedule is fitted to it)."""
    grace_tokens: int | None = None
    """ASHA: tokens every trial gets before it can be stopped (default max_t / rf^2)."""
    reduction_factor: float = 3.0
    """ASHA: keep the best 1/rf at each rung."""
    eval_freq: int | None = None
    eval_iter: int | None = None
    checkpoint_every: int = 2
    """Checkpoint a trial every this many evaluations (and at its end)."""
    max_failures: int = 1
    """Retries of a crashed trial, from its last checkpoint."""
    resume: bool = False
    smoke_test: bool = False
    results_dir: str = str(DEFAULT_RESULTS)
    dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    reuse_actors: bool = True
    verbose: int = 1
    fault_at_step: int = 0  # tests only: crash each trial once at this step


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


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name) or ".." in name:
        raise SweepError(f"sweep name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
                         "(no path separators or '..'), e.g. --name lr-sweep-1")
    return name


def sweep_dir_of(name: str, results_dir: str | os.PathLike = DEFAULT_RESULTS) -> Path:
    return (Path(results_dir) / validate_name(name)).resolve()


def _default_name(opts: SweepOptions) -> str:
    stem = Path(opts.space).stem if opts.space.endswith((".yaml", ".yml")) else opts.space
    return f"{stem}-{opts.mode}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# -- Ray ------------------------------------------------------------------------------------------

def ensure_ray(*, address: str | None, dashboard: bool, dashboard_host: str, log=print) -> None:
    """Connect to ``address`` or start a local Ray on 127.0.0.1, unless one is already up."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune warns on every forced state snapshot after a trial checkpoint; with short trials that is
    # every few seconds and tells the user nothing they can act on
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
        from hpsearch.cluster import driver_runtime_env

        try:  # ship the project: trials on every node run this code
            ray.init(address=address, runtime_env=driver_runtime_env(), logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepError(f"--address {address}: no Ray cluster answered ({first[:200]}); start one with "
                             "`ray start --head` or check the address and RAY_AUTH_MODE=token") from None
        log(f"connected to the Ray cluster at {address}")
        return
    if dashboard and dashboard_host not in ("127.0.0.1", "localhost"):
        log(f"WARNING: the Ray dashboard will listen on {dashboard_host}: anyone who can reach it and has "
            "the cluster token can run code on this machine. Ray's token auth is its only protection.")
    # address="local": always a fresh Ray of our own; a bare ray.init() would join any cluster that
    # someone started with `ray start` on this machine
    ctx = ray.init(address="local", include_dashboard=dashboard,
                   dashboard_host=dashboard_host if dashboard else "127.0.0.1",
                   _node_ip_address="127.0.0.1", logging_level="WARNING")
    if dashboard and getattr(ctx, "dashboard_url", None):
        log(f"Ray dashboard: http://{ctx.dashboard_url}")


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds when nothing listens at ``address`` (Ray itself waits minutes, then hangs)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise SweepError(f"--address {address}: nothing answers there ({exc.__class__.__name__}: "
                         f"{exc}); start the head with `ray start --head --port PORT` or fix the address") from None


def check_resources(cpus: float, gpus: float) -> None:
    """Fail fast when no node can ever host one trial (instead of trials pending forever)."""
    import ray

    if cpus <= 0 or gpus < 0:
        raise SweepError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus:g} and {gpus:g}")
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if gpus > 1:  # data-parallel: one worker per GPU (with cpus/N CPUs), on any nodes
        from trainables.ddp import ddp_workers

        n = ddp_workers(gpus)
        placeable = sum(min(int(r.get("GPU", 0)), int(r.get("CPU", 0) // (cpus / n))) for r in nodes)
        if placeable < n:
            raise SweepError(
                f"a data-parallel trial needs {n} workers of 1 GPU + {cpus / n:g} CPU, but the cluster can "
                f"place only {placeable} (GPUs: {sum(r.get('GPU', 0) for r in nodes):g} in all); lower "
                "--gpus-per-trial or add GPU nodes")
        return
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
        most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
        raise SweepError(
            f"no node can run a trial with {cpus:g} CPU(s) and {gpus:g} GPU(s): the largest node has "
            f"{most_cpu:g} CPUs and {most_gpu:g} GPUs; lower --cpus-per-trial/--gpus-per-trial "
            "or add a node that has them")


# -- the sweep ------------------------------------------------------------------------------------

def base_config(opts: SweepOptions, space: Space) -> PretrainConfig:
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


def smoke_options(opts: SweepOptions) -> SweepOptions:
    """--smoke-test: the real loop on the smallest model and budget, in well under a minute."""
    return replace(opts, space="smoke" if opts.space == "demo" else opts.space,
                   mode="grid" if opts.space == "demo" else opts.mode, model="nano",
                   max_tokens_per_trial=opts.max_tokens_per_trial or 2048,
                   num_samples=opts.num_samples or (1 if opts.mode == "grid" or opts.space == "demo" else 4),
                   eval_freq=opts.eval_freq or 4, eval_iter=opts.eval_iter or 1)


def run_sweep(opts: SweepOptions, *, log=print) -> SweepOutcome:
    t0 = time.perf_counter()
    if opts.smoke_test:
        opts = smoke_options(opts)
    if opts.mode not in MODES:
        raise SweepError(f"unknown --mode '{opts.mode}'{did_you_mean(opts.mode, MODES)}; choose one of: {', '.join(MODES)}")
    name = validate_name(opts.name or _default_name(opts))
    sweep_dir = sweep_dir_of(name, opts.results_dir)
    tune_dir = f"{opts.storage.rstrip('/')}/{name}" if opts.storage else str(sweep_dir / "tune")

    if opts.resume:
        if not (sweep_dir / "sweep.json").is_file():
            raise SweepError(f"--resume: no sweep named '{name}' in {sweep_dir.parent} "
                             "(nothing to resume); start it without --resume")
        meta = json.loads((sweep_dir / "sweep.json").read_text())
        saved = meta["options"]
        # the sweep's definition comes from its record; only how to run it may change
        keep = {"address", "max_concurrent", "dashboard", "dashboard_host", "verbose", "results_dir", "storage"}
        opts = replace(SweepOptions(**{k: v for k, v in saved.items() if k in {f.name for f in fields(SweepOptions)}}),
                       **{k: getattr(opts, k) for k in keep}, resume=True, name=name)
        space = parse_space(meta["space"], source=f"{sweep_dir}/sweep.json")
    else:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise SweepError(f"sweep '{name}' already exists in {sweep_dir}; pass --resume to continue it, "
                             "or choose another --name")
        space = get_space(opts.space)

    param_space = space.to_tune(opts.mode)
    base = base_config(opts, space)
    corpus = load_tokens(base.data.path, pattern=base.data.pattern, log=log)
    tokens = np.ascontiguousarray(corpus.tokens)
    # the corpus must hold a window in each split; per-trial misfits (a batch larger than the data,
    # warmup longer than the run) are the trial's own 'skipped-invalid'
    plan_run(base.with_hparams({"batch_size": 1, "warmup_steps": 0}), len(tokens), source=corpus.source)
    max_t = max_trial_tokens(base, space, len(tokens))
    axes = list(space.axes)
    num_samples = opts.num_samples or (1 if opts.mode == "grid" else 12)

    ensure_ray(address=opts.address, dashboard=opts.dashboard, dashboard_host=opts.dashboard_host, log=log)
    check_resources(opts.cpus_per_trial, opts.gpus_per_trial)
    sweep_dir.mkdir(parents=True, exist_ok=True)

    meta = {
        "name": name, "mode": opts.mode, "metric": "best_val_loss",
        "space": space.to_dict(), "base_config": base.to_dict(), "options": asdict(opts),
        "corpus": {"source": corpus.source, "key": corpus.key, "tokens": int(len(tokens))},
        "max_trial_tokens": max_t, "num_samples": num_samples,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": _versions(), "started": _now(),
    }
    if not opts.resume:
        atomic_write_text(sweep_dir / "sweep.json", json.dumps(meta, indent=2))
        atomic_write_text(sweep_dir / "space.yaml", space.to_yaml())

    tuner = _make_tuner(opts, name, sweep_dir, tune_dir, param_space, base, tokens, corpus.source, max_t,
                        num_samples)
    size = space.grid_size() if opts.mode == "grid" else None
    log(f"sweep '{name}': mode {opts.mode}, space '{space.name}' ({len(axes)} axes"
        + (f", {size * num_samples:,} trials" if size else f", {num_samples} trials") + "), "
        f"model {base.preset}, {opts.cpus_per_trial:g} CPU + {opts.gpus_per_trial:g} GPU per trial, "
        f"budget {max_t:,} tokens per trial")
    log(f"results -> {sweep_dir}; TensorBoard: tensorboard --logdir {tune_dir}")
    if opts.mode in ("optuna-asha", "quasi-random"):
        log(f"Optuna study: optuna-dashboard sqlite:///{sweep_dir / 'optuna.db'}")

    grid = tuner.fit()
    trials, curves = res.collect(grid, axes, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial)
    res.save(sweep_dir, trials, curves)
    best = res.best_trial(trials)
    best_path = None
    if best is not None:
        from hpsearch.export import export_native

        best_path = sweep_dir / "best_config.yaml"
        atomic_write_text(best_path, export_native(base, best, axes))
    wall = time.perf_counter() - t0
    record = json.loads((sweep_dir / "sweep.json").read_text())
    record.update({"finished": _now(), "wall_time_s": round(wall, 1),
                   "best_trial": None if best is None else str(best["trial_id"]),
                   "summary": res.summary_line(trials)})
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(record, indent=2))
    log("")
    log(res.leaderboard(trials, axes, top=10))
    log(res.summary_line(trials))
    log(f"sweep wall time {wall:.0f} s; results in {sweep_dir}")
    if best_path:
        log(f"best config: {best_path}  (run it: hpsearch pretrain --config {best_path})")
    return SweepOutcome(name, sweep_dir, trials, curves, best, best_path, wall, axes)


def _make_tuner(opts, name, sweep_dir, tune_dir, param_space, base, tokens, source, max_t, num_samples):
    from ray import tune

    from hpsearch.searchers import make_search
    from trainables.tune_trainable import METRIC, train_trial

    max_concurrent = opts.max_concurrent
    if opts.gpus_per_trial > 1:  # data-parallel: the trial drives a TorchTrainer of one worker per GPU
        import ray

        from trainables.ddp import DRIVER_CPUS, ddp_workers, train_trial_ddp

        n = ddp_workers(opts.gpus_per_trial)
        trainable = tune.with_resources(
            tune.with_parameters(train_trial_ddp, base=base.to_dict(), tokens=tokens, num_workers=n,
                                 storage_path=tune_dir, cpus_per_trial=opts.cpus_per_trial,
                                 checkpoint_every=opts.checkpoint_every, source=source,
                                 max_failures=opts.max_failures, fault_at_step=opts.fault_at_step),
            {"cpu": DRIVER_CPUS},  # the workers hold the GPUs; Tune cannot see them, so cap concurrency
        )
        max_concurrent = max_concurrent or max(1, int(ray.cluster_resources().get("GPU", 0)) // n)
    else:
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, base=base.to_dict(), tokens=tokens, cpus_per_trial=opts.cpus_per_trial,
                                 checkpoint_every=opts.checkpoint_every, source=source,
                                 fault_at_step=opts.fault_at_step),
            {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial},  # CPUs always reserved, GPUs too
        )
    if opts.resume:
        if not tune.Tuner.can_restore(tune_dir):
            raise SweepError(f"--resume: {tune_dir} holds no Tune state (the sweep never started trials); "
                             "start it again without --resume under a new --name")
        # Tuner.restore unpickles the experiment state: only ever restore the sweep's own storage.
        return tune.Tuner.restore(tune_dir, trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    search, scheduler = make_search(opts.mode, seed=opts.seed, study_name=name, sweep_dir=sweep_dir,
                                    max_t=max_t, grace_tokens=opts.grace_tokens,
                                    reduction_factor=opts.reduction_factor, max_concurrent=max_concurrent)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", search_alg=search, scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=None if opts.mode in ("grid", "random") else max_concurrent,
            reuse_actors=opts.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=tune_dir.rsplit("/", 1)[1], storage_path=tune_dir.rsplit("/", 1)[0], verbose=opts.verbose,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    import optuna
    import ray
    import tiktoken
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "tiktoken": tiktoken.__version__, "hpsearch": "0.1.0"}
