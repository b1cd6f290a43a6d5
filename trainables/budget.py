"""Token-budget arithmetic, in one place: a run's size, warmup and LR schedule; a sweep's trial tokens,
warmup tokens, ASHA's first rung and the search's token budget.

A run (:func:`plan_run`): the corpus split into windows, batches per epoch, tokens per step, the total
steps (epochs, capped by ``train.max_tokens``) and the warmup (:func:`warmup_steps_of`); the LR of every
step (:func:`lr_at`). A sweep: the most tokens a trial trains on (:func:`max_trial_tokens`, ASHA's
``max_t``), the longest warmup of the space in tokens (:func:`max_warmup_tokens`), the first rung
(:func:`default_grace`) and the tokens its trials have spent against ``--budget-tokens``
(:class:`TokenBudget`). Pure Python: no torch, no Ray; a space is read through its ``axes`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.errors import ConfigError, DataError, brief

if TYPE_CHECKING:
    from search_spaces import Space
    from trainables.config import PretrainConfig, TrainArgs


# -- one run ----------------------------------------------------------------------------------------

def warmup_steps_of(train: TrainArgs, total_steps: int) -> int:
    """The run's warmup in steps: ``warmup_fraction`` of ``total_steps`` when set, else ``warmup_steps``."""
    if train.warmup_fraction is not None:
        return int(round(train.warmup_fraction * total_steps))
    return train.warmup_steps


SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("1-sqrt", "linear", "cosine")


def decay_steps_of(train: TrainArgs, total_steps: int) -> int:
    """Steps a WSD run spends decaying: ``decay_fraction`` of the run, at least 1 (0 for other schedules)."""
    if train.schedule != "wsd":
        return 0
    return max(1, int(round(train.decay_fraction * total_steps)))


def _decay(progress: float, shape: str) -> float:
    """The decay's share of (peak - min) left at ``progress`` in [0, 1]: 1 at the start, 0 at the end."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "1-sqrt":  # Hägele et al. 2024, §3: the cooldown that matches cosine best
        return 1.0 - math.sqrt(progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, *, warmup_steps: int, total_steps: int, initial_lr: float, peak_lr: float,
          min_lr: float, schedule: str = "cosine", decay_steps: int = 0, decay_shape: str = "1-sqrt") -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then the schedule.

    cosine: from peak_lr to min_lr over the rest of the run (the source documents' schedule).
    wsd (warmup-stable-decay): peak_lr until the last ``decay_steps`` steps, then ``decay_shape`` down to
    min_lr (MiniCPM, Hu et al. 2024; Hägele et al. 2024). constant: peak_lr after warmup.

    ``step`` counts the optimizer steps already taken, the number a checkpoint stores, so a resumed
    run needs no offset. Step 0 runs at ``initial_lr``, step ``warmup_steps`` (the first clipped one)
    at ``peak_lr``; a decay's last step, ``total_steps - 1``, stops one step short of ``min_lr``.
    LLMs-from-scratch counts from 1 and its last step lands on ``min_lr``: the same curve shifted by
    one step (its LR at step s + 1 is this one's at step s).
    """
    if step < warmup_steps:
        return initial_lr + step * (peak_lr - initial_lr) / warmup_steps
    if schedule == "constant":
        return peak_lr
    if schedule == "wsd":
        start = total_steps - decay_steps
        if step < start:
            return peak_lr
        progress = (step - start) / decay_steps
        shape = decay_shape
    else:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        shape = "cosine"
    assert 0.0 <= progress <= 1.0, f"progress {progress} out of [0, 1] at step {step}/{total_steps}"
    return min_lr + (peak_lr - min_lr) * _decay(progress, shape)


def cooldown_problems(t: TrainArgs) -> list[str]:
    """train.cooldowns: positive token budgets, below max_tokens, on a WSD run."""
    c = t.cooldowns
    if c is None:
        return []
    if not (isinstance(c, (list, tuple)) and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in c)):
        return [f"train.cooldowns must be a list of positive token budgets (e.g. [100000, 200000]) or null, "
                f"got {brief(c)}"]
    out = []
    if c and t.schedule != "wsd":
        out.append(f"train.cooldowns needs train.schedule: wsd (a branch decays from the stable LR), "
                   f"got schedule {brief(t.schedule)}; set schedule: wsd or drop cooldowns")
    if c and isinstance(t.max_tokens, int) and max(c) >= t.max_tokens:
        out.append(f"train.cooldowns: {max(c):,} is not below train.max_tokens {t.max_tokens:,} (the run's own "
                   "decay scores its full budget); list shorter budgets only")
    return out


