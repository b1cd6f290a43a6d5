"""Hyperparameter importance: how much of the variation in best_val_loss each axis explains.

The ranked trials are added to an in-memory Optuna study (the sweep's own searcher may not have
been Optuna) and scored with Optuna's default evaluator. Rough with few trials. Trials are compared
at equal tokens: early-stopped trials were scored after fewer tokens than completed ones, so they
are left out (a note says how many).
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from hpsearch.report.data import match
from hpsearch.results import ranked
from search_spaces import Dist, IntRange, LogUniform, Space
from trainables.files import plain
from trainables.status import EARLY_STOPPED


def hparam_importance(trials: pd.DataFrame, space: Space) -> tuple[dict[str, float], list[str]]:
    """(importances by axis, notes) from the ranked trials; the importances sum to 1.

    Early-stopped trials (scored at fewer tokens) and axes with a single tried value are left out
    with a note; with fewer than 2 usable trials the importances are empty and a note says why.
    """
    import optuna

    best, notes, usable = ranked(trials), [], []
    stopped = best["status"] == EARLY_STOPPED
    if stopped.any():
        notes.append(f"importance compares trials at equal tokens: {int(stopped.sum())} early-stopped trial(s), "
                     "scored after fewer tokens than the completed ones, are left out of it")
        best = best[~stopped]
    for axis in space.axes:
        if axis not in trials.columns:
            notes.append(f"{axis}: no column in trials.parquet; left out of the importance")
        elif best[axis].dropna().nunique() < 2:
            notes.append(f"{axis}: a single value among ranked trials; left out of the importance")
        else:
            usable.append(axis)
    rows = best.dropna(subset=usable)
    if len(rows) < 2 or not usable:
        notes.append(f"importance not computed: needs 2 or more ranked trials and an axis with 2 or "
                     f"more values (have {len(rows)} trials, {len(usable)} axes)")
        return {}, notes
    dists = {a: _distribution(space.axes[a], rows[a]) for a in usable}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize")
        for _, row in rows.iterrows():
            params = {a: _param_value(dists[a], row[a]) for a in usable}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=float(row["best_val_loss"])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {k: float(v) for k, v in importances.items()}, notes


def _distribution(dist: Dist, observed: pd.Series):
    """The Optuna distribution of an axis, widened to cover every observed value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not dist.discrete:
        low, high = min(dist.low, observed.min()), max(dist.high, observed.max())
        if isinstance(dist, IntRange):
            return IntDistribution(int(low), int(high))
        return FloatDistribution(float(low), float(high), log=isinstance(dist, LogUniform))
    choices = [plain(v) for v in dist.values]
    choices += [v for v in (plain(x) for x in observed.unique()) if v not in choices]
    return CategoricalDistribution(choices)


def _param_value(distribution, value: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return match(value, distribution.choices)
    return int(value) if isinstance(distribution, IntDistribution) else float(value)
