"""A ladder's table: one row per finished trial; seed noise, the near-optimal set and each budget's optimum."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.scaling.laws import ScalingError, _finite, _positive, compute
from hpsearch.scaling.optimum import DEFAULT_METHOD, check_method, optimum
from trainables.errors import brief, first_line
from trainables.model_config import GPTConfig


TABLE_COLUMNS = ("budget_tokens", "peak_lr", "batch_size", "context_len", "loss")
"""One row per finished trial; ``loss`` is the validation loss at the end of the trial's budget."""


CONFIG_COLUMNS = ("budget_tokens", "peak_lr", "batch_size", "context_len")
"""Rows equal on these columns are repeats of one config (seed noise is measured across them)."""


def clean_table(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that count: a finite loss and positive hyperparameters, plus a batch_tokens column.

    Rows with a non-finite loss (diverged, failed) are dropped; anything else wrong raises a
    ScalingError naming the column, so a typo fails here and not as a wrong fit.
    """
    if not isinstance(table, pd.DataFrame):
        raise ScalingError(f"the scaling table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ScalingError(f"the scaling table is missing column(s) {', '.join(missing)}; "
                           f"it needs {', '.join(TABLE_COLUMNS)} (one row per finished trial)")
    t = table.copy()
    for c in TABLE_COLUMNS:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    t = t[np.isfinite(t["loss"].to_numpy())]
    if t.empty:
        raise ScalingError(f"no finite loss among the {len(table)} row(s) of the scaling table: every "
                           "trial diverged or failed; narrow the peak_lr range and rerun the ladder")
    for c in TABLE_COLUMNS:
        v = t[c].to_numpy()
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            raise ScalingError(f"column {c} must be finite and > 0 in rows with a finite loss, got "
                               f"{first_line(repr(v[bad][0]))} in {int(bad.sum())} row(s)")
    t["batch_tokens"] = t["batch_size"] * t["context_len"]
    return t.reset_index(drop=True)


def seed_noise(losses_by_config: pd.DataFrame | Mapping[Any, Sequence[float]]) -> float:
    """The relative seed-to-seed std of the loss, pooled over every config with 2+ finite losses.

    Each config's losses are divided by their mean, and the squared deviations are pooled with
    n - 1 degrees of freedom per config, so a config run 5 times weighs more than one run twice.
    Accepts the trials table (repeats = rows equal on CONFIG_COLUMNS; with a ``seed`` column,
    duplicate seeds count once) or a mapping {config: [loss, ...]}.
    """
    groups = _loss_groups(losses_by_config)
    sq, dof = 0.0, 0
    for losses in groups:
        x = np.asarray(losses, dtype=float)
        x = x[np.isfinite(x)]
        if len(x) >= 2 and x.mean() > 0:
            sq += float(((x / x.mean() - 1.0) ** 2).sum())
            dof += len(x) - 1
    if dof == 0:
        raise ScalingError("seed_noise: no config has 2 or more finite losses; run repeats (the same "
                           "budget_tokens, peak_lr, batch_size, context_len with other seeds) and pass them")
    return math.sqrt(sq / dof)


def tolerance_from_noise(rel_std: float, *, k: float = 2.0) -> float:
    """The relative loss tolerance of the near-optimal set: k * sqrt(2) * rel_std.

    Two single-seed runs of equally good configs differ by noise of std sqrt(2) * rel_std, so a
    config tied with the best lands above it by up to that much. k = 2 keeps ~98% of truly tied
    configs (one-sided normal) while a config 3 stds worse is usually left out; a larger k widens
    the set and pulls the optimum toward the grid centre, a smaller one makes it jump between
    grid points with the seed.
    """
    if not (_finite(rel_std) and rel_std >= 0):
        raise ScalingError(f"rel_std must be a finite number >= 0 (from seed_noise), "
                           f"got {first_line(repr(rel_std))}")
    if not _positive(k):
        raise ScalingError(f"k must be a finite number > 0, got {first_line(repr(k))}")
    return float(k) * math.sqrt(2.0) * float(rel_std)


def near_optimal(table: pd.DataFrame, *, tol: float) -> pd.DataFrame:
    """The rows with loss <= best * (1 + tol), where best is the lowest loss at the row's budget."""
    _check_tol(tol)
    t = clean_table(table)
    best = t.groupby("budget_tokens")["loss"].transform("min")
    return t[t["loss"] <= best * (1.0 + tol)].reset_index(drop=True)


def budget_optima(table: pd.DataFrame, *, tol: float, model: GPTConfig,
                  method: str = DEFAULT_METHOD) -> pd.DataFrame:
    """One row per budget: compute, lr_opt and batch_tokens_opt (by ``method``, see
    :mod:`.optimum`: the near-optimal set's geometric means, or the fitted quadratic's minimum), the best
    trial's loss, lr and batch tokens, n_trials and n_near (the near-optimal set's size)."""
    _check_tol(tol)
    check_method(method)
    rows = []
    for budget, g in clean_table(table).groupby("budget_tokens", sort=True):
        lr, bt, keep = optimum(np.log(g["peak_lr"].to_numpy()), np.log(g["batch_tokens"].to_numpy()),
                               g["loss"].to_numpy(), tol, method)
        best = g.loc[g["loss"].idxmin()]
        rows.append({"budget_tokens": float(budget), "compute": compute(model, budget),
                     "lr_opt": math.exp(lr), "batch_tokens_opt": math.exp(bt),
                     "best_loss": float(best["loss"]), "best_lr": float(best["peak_lr"]),
                     "best_batch_tokens": float(best["batch_tokens"]),
                     "n_trials": len(g), "n_near": int(keep.sum())})
    return pd.DataFrame(rows)


def nearest_loss(table_at_budget: pd.DataFrame, lr: float, batch_tokens: float) -> float:
    """The loss of the grid point nearest (lr, batch_tokens) in log space, as a stand-in for the
    loss of a config that was not run. Repeats (or equidistant points) at the nearest distance are
    averaged, so one lucky seed does not decide it."""
    t = clean_table(table_at_budget)
    if t["budget_tokens"].nunique() != 1:
        raise ScalingError(f"nearest_loss needs the rows of one budget, got {t['budget_tokens'].nunique()} "
                           "budgets; pass table[table.budget_tokens == D]")
    return _nearest(t, lr, batch_tokens)[2]


def _check_tol(tol: Any) -> None:
    if not (_finite(tol) and 0 <= tol < 1):
        raise ScalingError(f"tol must be a relative loss tolerance in [0, 1) (from tolerance_from_noise), "
                           f"got {first_line(repr(tol))}")


def _loss_groups(data: pd.DataFrame | Mapping[Any, Sequence[float]]) -> list[Sequence[float]]:
    if isinstance(data, Mapping):
        return [np.atleast_1d(np.asarray(v, dtype=float)) for v in data.values()]
    if not isinstance(data, pd.DataFrame):
        raise ScalingError(f"seed_noise takes a DataFrame or a mapping {{config: losses}}, "
                           f"got {type(data).__name__}")
    if "loss" not in data.columns:
        raise ScalingError("seed_noise: the table has no loss column; pass the trials table with a loss column")
    keys = [c for c in CONFIG_COLUMNS if c in data.columns]
    if not keys:
        raise ScalingError(f"seed_noise: the table has none of the config columns {', '.join(CONFIG_COLUMNS)}")
    d = data
    if "seed" in d.columns:
        d = d.drop_duplicates([*keys, "seed"])
    loss = pd.to_numeric(d["loss"], errors="coerce")
    return [g.to_numpy(dtype=float) for _, g in loss.groupby([d[k] for k in keys], dropna=False)]


def _nearest(rows: pd.DataFrame, lr: float, batch_tokens: float) -> tuple[float, float, float]:
    """(lr, batch tokens, mean loss) of the rows nearest (lr, batch_tokens) in log2 space."""
    if not (_positive(lr) and _positive(batch_tokens)):
        raise ScalingError(f"lr and batch_tokens must be finite numbers > 0, got {brief(lr)} and {brief(batch_tokens)}")
    dist = np.hypot(np.log2(rows["peak_lr"].to_numpy() / lr),
                    np.log2(rows["batch_tokens"].to_numpy() / batch_tokens))  # octaves
    at = rows[dist <= dist.min() + 1e-9]
    return _geomean(at["peak_lr"]), _geomean(at["batch_tokens"]), float(at["loss"].mean())


def _geomean(values: pd.Series) -> float:
    """Geometric mean; a single repeated value comes back exactly (no exp-log round-off)."""
    return float(values.iloc[0]) if values.nunique() == 1 else float(np.exp(np.log(values).mean()))