@dataclass(frozen=True)
class Branch:
    """A cooldown branch: the decay a WSD run of ``tokens`` would end with, taken from the main run.

    A run of that budget trains ``total_steps`` steps; its decay starts at ``start`` and lasts
    ``decay_steps``. Until ``start`` it is the main run step for step (same warmup, same stable LR,
    same batches), so the branch's loss is that run's loss."""

    tokens: int
    total_steps: int
    start: int
    decay_steps: int


@dataclass(frozen=True)
class RunPlan:
    """Quantities derived once from the config and the corpus, printed at the start of a run."""

    n_tokens: int
    train_tokens: int
    val_tokens: int
    train_windows: int
    val_windows: int
    batches_per_epoch: int
    tokens_per_step: int
    total_steps: int
    epochs: float  # < num_epochs when max_tokens cuts the run short
    warmup_steps: int  # train.warmup_steps, or train.warmup_fraction of total_steps
    decay_steps: int = 0  # WSD: the last train.decay_fraction of total_steps (0 for cosine and constant)
    branches: tuple[Branch, ...] = ()  # WSD: the cooldown branches of train.cooldowns, by start step

    def describe(self) -> str:
        return (f"corpus {self.n_tokens:,} tokens (train {self.train_tokens:,} / val {self.val_tokens:,}); "
                f"{self.train_windows:,} train windows, {self.val_windows:,} val windows; "
                f"{self.batches_per_epoch} steps/epoch x {self.epochs:g} epochs = {self.total_steps} steps "
                f"of {self.tokens_per_step:,} tokens = {self.total_steps * self.tokens_per_step:,} tokens")


