"""Why trials were skipped, counted per reason, each with the concrete fix.

A ``skipped-invalid`` trial names its own reason, but a sweep where every trial was skipped needs the
answer to "what do I change?": the smallest ``--max-tokens-per-trial`` that makes the warmup fit,
the values to drop from the space, the largest batch the corpus allows. The reasons are recomputed
from each skipped trial's hyperparameters (the same checks the trial ran), not parsed from messages.

    for line in skip_lines(trials, base, n_tokens, axes):
        print(line)
"""

from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from hpsearch.results import trial_params
from trainables.budget import plan_run
from trainables.config import PretrainConfig, lr_order_broken
from trainables.errors import ConfigError, DataError, first_line
from trainables.status import SKIPPED

WARMUP, MIN_LR, INITIAL_LR, BATCH = ("warmup_steps not below the run's total steps", "min_lr above peak_lr",
                                     "initial_lr above peak_lr", "batch_size larger than the training windows")


def skip_lines(trials: pd.DataFrame, base: PretrainConfig, n_tokens: int, axes: list[str]) -> list[str]:
    """'N skipped-invalid of M trials', then one line per reason: its count, the values, the fix."""
    skipped = trials[trials["status"] == SKIPPED]
    if skipped.empty:
        return []
    points = [(trial_params(row, axes), str(row.get("error") or ""))
              for _, row in skipped.iterrows()]
    return [f"{len(skipped)} of {len(trials)} trials skipped-invalid:", *reason_lines(points, base, n_tokens)]


def reason_lines(points: list[tuple[dict, str]], base: PretrainConfig, n_tokens: int) -> list[str]:
    """One line per reason the (values, message) points cannot train: its count and the fix."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for values, message in points:
        for reason, facts in diagnose(base, values, n_tokens, message=message):
            groups[reason].append(facts)
    return [f"  {len(facts)} x {reason}: {fix(reason, facts)}"
            for reason, facts in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


def excluded_lines(storage_url: str, study_name: str, base: PretrainConfig, n_tokens: int) -> list[str]:
    """What the sampler proposed that never trained (hpsearch.searchers): invalid points per reason with
    the fix, repeats, and why it stopped proposing, from the sweep's Optuna study."""
    import optuna

    from hpsearch.searchers import EXCLUDED, EXHAUSTED

    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except Exception:  # no study (grid/random), or an unreadable one: nothing to say
        return []
    invalid, repeats = [], 0
    for t in study.get_trials(deepcopy=False):
        why = t.user_attrs.get(EXCLUDED, "")
        if why.startswith("invalid: "):
            invalid.append((dict(t.params), why.removeprefix("invalid: ")))
        elif why:
            repeats += 1
    lines = []
    if invalid:
        lines += [f"{len(invalid)} invalid proposals excluded before training (none took a trial slot):",
                  *reason_lines(invalid, base, n_tokens)]
    if repeats:
        lines.append(f"{repeats} repeated proposals were told their earlier trial's outcome instead of training again")
    if study.user_attrs.get(EXHAUSTED):
        lines.append(f"the search ended before --num-samples: {study.user_attrs[EXHAUSTED]}")
    return lines


def diagnose(base: PretrainConfig, values: dict, n_tokens: int, *, message: str = "") -> list[tuple[str, dict]]:
    """[(reason, facts)] for one skipped trial's hyperparameters; the trial's own message if none is known."""
    try:
        cfg = base.with_hparams(values, source="trial")
    except ConfigError:
        t = base.train
        lr = {k: float(values.get(k, getattr(t, k))) for k in ("initial_lr", "peak_lr", "min_lr")}
        found = [(f"{low} above {high}", lr) for low, high in lr_order_broken(lr)]
        return found or [(first_line(message, limit=120) or "invalid config", {})]
    try:
        plan_run(cfg, n_tokens)
    except DataError as exc:
        if cfg.train.batch_size > 1:
            try:
                windows = plan_run(cfg.with_hparams({"batch_size": 1, "warmup_steps": 0}), n_tokens).train_windows
                return [(BATCH, {"batch_size": cfg.train.batch_size, "windows": windows})]
            except (ConfigError, DataError):
                pass
        return [(first_line(exc, limit=120), {})]
    except ConfigError as exc:
        if cfg.train.warmup_fraction is None:
            p = plan_run(cfg.with_hparams({"warmup_steps": 0}), n_tokens)
            epochs_steps = p.batches_per_epoch * cfg.train.num_epochs
            w = cfg.train.warmup_steps
            return [(WARMUP, {"warmup_steps": w, "total_steps": p.total_steps, "tokens_per_step": p.tokens_per_step,
                              "batches_per_epoch": p.batches_per_epoch,
                              "needed_tokens": (w + 1) * p.tokens_per_step if epochs_steps > w else None,
                              "needed_epochs": math.ceil((w + 1) / p.batches_per_epoch)})]
        return [(first_line(exc, limit=120), {})]
    return [(first_line(message, limit=120) or "skipped (reason not recorded)", {})]


