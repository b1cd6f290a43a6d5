"""One pretraining run: tokens -> GPT -> AdamW with warmup + cosine LR and clipping after warmup.

The run's size and schedule are in :mod:`trainables.budget`, how it computes in :mod:`trainables.engine`,
its state, steps and checkpoints in :mod:`trainables.run`; here, :func:`pretrain` puts them together.

Never imports Ray. Progress leaves through two plain callables, so the same function runs in a
unit test, inside a Tune trial (which turns each evaluation into ``tune.report``) and as the full
run of an exported config:

    on_eval(metrics: dict, save_checkpoint: Callable[[Path], None]) -> None
    log(line: str) -> None
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from trainables.budget import RunPlan, lr_at, plan_run
from trainables.config import PretrainConfig
from trainables.corpus import load_data
from trainables.engine import Engine, cpu_bf16_flags, fused_adamw_supported, resolve_precision
from trainables.errors import CheckpointError, DiskFullError
from trainables.files import atomic_write_text, plain_tree
from trainables.run import CHECKPOINT_FILE, EvalCallback, Run, RunSummary, calc_loss_batch, clip_gradients, evaluate
from trainables.status import COMPLETED

__all__ = [  # the run's pieces stay importable from here: the rooms are budget, engine and run
    "CHECKPOINT_FILE", "METRICS_FILE", "Engine", "Run", "RunPlan", "RunSummary", "calc_loss_batch", "clip_gradients",
    "cpu_bf16_flags", "evaluate", "event_writer", "fused_adamw_supported", "lr_at", "plan_run",
    "pretrain", "resolve_precision",
]

METRICS_FILE = "metrics.json"


def pretrain(
    config: PretrainConfig,
    *,
    tokens: np.ndarray | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    on_eval: EvalCallback | None = None,
    log: Callable[[str], None] | None = print,
) -> RunSummary:
    """Run one pretraining run. ``tokens`` skips reading the corpus (a sweep passes the cached array).

    With ``out_dir`` the run checkpoints there (at the end, every ``eval.checkpoint_freq`` steps and
    every ``eval.checkpoint_minutes``), writes ``config.yaml`` and ``metrics.json``, and
    ``resume=True`` continues from its checkpoint. The first log line is the engine (device,
    precision and what ``auto`` chose, compile, AdamW kernel).
    """
    source = config.data.path or "embedded corpus"
    if log:
        log(Engine.resolve(config.train).describe())  # first: what auto chose, before any work
    if tokens is None:
        tokens = load_data(config.data, vocab_size=config.model.vocab_size, log=log).tokens
    run = Run(config, tokens, source=source)
    out = Path(out_dir).resolve() if out_dir is not None else None
    if out is not None:
        if resume:
            if not (out / CHECKPOINT_FILE).is_file():
                raise CheckpointError(f"--resume: no {CHECKPOINT_FILE} in {out}; run once without --resume first")
            run.load(out)
        elif (out / CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{out} already holds a run's checkpoint; pass --resume to continue it "
                                  "or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", config.to_yaml())
    if log:
        log(f"model {config.preset}: {run.model.num_params():,} parameters on {run.device}")
        log(run.plan.describe())
        if resume:
            log(f"resumed at step {run.step} ({run.tokens_seen:,} tokens seen)")
    board = event_writer(out / "tensorboard") if out is not None else None
    if board is not None:
        user_on_eval = on_eval

        def on_eval(metrics: dict, save) -> None:  # noqa: F811  (the user's callback, plus TensorBoard)
            for key in ("train_loss", "val_loss", "lr", "tokens_per_second"):
                board.add_scalar(key, metrics[key], global_step=metrics["tokens_seen"])
            board.flush()
            if user_on_eval is not None:
                user_on_eval(metrics, save)
    try:
        summary = run.train(on_eval=on_eval, log=log, checkpoint_dir=out, final_checkpoint=False)
    finally:
        if board is not None:
            board.close()
    if out is not None:  # the metrics first: a full disk may cost the checkpoint, never the run's result
        atomic_write_text(out / METRICS_FILE, json.dumps(plain_tree(summary.to_dict()), indent=2))
        if summary.status == COMPLETED:
            try:
                run.save(out)
            except DiskFullError as exc:
                raise DiskFullError(f"the run finished and its metrics are in {out / METRICS_FILE}, but its final "
                                    f"checkpoint was not written: {exc}") from None
            summary = replace(summary, checkpoint_seconds=run.checkpoint_seconds)  # the final one counted too
            atomic_write_text(out / METRICS_FILE, json.dumps(plain_tree(summary.to_dict()), indent=2))
        if log:
            log(f"wrote {out / METRICS_FILE}" + (f" and {out / CHECKPOINT_FILE}" if summary.status == COMPLETED else ""))
    return summary


def event_writer(directory: Path):
    """A TensorBoard event writer (tensorboardX, which Ray Tune brings) whose steps are tokens seen;
    None where tensorboardX is not installed (the run's metrics.json has the same curves)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))
