"""The Tune side of a sweep: the trainable with its resources, the searcher and scheduler, the trackers'
callbacks, and the environment Tune runs in."""

from __future__ import annotations

import contextlib
import logging
import os

from hpsearch.options import SweepOptions
from hpsearch.plan import SweepPlan, planned_trials
from trainables.budget import max_warmup_tokens
from trainables.errors import SweepError
from trainables.status import METRIC


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
    from hpsearch.ray_session import trial_slots
    from trainables.ddp import DRIVER_CPUS, ddp_workers, train_trial_ddp

    trainable = tune.with_resources(
        tune.with_parameters(train_trial_ddp, num_workers=ddp_workers(o.gpus_per_trial), storage_path=plan.tune_dir,
                             max_failures=o.max_failures, **common),
        {"cpu": DRIVER_CPUS})
    return trainable, o.max_concurrent or trial_slots(DRIVER_CPUS, o.gpus_per_trial)


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


def tune_env(opts: SweepOptions, slots: int = 1) -> dict[str, str]:
    """Environment Tune reads when a fit starts, for this sweep's options.

    - Below -v, Tune prints nothing of its own: its newer console output still prints an experiment box
      and two paths (one a TensorBoard command into Ray's temp session) at verbosity 0; its older one,
      chosen by RAY_AIR_NEW_OUTPUT=0, prints nothing at 0.
    - Tune creates at most one trial ahead for a search algorithm (and up to 200 for a grid): the first
      ``slots`` trials (as many as run at once) are created together instead, so the first wave starts
      at once rather than one trial per actor start-up. A created trial is charged against
      --budget-tokens at once, so the budget holds whatever is queued.
    A variable the user set is kept.
    """
    env = {}
    if opts.verbose <= 1:
        env["RAY_AIR_NEW_OUTPUT"] = "0"
    if opts.budget_tokens or opts.mode != "grid":
        env["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, slots))
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