def plan_run(config: PretrainConfig, n_tokens: int, *, source: str = "corpus") -> RunPlan:
    """Check the config against a corpus of ``n_tokens`` and derive the run's size; DataError/ConfigError if it cannot run."""
    ctx, t = config.model.context_len, config.train
    train_n = int(n_tokens * config.data.train_ratio)
    val_n = n_tokens - train_n
    stride = config.stride
    train_windows = len(range(0, max(train_n - ctx, 0), stride))
    val_windows = len(range(0, max(val_n - ctx, 0), stride))
    need = ctx + 1
    for split, n, windows in (("train", train_n, train_windows), ("val", val_n, val_windows)):
        if windows == 0:
            raise DataError(
                f"{source}: {n_tokens:,} tokens give a {split} split of {n:,} tokens, but one window needs {need:,} "
                f"(context_len {ctx} + 1); use a larger corpus, a smaller model.context_len, "
                f"or adjust data.train_ratio ({config.data.train_ratio})")
    if t.batch_size > train_windows:
        raise DataError(
            f"{source}: train.batch_size {t.batch_size} exceeds the {train_windows} training windows "
            f"(train batches drop the last partial batch, so no step could run); "
            f"use batch_size <= {train_windows} or a larger corpus")
    batches = train_windows // t.batch_size
    tokens_per_step = t.batch_size * ctx
    total = batches * t.num_epochs
    if t.max_tokens is not None:
        total = min(total, max(1, t.max_tokens // tokens_per_step))
    warmup = warmup_steps_of(t, total)
    decay = decay_steps_of(t, total)
    if decay and warmup > total - decay:
        raise ConfigError(
            f"the warmup ({warmup} steps) runs into the WSD decay (train.decay_fraction {t.decay_fraction:g} = the last "
            f"{decay} of {total} steps); lower warmup_steps or decay_fraction, or train longer")
    if warmup >= total:
        what = (f"train.warmup_fraction {t.warmup_fraction:g} ({warmup} steps)" if t.warmup_fraction is not None
                else f"train.warmup_steps ({warmup})")
        raise ConfigError(
            f"{what} must be below the run's total steps ({total} = "
            f"{batches} steps/epoch x {t.num_epochs} epochs"
            + (f", capped by max_tokens {t.max_tokens:,}" if t.max_tokens else "")
            + "); lower warmup_steps or train longer")
    return RunPlan(n_tokens, train_n, val_n, train_windows, val_windows, batches, tokens_per_step,
                   total, round(total / batches, 3), warmup, decay,
                   branches_of(t, total=total, warmup=warmup, tokens_per_step=tokens_per_step))


def branches_of(t: TrainArgs, *, total: int, warmup: int, tokens_per_step: int) -> tuple[Branch, ...]:
    """The cooldown branches of ``train.cooldowns`` (sorted, one per distinct step count); ConfigError
    naming a budget whose run would be no shorter than the main run, or would decay inside its warmup."""
    if not t.cooldowns:
        return ()
    out: dict[int, Branch] = {}
    for tokens in sorted(set(t.cooldowns)):
        steps = max(1, tokens // tokens_per_step)
        if steps >= total:
            raise ConfigError(
                f"train.cooldowns: a run of {tokens:,} tokens would take {steps} steps of {tokens_per_step:,} tokens, "
                f"not fewer than the run's own {total}; list budgets below the run's")
        decay = decay_steps_of(t, steps)
        if steps - decay < warmup:
            raise ConfigError(
                f"train.cooldowns: a run of {tokens:,} tokens ({steps} steps) would start its decay at step "
                f"{steps - decay}, inside the warmup of {warmup} steps; drop that budget or shorten the warmup")
        out.setdefault(steps, Branch(tokens, steps, steps - decay, decay))
    return tuple(sorted(out.values(), key=lambda b: b.start))


# -- a sweep ----------------------------------------------------------------------------------------

def axis_values(space: Space, name: str, default) -> list:
    """The values axis ``name`` takes (its bounds for a range), or ``[default]`` when it is not searched."""
    dist = space.axes.get(name)
    if dist is None:
        return [default]
    return [v for v in (getattr(dist, "values", None) or [dist.low, dist.high]) if v is not None] or [default]


def axis_max(space: Space, name: str, default):
    """The largest value axis ``name`` can take (``default`` when the space does not search it)."""
    return max(axis_values(space, name, default))


def max_trial_tokens(base: PretrainConfig, space: Space, n_tokens: int) -> int:
    """Most tokens any trial can train on: ASHA's max_t."""
    if base.train.max_tokens:
        return int(base.train.max_tokens)
    epochs = int(axis_max(space, "num_epochs", base.train.num_epochs))
    train_tokens = int(n_tokens * base.data.train_ratio)
    return max(1, epochs * train_tokens)


def max_warmup_tokens(base: PretrainConfig, space: Space, max_t: int) -> int:
    """Tokens the longest warmup of the space's runnable points takes: ASHA's first rung comes no earlier.
    A point whose warmup does not end within the budget never trains (it is excluded or skipped), so it
    does not count."""
    t = base.train
    fraction = axis_max(space, "warmup_fraction", t.warmup_fraction)
    if fraction is not None:
        return int(fraction * max_t)
    spans = [int(w * b * c) for w in axis_values(space, "warmup_steps", t.warmup_steps)
             for b in axis_values(space, "batch_size", t.batch_size)
             for c in axis_values(space, "context_len", base.model.context_len)]
    return max([x for x in spans if x < max_t], default=0)


FIRST_RUNG = 0.5
"""ASHA's first rung by default, as a fraction of a trial's tokens. Under a schedule that decays to the
trial's end, an earlier loss still favours the learning rates that are high at that moment: on the three
problems of bench/rung_quality.py rungs from max_t / rf^2 (or from the end of warmup) stopped 2-9 configs
that would have finished within 1 % of the best, one rung at half the trial 0-1, and budgeted
searches found better points at 20 % of the grid's tokens (bench/RESULTS.md)."""


def default_grace(max_t: int, warmup_tokens: int = 0) -> int:
    """ASHA's first rung: half the trial (FIRST_RUNG), never before the longest warmup of the space has
    ended (a trial judged mid-warmup has not yet trained at its peak LR), and always below max_t."""
    return max(1, min(max(int(max_t * FIRST_RUNG), warmup_tokens), max_t - 1))


class TokenBudget:
    """A search's token budget as a promise: a trial starts only if its whole run fits in what is left.

    A trial is charged its planned tokens (``trial_tokens``, the most any trial of the space trains: ASHA's
    ``max_t``) from the moment it is started until it ends; then the tokens it really trained (the latest
    ``tokens_seen``), so what ASHA stopped early or a trial that ended early gives back is free again. The
    budget is never exceeded: used (ended trials) + charged (running ones) + the next trial's plan must fit.
    """

    def _init_budget(self, budget_tokens: int | None, trial_tokens: int | None = None) -> None:
        self._budget, self._tokens = budget_tokens, {}
        self._trial_tokens, self._running = int(trial_tokens or 0), set()

    def _note_tokens(self, trial_id: str, result: dict) -> None:
        if "tokens_seen" in result:
            self._tokens[trial_id] = int(result["tokens_seen"])

    def _started(self, trial_id: str) -> None:
        self._running.add(trial_id)

    def _ended(self, trial_id: str) -> None:
        self._running.discard(trial_id)

    def committed_tokens(self) -> int:
        """Tokens ended trials trained plus the plans of the running ones (at least what they trained)."""
        running = sum(max(self._trial_tokens, self._tokens.get(t, 0)) for t in self._running)
        return running + sum(v for t, v in self._tokens.items() if t not in self._running)

    def budget_fits(self) -> bool:
        """Whether one more trial's whole run fits in the budget (always, without a budget)."""
        return not self._budget or self.committed_tokens() + self._trial_tokens <= self._budget

    def budget_spent(self) -> bool:
        """No further trial can fit and none is running that could give tokens back."""
        return not self.budget_fits() and not self._running
