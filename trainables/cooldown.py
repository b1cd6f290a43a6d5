"""Cooldown branches: train a few steps at a decaying LR from a run's current state, score the model,
and put the run back exactly as it was (model, optimizer, RNG), so training goes on as if nothing
happened. Two users: a WSD run's branches at shorter budgets (``train.cooldowns``; one run gives the
loss of every shorter run, Hägele et al. 2024, §4) and ASHA rungs scored after a short cooldown.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch

from trainables.budget import Branch, lr_at

if TYPE_CHECKING:
    from trainables.run import Run


def branch_loss(run: Run, lrs: list[float]) -> float:
    """Validation loss after one optimizer step at each of ``lrs`` (base LRs; each group runs at its
    lr_scale times it) on the batches that come next; the run is restored afterwards. A branch that
    diverges scores inf."""
    model_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    optimizer_state = copy.deepcopy(run.optimizer.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    try:
        run.model.train()
        for lr, (step, x, y) in zip(lrs, run.steps()):
            for group in run.optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            run.train_step(step, x, y)
        loss = run.val_loss()
        return loss if math.isfinite(loss) else math.inf
    finally:
        run.model.load_state_dict(model_state)
        run.optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng)
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)
        run.model.train()


def linear_cooldown_lrs(lr0: float, min_lr: float, steps: int) -> list[float]:
    """``steps`` LRs falling linearly from just below ``lr0`` to ``min_lr`` (ASHA's cooldown rungs)."""
    return [lr0 + (min_lr - lr0) * (i + 1) / steps for i in range(steps)]


def wsd_branch_lrs(run: Run, branch: Branch) -> list[float]:
    """The LRs of the decay a WSD run of ``branch.tokens`` ends with: the same schedule function at that
    run's length, over its last ``branch.decay_steps`` steps."""
    t = run.config.train
    return [lr_at(step, warmup_steps=run.plan.warmup_steps, total_steps=branch.total_steps, initial_lr=t.initial_lr,
                  peak_lr=t.peak_lr, min_lr=t.min_lr, schedule="wsd", decay_steps=branch.decay_steps,
                  decay_shape=t.decay_shape)
            for step in range(branch.start, branch.total_steps)]
