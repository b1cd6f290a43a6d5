"""Data-parallel trials: with ``--gpus-per-trial N`` (N >= 2) one trial trains on N GPUs with DDP.

The Ray 2.60 pattern, Ray Train inside Tune: the trial runs :func:`train_trial_ddp`, a light driver
that starts a ``TorchTrainer`` with N workers of one GPU each. Rank 0's reports reach Tune through
``TuneReportCallback``, so ASHA and the searchers see a DDP trial like any other trial.

    worker r of N:  Run(config, on its GPU) -> DDP(model) -> rank r's slice of every batch
    global batch  = train.batch_size, as in a 1-GPU trial (the slices are averaged by DDP),
                    so a hyperparameter means the same thing at any N.

Reports are built by :mod:`trainables.tune_trainable`'s helpers (the same metrics and ``hp_status``
rules; tokens counted over all ranks), plus ``ddp_devices``: every rank's ``node_id:gpu``.
Checkpoints live in Ray Train's storage (``<storage>/ddp-<trial id>``): a retried trial, or a
worker group restarted by Ray Train, resumes from the latest one.
Without CUDA (fake GPUs from ``ray start --num-gpus``) the workers train on CPU over gloo.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trainables.budget import plan_run
from trainables.config import PretrainConfig
from trainables.errors import ConfigError, DataError
from trainables.run import Run
from trainables.status import DIVERGED

DRIVER_CPUS = 0.01
"""CPUs the Tune trial itself reserves: it only waits on the trainer (the workers hold the GPUs)."""


def ddp_workers(gpus_per_trial: float) -> int:
    """Workers of a DDP trial: one per GPU. ConfigError unless ``gpus_per_trial`` is a whole number >= 2."""
    if gpus_per_trial < 2 or gpus_per_trial != int(gpus_per_trial):
        raise ConfigError(f"--gpus-per-trial above 1 runs data-parallel with one worker per GPU, so it must "
                          f"be a whole number >= 2, got {gpus_per_trial:g}; use 1, a fraction below 1, or 2, 3, ...")
    return int(gpus_per_trial)


def train_trial_ddp(config: dict, *, base: dict, tokens: np.ndarray, num_workers: int, storage_path: str,
                    cpus_per_trial: float = 1.0, checkpoint_every: int = 0, source: str = "corpus",
                    max_failures: int = 0, fault_at_step: int = 0) -> None:
    """Tune entry point of a DDP trial (wrap it with ``tune.with_resources(..., {"cpu": DRIVER_CPUS})``).

    ``storage_path`` must be reachable from every node (the sweep's Tune storage); the trainer's
    checkpoints go to ``<storage_path>/ddp-<trial id>``.
    """
    import ray
    import ray.train
    import ray.train.torch
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.tune_trainable import quiet_sigterm_exits, skipped_report

    quiet_sigterm_exits()
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    try:  # the same rule as a 1-GPU trial: combinations that cannot run report once and end
        cfg = PretrainConfig.from_dict(base, source="sweep base config").with_hparams(config, source="trial")
        plan_run(cfg, len(tokens), source=source)
        if cfg.train.batch_size < num_workers:
            raise ConfigError(f"train.batch_size {cfg.train.batch_size} cannot be split over {num_workers} "
                              "DDP workers (each needs at least one window per step)")
    except (ConfigError, DataError) as exc:
        tune.report(skipped_report(str(exc)))
        return

    cpus_per_worker = cpus_per_trial / num_workers
    # nccl needs a CUDA build of torch; the CPU build (and fake GPUs in tests) trains over gloo
    backend = None if dist.is_nccl_available() else "gloo"
    trainer = ray.train.torch.TorchTrainer(
        _train_worker,
        train_loop_config={"base": base, "hparams": dict(config), "tokens": ray.put(tokens), "source": source,
                           "checkpoint_every": checkpoint_every, "threads": max(1, int(cpus_per_worker)),
                           "fault_at_step": fault_at_step},
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=True,
                                               resources_per_worker={"CPU": cpus_per_worker, "GPU": 1}),
        torch_config=ray.train.torch.TorchConfig(backend=backend),
        run_config=ray.train.RunConfig(
            name=f"ddp-{tune.get_context().get_trial_id()}", storage_path=storage_path,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()  # raises if training failed: Tune records the trial as errored


class _DDP(DistributedDataParallel):
    """DDP that checkpoints like the bare model and diverges on every rank at once.

    A non-finite output on one rank turns every rank's output NaN (one scalar all-reduce), so all
    ranks see the same loss and leave the training loop at the same step; otherwise the finite
    ranks would wait forever in the next step's gradient all-reduce.
    """

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        bad = (~torch.isfinite(out.detach())).any().to(torch.float32).reshape(1)
        dist.all_reduce(bad)
        return out + float("nan") if bad.item() else out

    def num_params(self) -> int:
        return self.module.num_params()

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)


class _Shard:
    """Rank ``rank``'s slice of every batch of ``loader``; all ranks walk the same batch order."""

    def __init__(self, loader, rank: int, world: int):
        self.loader, self.rank, self.world = loader, rank, world

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int = 0, start_batch: int = 0):
        for x, y in self.loader.batches(epoch, start_batch):
            yield x.tensor_split(self.world)[self.rank], y.tensor_split(self.world)[self.rank]  # (B/N, T)


def _train_worker(cfg: dict) -> None:
    """One DDP rank: the pretraining loop of :class:`trainables.run.Run` on its slice."""
    import ray
    import ray.train
    import ray.train.torch

    from trainables.tune_trainable import checkpoint_now, diverged_report, eval_report, placement, quiet_sigterm_exits

    quiet_sigterm_exits()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg["threads"])
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    config = PretrainConfig.from_dict(cfg["base"], source="sweep base config")
    config = config.with_hparams(cfg["hparams"], source="trial")
    config = replace(config, train=replace(config.train, device=str(device)))
    run = Run(config, ray.get(cfg["tokens"]), source=cfg["source"])
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            run.load(Path(d))
    run.model = _DDP(run.model, device_ids=[device.index] if device.type == "cuda" else None)
    run.train_loader = _Shard(run.train_loader, rank, world)

    where = placement()
    devices = [None] * world
    dist.all_gather_object(devices, f"{where['node_id']}:{where['gpu_ids']}")
    where.update(ddp_devices=";".join(devices), ddp_workers=world, device=str(device))
    tokens_per_step = run.plan.tokens_per_step  # global: every rank's slice together
    evals_since_checkpoint = 0

    def on_eval(metrics: dict, save) -> None:
        nonlocal evals_since_checkpoint
        evals_since_checkpoint += 1
        report = eval_report({**metrics, "tokens_seen": metrics["step"] * tokens_per_step,
                              "tokens_per_second": metrics["tokens_per_second"] * world}, run, where)
        if cfg["fault_at_step"] and metrics["step"] >= cfg["fault_at_step"] and checkpoint is None:
            raise RuntimeError(f"injected fault at step {metrics['step']}")
        if checkpoint_now(metrics, run, evals_since_checkpoint, cfg["checkpoint_every"]):
            evals_since_checkpoint = 0  # rank 0's clock decides: only rank 0 writes
            if rank == 0:
                with tempfile.TemporaryDirectory() as d:
                    save(Path(d))
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(d))
                return
        ray.train.report(report)  # every rank reports; Tune sees rank 0's

    summary = run.train(on_eval=on_eval, log=None)
    if summary.status == DIVERGED:
        ray.train.report({**diverged_report(summary, run, where), "tokens_seen": summary.steps * tokens_per_step})
