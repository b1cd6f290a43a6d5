"""The Ray Tune function trainable: one trial = one short pretraining run.

It wraps :class:`trainables.run.Run` and reports at every evaluation through ``tune.report``
(``ray.train.report`` raises inside Tune trials in Ray 2.60). The token array arrives once per node
through ``tune.with_parameters``, so trials never re-tokenize. Every report carries ``hp_status``:

    running | completed | diverged | skipped-invalid

``skipped-invalid`` is the documented rule for combinations that cannot run (``min_lr > peak_lr``,
``initial_lr > peak_lr``, warmup not shorter than the run, a batch larger than the data): the trial
reports once, with ``best_val_loss = inf`` and the reason in ``message``, and ends without training.

The reports themselves are built by :func:`skipped_report`, :func:`eval_report` and
:func:`diverged_report`, shared with the data-parallel trials of :mod:`trainables.ddp`.

A checkpoint only serves a retry after a crash, and GPT-124M's weighs 2 GB, so a trial writes one
at its end and whenever ``eval.checkpoint_minutes`` have passed since the last (:func:`checkpoint_now`),
not at every evaluation; ``checkpoint_every`` N adds one every N evaluations (tests,
``--checkpoint-every``). Every report carries ``checkpoint_seconds``: the trial's time spent writing
checkpoints and handing them to Tune so far.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from trainables.config import PretrainConfig
from trainables.errors import ConfigError, DataError, DiskFullError, first_line
from trainables.files import is_out_of_space
from trainables.run import Run, RunSummary
from trainables.status import COMPLETED, DISK_FULL, DIVERGED, METRIC, RUNNING, SKIPPED


def placement() -> dict:
    """Where this trial runs, in every report: node, the GPU ids Ray gave it, what CUDA sees.

    With fake GPUs (``ray start --num-gpus``) the trial trains on CPU but still records its ids.
    """
    return {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def quiet_sigterm_exits() -> None:
    """Keep Ray's deliberate worker exit out of the user's terminal.

    Ray stops a trial's worker with SIGTERM and its handler raises ``SystemExit``. When the signal lands
    inside a weakref or ``__del__`` callback, Python cannot raise it there and prints "Exception ignored
    in ..." with a traceback, which Ray forwards to the driver's stderr after a successful sweep. Such
    an unraisable ``SystemExit`` is the exit Ray asked for; every other unraisable exception is printed
    as before.
    """
    if getattr(sys.unraisablehook, "hpsearch_quiet", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            previous(unraisable)

    hook.hpsearch_quiet = True
    sys.unraisablehook = hook


def skipped_report(message: str) -> dict:
    """The one report of a trial whose combination cannot run: no training, loss inf, the reason."""
    return {METRIC: math.inf, "val_loss": math.inf, "train_loss": math.inf, "tokens_seen": 0, "step": 0,
            "epoch": 0.0, "lr": 0.0, "hp_status": SKIPPED, "training_complete": True,
            "message": message}


def eval_report(metrics: dict, run: Run, where: dict) -> dict:
    """The report of one evaluation: running, or completed at the last step."""
    return {**metrics, "timesteps_total": metrics["tokens_seen"],  # TensorBoard's step: tokens, not reports
            "hp_status": COMPLETED if metrics["training_complete"] else RUNNING,
            "message": "", "device": str(run.device), "precision": run.engine.precision, **where}


def checkpoint_now(metrics: dict, run: Run, evals_since_checkpoint: int, checkpoint_every: int) -> bool:
    """Checkpoint at this evaluation? At the end, when eval.checkpoint_minutes have passed since the
    last checkpoint, and every ``checkpoint_every`` evaluations when that is set (0: never by count)."""
    return (metrics["training_complete"] or run.checkpoint_due()
            or bool(checkpoint_every) and evals_since_checkpoint >= checkpoint_every)


DISK_FULL_WAIT_S = 300.0


def wait_for_the_sweep_to_stop(report: dict, exc: BaseException) -> None:
    """A checkpoint found the disk full: say so (without a checkpoint), then wait for the driver to stop
    the sweep, so that the trial stays unfinished and ``--resume`` reruns it once space is freed. A retry
    would only fill the disk again. Raises if no stop comes (a driver that does not know the key)."""
    message = first_line(exc)
    tune.report({**report, "training_complete": False, DISK_FULL: message})
    time.sleep(DISK_FULL_WAIT_S)
    raise DiskFullError(message)


def diverged_report(summary: RunSummary, run: Run, where: dict) -> dict:
    """The last report of a run that diverged: its last finite metrics and why it stopped."""
    last = summary.evals[-1] if summary.evals else {}
    return {
        METRIC: summary.best_val_loss,  # last finite value (inf if it never evaluated)
        "val_loss": last.get("val_loss", math.inf), "train_loss": last.get("train_loss", math.inf),
        "tokens_seen": summary.tokens_seen, "step": summary.steps,
        "epoch": summary.steps / run.plan.batches_per_epoch, "lr": run.lr(max(0, summary.steps - 1)),
        "hp_status": DIVERGED, "training_complete": True, "message": summary.message,
        "device": str(run.device), "precision": run.engine.precision, **where,
    }


def train_trial(config: dict, *, base: dict, tokens: np.ndarray, cpus_per_trial: float = 1.0,
                checkpoint_every: int = 0, source: str = "corpus", fault_at_step: int = 0) -> None:
    """Tune entry point. ``config`` holds the trial's hyperparameters by bare name.

    ``checkpoint_every``: also checkpoint every this many evaluations (0: only at the end and by
    eval.checkpoint_minutes).

    ``fault_at_step`` injects a crash (fault-tolerance tests): a trial that did not start from a
    checkpoint raises at its first evaluation at or after that step.
    """
    torch.set_num_threads(max(1, int(cpus_per_trial)))  # pin torch to the CPUs Ray reserved
    quiet_sigterm_exits()
    where = placement()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per report
    try:
        cfg = PretrainConfig.from_dict(base, source="sweep base config").with_hparams(config, source="trial")
        run = Run(cfg, tokens, source=source)
    except (ConfigError, DataError) as exc:
        tune.report({**skipped_report(str(exc)), **where})
        return

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            run.load(Path(d))

    evals_since_checkpoint = 0
    handed_over = 0.0  # seconds tune.report spent persisting checkpoints (copying them into storage)

    def on_eval(metrics: dict, save) -> None:
        nonlocal evals_since_checkpoint, handed_over
        evals_since_checkpoint += 1
        report = eval_report(metrics, run, where)
        if fault_at_step and metrics["step"] >= fault_at_step and checkpoint is None:
            raise RuntimeError(f"injected fault at step {metrics['step']}")
        if checkpoint_now(metrics, run, evals_since_checkpoint, checkpoint_every):
            evals_since_checkpoint = 0
            try:
                with tempfile.TemporaryDirectory() as d:
                    save(Path(d))
                    t0 = time.perf_counter()
                    tune.report({**report, "checkpoint_seconds": run.checkpoint_seconds + handed_over},
                                checkpoint=tune.Checkpoint.from_directory(d))
                    handed_over += time.perf_counter() - t0
            except Exception as exc:
                if not is_out_of_space(exc):
                    raise
                wait_for_the_sweep_to_stop(report, exc)
        else:
            tune.report({**report, "checkpoint_seconds": run.checkpoint_seconds + handed_over})

    summary = run.train(on_eval=on_eval, log=None)
    if summary.status == "diverged":
        tune.report({**diverged_report(summary, run, where), "checkpoint_seconds": run.checkpoint_seconds + handed_over})
