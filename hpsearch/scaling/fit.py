"""The power laws eta_opt(C) and B_opt(C), fitted in log space with bootstrap intervals, and the held-out check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.scaling.laws import ScalingError, _positive, compute, flops_per_token
from hpsearch.scaling.optimum import DEFAULT_METHOD, boot_optima, check_method
from hpsearch.scaling.table import _check_tol, _nearest, budget_optima, clean_table
from trainables.errors import first_line
from trainables.model_config import GPTConfig


CI_PERCENTILES = (2.5, 97.5)
"""Percentile bootstrap, 95%."""


@dataclass(frozen=True)
class PowerLaw:
    """y = coef * C^exponent, fitted by least squares on (log C, log y), with bootstrap samples."""

    coef: float
    exponent: float
    coef_ci: tuple[float, float]
    exponent_ci: tuple[float, float]
    boot: np.ndarray = field(repr=False, compare=False)
    """(n_boot, 2): log(coef) and exponent of each bootstrap refit; predictions' CIs come from it."""

    def __call__(self, c: Any) -> Any:
        return self.coef * np.power(np.asarray(c, dtype=float), self.exponent)

    def ci(self, c: Any) -> tuple[Any, Any]:
        """The 95% percentile band of the prediction at compute ``c`` (scalar or array)."""
        logc = np.log(np.asarray(c, dtype=float))
        samples = np.exp(self.boot[:, :1] + self.boot[:, 1:] * np.atleast_1d(logc)[None, :])
        lo, hi = np.percentile(samples, CI_PERCENTILES, axis=0)
        return (float(lo[0]), float(hi[0])) if np.ndim(logc) == 0 else (lo, hi)