def fix(reason: str, facts: list[dict]) -> str:
    """The concrete change that makes the trials of ``reason`` valid."""
    if reason == WARMUP:
        warmups = sorted({f["warmup_steps"] for f in facts})
        shortest = min(f["total_steps"] for f in facts)
        drop = f"drop warmup_steps {_list(warmups)} (keep them below {shortest})"
        needed = [f["needed_tokens"] for f in facts]
        if all(n is not None for n in needed):
            return f"--max-tokens-per-trial {max(needed):,} (or more) makes them valid, or {drop}"
        epochs = max(f["needed_epochs"] for f in facts)
        return (f"the corpus is too short for that warmup: num_epochs >= {epochs} (with a budget of "
                f"{max(f['needed_epochs'] * f['batches_per_epoch'] * f['tokens_per_step'] for f in facts):,} "
                f"tokens), a larger corpus, or {drop}")
    if reason in (MIN_LR, INITIAL_LR):
        low = reason.split()[0]
        lows = sorted({f[low] for f in facts})
        peaks = sorted({f["peak_lr"] for f in facts})
        return f"drop {low} {_list(lows)} or peak_lr {_list(peaks)} (keep {low} <= peak_lr)"
    if reason == BATCH:
        batches = sorted({f["batch_size"] for f in facts})
        windows = min(f["windows"] for f in facts)
        return f"drop batch_size {_list(batches)} (the corpus has {windows} training windows) or use a larger corpus"
    return "see the error column of `hpsearch results NAME`"


def _list(values: list) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:8])
    return shown + (f" (+{len(values) - 8} more)" if len(values) > 8 else "")


STALE = "hpsearch_stale"
"""User attribute of an Optuna trial closed as FAIL because no Tune trial will ever finish it."""


def close_stale_trials(storage_url: str, study_name: str) -> list[str]:
    """Optuna trials still RUNNING once every Tune trial has ended: marked FAIL, and named in one line.

    A sweep stopped hard (a full disk whose last state snapshot did not fit, a killed driver) can leave
    a trial that Optuna was asked for but that Tune's saved state does not hold; ``--resume`` follows
    Tune's state, so that trial never runs, and would stay RUNNING in optuna.db forever. Call only when
    no Tune trial is unfinished (an interrupted sweep's RUNNING trials are still to be resumed).
    """
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
        stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in stale:
            optuna.Trial(study, t._trial_id).set_user_attr(
                STALE, "started before the sweep stopped, but in no saved Tune state: never trained to its end")
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    except Exception as exc:  # the study is a record beside the results: never costs the sweep its tables
        return [f"warning: optuna.db could not be checked for unfinished trials ({first_line(exc, limit=200)})"]
    if not stale:
        return []
    shown = "; ".join(f"#{t.number} {dict(t.params)}" for t in stale[:5]) + (
        f" and {len(stale) - 5} more" if len(stale) > 5 else "")
    return [f"{len(stale)} Optuna trial(s) were started before the sweep stopped but are in no saved Tune state, "
            f"so they never trained and are in no table ({shown}): marked FAIL in optuna.db (user attribute "
            f"{STALE}); run those points again in a new sweep if they matter"]