@dataclass(frozen=True)
class ScalingFit:
    """eta_opt(C) and B_opt(C) (tokens) fitted on a ladder; ``notes`` lists what to be wary of."""

    lr: PowerLaw
    batch: PowerLaw
    """Batch size in tokens."""
    optima: pd.DataFrame = field(repr=False, compare=False)
    """The per-budget optima the laws were fitted to (see budget_optima)."""
    tol: float
    flops_per_token: float
    """M of the proxy model the ladder ran; target_run compares the target's M with it."""
    n_boot: int
    notes: tuple[str, ...]
    method: str = DEFAULT_METHOD
    """How each budget's optimum was read (hpsearch.scaling.optimum.METHODS)."""

    @property
    def largest_compute(self) -> float:
        return float(self.optima["compute"].max())

    def predict(self, c: float) -> dict[str, Any]:
        """{lr, lr_ci, batch_tokens, batch_ci} at compute ``c`` (FLOPs, M * D), CIs 95%."""
        if not _positive(c):
            raise ScalingError(f"compute must be a finite number > 0 (FLOPs), got {first_line(repr(c))}")
        return {"compute": float(c), "lr": float(self.lr(c)), "lr_ci": self.lr.ci(c),
                "batch_tokens": float(self.batch(c)), "batch_ci": self.batch.ci(c)}

    def summary(self) -> str:
        """A few lines for a log or report."""
        lines = [f"eta_opt = {self.lr.coef:.4g} * C^{self.lr.exponent:.4f} "
                 f"(exponent 95% CI [{self.lr.exponent_ci[0]:.4f}, {self.lr.exponent_ci[1]:.4f}])",
                 f"B_opt   = {self.batch.coef:.4g} * C^{self.batch.exponent:.4f} tokens "
                 f"(exponent 95% CI [{self.batch.exponent_ci[0]:.4f}, {self.batch.exponent_ci[1]:.4f}])",
                 f"{len(self.optima)} budgets, C {self.optima['compute'].min():.3g}-{self.largest_compute:.3g} "
                 f"FLOPs, tolerance {self.tol:.3%}, optima by {self.method}, {self.n_boot} bootstrap refits"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def fit_power_laws(table: pd.DataFrame, *, tol: float, model: GPTConfig, n_boot: int = 1000,
                   seed: int = 0, method: str = DEFAULT_METHOD) -> ScalingFit:
    """Fit log eta_opt and log B_opt against log C across budgets, with bootstrap CIs.

    The bootstrap resamples trials with replacement within each budget, recomputes each budget's
    optimum (by ``method``, see :mod:`.optimum`), and refits both lines; coefficient, exponent and
    prediction CIs are the 2.5 and 97.5 percentiles of the refits. ``model`` is the proxy the ladder
    trained (its M turns budgets into compute).
    """
    _check_tol(tol)
    check_method(method)
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise ScalingError(f"n_boot must be an integer >= 1, got {first_line(repr(n_boot))}")
    t = clean_table(table)
    budgets = sorted(t["budget_tokens"].unique())
    if len(budgets) < 2:
        raise ScalingError(f"fitting a power law needs finished trials at 2 or more budgets (3 or more "
                           f"recommended), got {len(budgets)} (budget_tokens={budgets[0]:g}); run more budgets")
    optima = budget_optima(t, tol=tol, model=model, method=method)
    x = np.log(optima["compute"].to_numpy())
    rng = np.random.default_rng(seed)
    boot_lr, boot_bt = np.empty((n_boot, len(budgets))), np.empty((n_boot, len(budgets)))
    for j, budget in enumerate(budgets):
        g = t[t["budget_tokens"] == budget]
        boot_lr[:, j], boot_bt[:, j] = boot_optima(np.log(g["peak_lr"].to_numpy()),
                                                   np.log(g["batch_tokens"].to_numpy()),
                                                   g["loss"].to_numpy(), tol, rng, n_boot, method)
    lr = _power_law(x, np.log(optima["lr_opt"].to_numpy()), boot_lr)
    batch = _power_law(x, np.log(optima["batch_tokens_opt"].to_numpy()), boot_bt)
    return ScalingFit(lr=lr, batch=batch, optima=optima, tol=float(tol),
                      flops_per_token=flops_per_token(model), n_boot=n_boot,
                      notes=tuple(_fit_notes(t, optima, model, method)), method=method)


def holdout(table: pd.DataFrame, *, tol: float, model: GPTConfig, predicted_loss: float | None = None,
            n_boot: int = 1000, seed: int = 0, method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """Fit on every budget but the largest, predict eta and B there, compare with its measured optimum.

    Ratios are predicted / measured and octaves their log2. ``loss_gap`` = (loss - best) / best,
    where loss is ``predicted_loss`` when the predicted config was run for real, else the loss of
    the nearest grid point (``nearest_loss``); a gap within ``tol`` is within seed noise.
    """
    t = clean_table(table)
    budgets = sorted(t["budget_tokens"].unique())
    if len(budgets) < 3:
        raise ScalingError(f"holdout needs 3 or more budgets (2 or more to fit, the largest to check), "
                           f"got {len(budgets)}; run more budgets")
    largest = budgets[-1]
    fit = fit_power_laws(t[t["budget_tokens"] < largest], tol=tol, model=model, n_boot=n_boot, seed=seed,
                         method=method)
    test = t[t["budget_tokens"] == largest]
    measured = budget_optima(test, tol=tol, model=model, method=method).iloc[0]
    pred = fit.predict(compute(model, largest))
    near_lr, near_bt, near_loss = _nearest(test, pred["lr"], pred["batch_tokens"])
    best = float(measured["best_loss"])
    if predicted_loss is not None and not _positive(predicted_loss):
        raise ScalingError(f"predicted_loss must be a finite number > 0, got {first_line(repr(predicted_loss))}")
    loss = float(predicted_loss) if predicted_loss is not None else near_loss
    gap = (loss - best) / best
    lr_ratio = pred["lr"] / float(measured["lr_opt"])
    bt_ratio = pred["batch_tokens"] / float(measured["batch_tokens_opt"])
    return {
        "budget_tokens": float(largest), "compute": pred["compute"], "fit": fit,
        "predicted_lr": pred["lr"], "lr_ci": pred["lr_ci"], "measured_lr": float(measured["lr_opt"]),
        "lr_ratio": lr_ratio, "lr_octaves": math.log2(lr_ratio),
        "lr_within_ci": bool(pred["lr_ci"][0] <= measured["lr_opt"] <= pred["lr_ci"][1]),
        "predicted_batch_tokens": pred["batch_tokens"], "batch_ci": pred["batch_ci"],
        "measured_batch_tokens": float(measured["batch_tokens_opt"]),
        "batch_ratio": bt_ratio, "batch_octaves": math.log2(bt_ratio),
        "batch_within_ci": bool(pred["batch_ci"][0] <= measured["batch_tokens_opt"] <= pred["batch_ci"][1]),
        "best_loss": best, "nearest_lr": near_lr, "nearest_batch_tokens": near_bt, "nearest_loss": near_loss,
        "predicted_loss": None if predicted_loss is None else float(predicted_loss),
        "loss_gap": gap,
        "loss_gap_source": "predicted run" if predicted_loss is not None else "nearest grid point",
        "loss_gap_within_tol": bool(gap <= tol),
    }


def _line(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """Least-squares (intercept, slope) of y on x; y may be (n_boot, K) for K budgets."""
    xc = x - x.mean()
    slope = (y - y.mean(axis=-1, keepdims=True)) @ xc / float(xc @ xc)
    return y.mean(axis=-1) - slope * x.mean(), slope


def _power_law(x: np.ndarray, y: np.ndarray, boot_y: np.ndarray) -> PowerLaw:
    a, b = _line(x, y)
    boot_a, boot_b = _line(x, boot_y)
    a_ci, b_ci = np.percentile(boot_a, CI_PERCENTILES), np.percentile(boot_b, CI_PERCENTILES)
    return PowerLaw(coef=math.exp(a), exponent=float(b), coef_ci=(math.exp(a_ci[0]), math.exp(a_ci[1])),
                    exponent_ci=(float(b_ci[0]), float(b_ci[1])), boot=np.column_stack([boot_a, boot_b]))


def _fit_notes(t: pd.DataFrame, optima: pd.DataFrame, model: GPTConfig, method: str) -> list[str]:
    """What a careful reader should know about this ladder before trusting the fit."""
    notes = []
    if len(optima) == 2:
        notes.append("only 2 budgets: the line passes through both optima, so nothing tests the power "
                     "law and the CI reflects seed noise only; run 3 or more budgets")
    if not t["batch_tokens"].nunique() > 1:
        notes.append("one batch size in the whole ladder: B_opt is that batch, not a measured optimum")
    for (budget, g), (_, o) in zip(t.groupby("budget_tokens", sort=True), optima.iterrows()):
        where = f"budget {budget:,.0f} tokens"
        for col, name in (("peak_lr", "peak_lr"), ("batch_size", "batch_size")):
            values = np.sort(g[col].unique())
            best = float(g.loc[g["loss"].idxmin(), col])
            if len(values) >= 3 and best in (values[0], values[-1]):
                side = "smallest" if best == values[0] else "largest"
                notes.append(f"{where}: the best {name} {best:g} is the {side} tried ({values[0]:g}-"
                             f"{values[-1]:g}); the optimum is not bracketed, widen the range")
        if method == "near-optimal" and o["n_trials"] > 1 and o["n_near"] == o["n_trials"]:
            notes.append(f"{where}: all {o['n_trials']} trials are within the tolerance of the best, so the "
                         "optimum is the grid's centre; widen the grid or check the tolerance")
    if not np.allclose(t["context_len"], model.context_len):
        notes.append(f"context_len in the table differs from the model's {model.context_len}: "
                     "compute uses the model's M; pass the model the ladder trained")
    return notes
