"""Budget transfer: fit how the optimal learning rate and batch size scale with compute.

A *ladder* is a set of small sweeps of one proxy model at several token budgets D. At each budget the
trials that lie within a noise tolerance of the best loss form the *near-optimal set*; the budget's
optimum is the geometric mean of their peak LR and of their batch size in tokens (DeepSeek LLM, sec.
3.1: a band of near-optimal points is less noisy than the single best point, whose position jumps
between grid points with seed noise). Power laws

    eta_opt = a * C^b        B_opt = a' * C^b'        (C = M * D FLOPs, B in tokens)

are then fitted by least squares in log space across budgets, with bootstrap confidence intervals,
and used to pick a larger run's peak LR and batch size. The DeepSeek LLM and Step Law fits are kept as
reference laws to compare against, not as answers.

What the fit assumes, and its limits (read before trusting an extrapolation):

- **Few budgets.** Two budgets determine a line exactly and test nothing; three is the least that
  can show a bend. Published ladders use 5-10 budgets over 2-3 decades of compute.
- **Tiny models.** The proxies here are CPU-sized; their optimum may be governed by effects that
  vanish at scale (the output head dominating the parameters, few optimizer steps, warmup being a
  large share of the run). Exponents fitted on them are evidence, not a law.
- **C alone.** A ladder that varies D at one model size measures eta_opt(D) at fixed N and calls it
  eta_opt(C). Transferring to another model size assumes, as DeepSeek does, that only C matters;
  Step Law finds the LR depends on N and D separately (and B on D only). Compare with both.
- **The near-optimal set flattens.** Larger budgets usually have flatter loss basins: the set grows,
  and its geometric mean drifts toward the centre of the grid. An optimum on the edge of the grid,
  or a set that holds every trial, is reported in the fit's notes: widen the grid there.
- **Grid resolution.** The optimum cannot be located better than about a fraction of the grid step;
  that discretization error is a bias the bootstrap does not see.
- **Batch-size fits are noisier than LR fits.** The loss is flatter in batch size than in LR, and
  ladders try fewer batch sizes; expect wider CIs and treat B_opt as a range.
- **The bootstrap** resamples trials within each budget, so its CI covers seed noise in the choice
  of the near-optimal set, not model misspecification or the choice of budgets.
- **Same recipe.** Everything but (LR, batch) must be the target's recipe: optimizer, schedule
  shape, warmup fraction, data mix, context length, parametrization. Under muP the LR already
  transfers across width, so a ladder there should vary D at the target's width-independent
  settings, and the reference laws (fitted under standard parametrization) do not apply.

Pure functions over pandas and numpy (no Ray, no Optuna); matplotlib is imported only by
:func:`plot_scaling`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.config import PretrainConfig
from trainables.errors import HPSearchError, SweepError, brief, first_line
from trainables.model_config import GPTConfig, count_params

TABLE_COLUMNS = ("budget_tokens", "peak_lr", "batch_size", "context_len", "loss")
"""One row per finished trial; ``loss`` is the validation loss at the end of the trial's budget."""
CONFIG_COLUMNS = ("budget_tokens", "peak_lr", "batch_size", "context_len")
"""Rows equal on these columns are repeats of one config (seed noise is measured across them)."""
CI_PERCENTILES = (2.5, 97.5)
"""Percentile bootstrap, 95%."""
MAX_EXTRAPOLATION = 100.0
"""Warn when the target's compute exceeds the largest measured budget's by more than this factor.

Published ladders do extrapolate 10-1000x (DeepSeek LLM fitted up to ~3e20 FLOPs and trained at
~1e24), but with 5-10 budgets of real-size models spanning 2-3 decades. A proxy ladder here spans
one or two decades, and a rule of thumb for any fit is not to reach further beyond the data than the
data spans: two decades is that limit. An exponent error of 0.05 also becomes a factor of
100^0.05 = 1.26 (a third of an octave, inside a typical LR basin) at 100x, but 1.6x at 10,000x.
"""


class ScalingError(HPSearchError, ValueError):
    """The scaling table, or a request on it, cannot be used; the one-line message says why."""


# -- compute ----------------------------------------------------------------------------------

def flops_per_token(model: GPTConfig) -> float:
    """M: non-embedding training FLOPs per token, attention included (DeepSeek LLM, eq. 2).

    M = 72 n_layers d^2 + 12 n_layers d context_len (forward + backward). Unlike 6N it counts the
    attention scores and leaves out the embeddings and output head, which is why DeepSeek found it
    predicts the optimum better across model shapes.
    """
    L, d, T = model.n_layers, model.emb_dim, model.context_len
    return float(72 * L * d * d + 12 * L * d * T)


def compute(model: GPTConfig, tokens: float) -> float:
    """C = M * D: the training FLOPs of ``tokens`` tokens on ``model`` (see flops_per_token)."""
    if not _positive(tokens):
        raise ScalingError(f"tokens must be a finite number > 0, got {first_line(repr(tokens))}")
    return flops_per_token(model) * float(tokens)


def non_embedding_params(model: GPTConfig) -> int:
    """N for Step Law: count_params less the token and position embeddings and the untied head.

    A tied head shares the token embedding's weights (``tie_embeddings``, when GPTConfig has it),
    and count_params then counts that matrix once, so only the embeddings are subtracted.
    """
    d, V = model.emb_dim, model.vocab_size
    tied = bool(getattr(model, "tie_embeddings", False))
    return count_params(model) - V * d - model.context_len * d - (0 if tied else V * d)


# -- reference laws ---------------------------------------------------------------------------

def deepseek_lr(c: Any) -> Any:
    """DeepSeek LLM's optimal peak LR, eta_opt = 0.3118 C^-0.1250 (C in FLOPs, M * D).

    Fitted on 1e17-3e20 FLOPs with a multi-step schedule and AdamW (beta2 0.95); at its 7B run
    (C = 8.5e22) it gives the 4.2e-4 the paper used.
    """
    return 0.3118 * np.power(np.asarray(c, dtype=float), -0.1250)


def deepseek_batch_tokens(c: Any) -> Any:
    """DeepSeek LLM's optimal batch size in tokens, B_opt = 0.2920 C^0.3271 (C in FLOPs, M * D)."""
    return 0.2920 * np.power(np.asarray(c, dtype=float), 0.3271)


def step_law_lr(n_params: Any, tokens: Any) -> Any:
    """Step Law's optimal peak LR, eta = 1.79 N^-0.713 D^0.307 (N non-embedding params, D tokens).

    Li et al. 2025 fitted it on ~3,700 runs that decay to a fixed final LR of 1e-5; it depends on
    N and D separately, where DeepSeek's law sees only their product through C.
    """
    n = np.asarray(n_params, dtype=float)
    return 1.79 * np.power(n, -0.713) * np.power(np.asarray(tokens, dtype=float), 0.307)


def step_law_batch_tokens(tokens: Any) -> Any:
    """Step Law's optimal batch size in tokens, B = 0.58 D^0.571 (independent of model size)."""
    return 0.58 * np.power(np.asarray(tokens, dtype=float), 0.571)


# -- the table --------------------------------------------------------------------------------

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


# -- noise ------------------------------------------------------------------------------------

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


# -- per-budget optima ------------------------------------------------------------------------

def near_optimal(table: pd.DataFrame, *, tol: float) -> pd.DataFrame:
    """The rows with loss <= best * (1 + tol), where best is the lowest loss at the row's budget."""
    _check_tol(tol)
    t = clean_table(table)
    best = t.groupby("budget_tokens")["loss"].transform("min")
    return t[t["loss"] <= best * (1.0 + tol)].reset_index(drop=True)


def budget_optima(table: pd.DataFrame, *, tol: float, model: GPTConfig) -> pd.DataFrame:
    """One row per budget: compute, lr_opt and batch_tokens_opt (geometric means over the
    near-optimal set), the best trial's loss, lr and batch tokens, n_trials and n_near."""
    _check_tol(tol)
    rows = []
    for budget, g in clean_table(table).groupby("budget_tokens", sort=True):
        lr, bt, keep = _optimum(np.log(g["peak_lr"].to_numpy()), np.log(g["batch_tokens"].to_numpy()),
                                g["loss"].to_numpy(), tol)
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


# -- the fit ----------------------------------------------------------------------------------

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
                 f"FLOPs, tolerance {self.tol:.3%}, {self.n_boot} bootstrap refits"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def fit_power_laws(table: pd.DataFrame, *, tol: float, model: GPTConfig, n_boot: int = 1000,
                   seed: int = 0) -> ScalingFit:
    """Fit log eta_opt and log B_opt against log C across budgets, with bootstrap CIs.

    The bootstrap resamples trials with replacement within each budget, recomputes each budget's
    near-optimal set and optimum, and refits both lines; coefficient, exponent and prediction CIs
    are the 2.5 and 97.5 percentiles of the refits. ``model`` is the proxy the ladder trained (its
    M turns budgets into compute).
    """
    _check_tol(tol)
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise ScalingError(f"n_boot must be an integer >= 1, got {first_line(repr(n_boot))}")
    t = clean_table(table)
    budgets = sorted(t["budget_tokens"].unique())
    if len(budgets) < 2:
        raise ScalingError(f"fitting a power law needs finished trials at 2 or more budgets (3 or more "
                           f"recommended), got {len(budgets)} (budget_tokens={budgets[0]:g}); run more budgets")
    optima = budget_optima(t, tol=tol, model=model)
    x = np.log(optima["compute"].to_numpy())
    rng = np.random.default_rng(seed)
    boot_lr, boot_bt = np.empty((n_boot, len(budgets))), np.empty((n_boot, len(budgets)))
    for j, budget in enumerate(budgets):
        g = t[t["budget_tokens"] == budget]
        boot_lr[:, j], boot_bt[:, j] = _boot_optima(np.log(g["peak_lr"].to_numpy()),
                                                    np.log(g["batch_tokens"].to_numpy()),
                                                    g["loss"].to_numpy(), tol, rng, n_boot)
    lr = _power_law(x, np.log(optima["lr_opt"].to_numpy()), boot_lr)
    batch = _power_law(x, np.log(optima["batch_tokens_opt"].to_numpy()), boot_bt)
    return ScalingFit(lr=lr, batch=batch, optima=optima, tol=float(tol),
                      flops_per_token=flops_per_token(model), n_boot=n_boot,
                      notes=tuple(_fit_notes(t, optima, model)))


# -- checking and using the fit ---------------------------------------------------------------

def holdout(table: pd.DataFrame, *, tol: float, model: GPTConfig, predicted_loss: float | None = None,
            n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
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
    fit = fit_power_laws(t[t["budget_tokens"] < largest], tol=tol, model=model, n_boot=n_boot, seed=seed)
    test = t[t["budget_tokens"] == largest]
    measured = budget_optima(test, tol=tol, model=model).iloc[0]
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


def target_run(fit: ScalingFit, *, target_model: GPTConfig, target_tokens: int,
               largest_budget_compute: float | None = None, warmup_fraction: float,
               law_model: GPTConfig | None = None) -> dict[str, Any]:
    """The target run's peak_lr, batch_size (sequences), total and warmup steps, from the fit.

    ``law_model`` (default ``target_model``) is the model whose compute for ``target_tokens`` the law is
    read at: the proxy's, when μP and a depth rule carry the LR across the shape change.

    Steps follow trainables.pretrain's plan for a max_tokens run: total = target_tokens //
    (batch_size * context_len). Warmup keeps the proxies' warmup as a *fraction* of the run, because
    the fit was measured with that schedule shape; a fixed step count would change it. ``warning``
    is None unless C_target / largest_budget_compute (default: the fit's largest budget) exceeds
    MAX_EXTRAPOLATION.
    """
    if not isinstance(target_tokens, (int, np.integer)) or isinstance(target_tokens, bool) or target_tokens < 1:
        raise ScalingError(f"target_tokens must be a positive integer, got {first_line(repr(target_tokens))}")
    if not (_finite(warmup_fraction) and 0.0 <= warmup_fraction < 1.0):
        raise ScalingError(f"warmup_fraction must be in [0, 1), got {first_line(repr(warmup_fraction))}")
    largest = fit.largest_compute if largest_budget_compute is None else largest_budget_compute
    if not _positive(largest):
        raise ScalingError(f"largest_budget_compute must be a finite number > 0 (FLOPs), "
                           f"got {first_line(repr(largest))}")
    c = compute(law_model or target_model, target_tokens)
    pred = fit.predict(c)
    ctx = target_model.context_len
    batch_size = max(1, round(pred["batch_tokens"] / ctx))
    total_steps = max(1, int(target_tokens) // (batch_size * ctx))
    factor = c / float(largest)
    warning = None
    if factor > MAX_EXTRAPOLATION:
        warning = (f"the target's compute {c:.3g} FLOPs is {factor:,.0f}x the largest measured budget's "
                   f"({float(largest):.3g}), beyond {MAX_EXTRAPOLATION:g}x: the prediction is an "
                   "extrapolation; add a larger budget to the ladder or treat the CI as optimistic")
    notes = []
    m = flops_per_token(law_model or target_model)
    if law_model is not None and law_model != target_model:
        notes.append("the law is read at the proxy's shape and the target's tokens: μP / the depth rule carry "
                     "the LR across the shape change")
    elif not math.isclose(m, fit.flops_per_token, rel_tol=1e-9):
        notes.append(f"the target's M ({m:.3g} FLOPs/token) differs from the proxy's ({fit.flops_per_token:.3g}): "
                     "the fit assumes the optimum depends on compute only (DeepSeek); Step Law "
                     "says the LR also depends on N, so compare with reference['step_law']")
    n = non_embedding_params(target_model)
    return {
        "compute": c, "flops_per_token": m, "peak_lr": pred["lr"], "lr_ci": pred["lr_ci"],
        "batch_tokens": pred["batch_tokens"], "batch_ci": pred["batch_ci"], "batch_size": batch_size,
        "batch_size_ci": tuple(max(1, round(b / ctx)) for b in pred["batch_ci"]),
        "tokens_per_step": batch_size * ctx, "total_steps": total_steps,
        "warmup_steps": round(warmup_fraction * total_steps), "warmup_fraction": float(warmup_fraction),
        "extrapolation_factor": factor, "warning": warning, "notes": notes,
        "reference": {
            "deepseek": {"lr": float(deepseek_lr(c)), "batch_tokens": float(deepseek_batch_tokens(c))},
            "step_law": {"lr": float(step_law_lr(n, target_tokens)),
                         "batch_tokens": float(step_law_batch_tokens(target_tokens)), "n_params": n},
        },
    }


# -- plot -------------------------------------------------------------------------------------

def plot_scaling(table: pd.DataFrame, fit: ScalingFit, path: str | Path, *, model: GPTConfig,
                 tol: float) -> Path:
    """Three panels as a PNG: loss vs LR per budget, eta_opt vs C, B_opt vs C (fit, CI, references).

    The reference laws are drawn for this ladder's model: DeepSeek through C, Step Law with the
    model's non-embedding N and D = C / M. Drawn on an Agg canvas without pyplot (no global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = clean_table(table)
    optima = budget_optima(t, tol=tol, model=model)
    near = near_optimal(t, tol=tol)
    fig = Figure(figsize=(16.0, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_lr, ax_bt = fig.subplots(1, 3)

    for i, (budget, g) in enumerate(t.groupby("budget_tokens", sort=True)):
        color = f"C{i % 10}"
        ax_loss.plot(g["peak_lr"], g["loss"], "o", color=color, alpha=0.25, ms=3)
        per_lr = g.groupby("peak_lr")["loss"].min()  # the best batch size at each LR
        ax_loss.plot(per_lr.index, per_lr.to_numpy(), "-", color=color, label=f"D = {budget:,.0f} tokens")
        n = near[near["budget_tokens"] == budget]
        ax_loss.plot(n["peak_lr"], n["loss"], "o", color=color, mec="k", ms=5)
        ax_loss.axvline(float(optima.loc[optima["budget_tokens"] == budget, "lr_opt"].iloc[0]),
                        color=color, ls=":", lw=1)
    ax_loss.plot([], [], "o", color="grey", mec="k", ms=5, label=f"within {tol:.2%} of the budget's best")
    ax_loss.plot([], [], ":", color="grey", label="η_opt (geometric mean of the ringed)")
    ax_loss.set(xscale="log", xlabel="peak learning rate", ylabel="validation loss (nats/token)",
                title="Loss vs peak LR per budget (line: best batch size at each LR)")
    ax_loss.legend(fontsize=7)

    c_lo, c_hi = optima["compute"].min(), optima["compute"].max()
    grid = np.geomspace(c_lo / 3, c_hi * 3, 100)
    m, n_params = flops_per_token(model), non_embedding_params(model)
    panels = ((ax_lr, fit.lr, "lr_opt", "optimal peak learning rate", deepseek_lr(grid),
               step_law_lr(n_params, grid / m), "η_opt"),
              (ax_bt, fit.batch, "batch_tokens_opt", "optimal batch size (tokens)", deepseek_batch_tokens(grid),
               step_law_batch_tokens(grid / m), "B_opt"))
    for ax, law, col, ylabel, ref_ds, ref_step, sym in panels:
        lo, hi = law.ci(grid)
        ax.fill_between(grid, lo, hi, color="C0", alpha=0.2, label="fit, 95% bootstrap CI")
        ax.plot(grid, law(grid), "-", color="C0",
                label=f"fit: {sym} = {law.coef:.3g}·C^{law.exponent:.3f} "
                      f"[{law.exponent_ci[0]:.3f}, {law.exponent_ci[1]:.3f}]")
        ax.plot(optima["compute"], optima[col], "o", color="k", label="measured (near-optimal geo. mean)")
        ax.plot(grid, ref_ds, "--", color="C1", label="DeepSeek LLM law")
        ax.plot(grid, ref_step, "--", color="C2", label=f"Step Law (N = {n_params:,}, D = C/M)")
        ax.set(xscale="log", yscale="log", xlabel="compute C = M·D (FLOPs)", ylabel=ylabel,
               title=f"{sym} vs compute")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# -- internals --------------------------------------------------------------------------------

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x: Any) -> bool:
    return _finite(x) and x > 0


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


def _optimum(log_lr: np.ndarray, log_bt: np.ndarray, loss: np.ndarray,
             tol: float) -> tuple[float, float, np.ndarray]:
    """(mean log lr, mean log batch tokens, mask) over the near-optimal set of one budget."""
    keep = loss <= loss.min() * (1.0 + tol)
    return float(log_lr[keep].mean()), float(log_bt[keep].mean()), keep


def _boot_optima(log_lr: np.ndarray, log_bt: np.ndarray, loss: np.ndarray, tol: float,
                 rng: np.random.Generator, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """_optimum on n_boot resamples (with replacement) of one budget's trials, vectorized."""
    idx = rng.integers(0, len(loss), size=(n_boot, len(loss)))  # (n_boot, n)
    resampled = loss[idx]
    keep = resampled <= resampled.min(axis=1, keepdims=True) * (1.0 + tol)
    count = keep.sum(axis=1)
    return (log_lr[idx] * keep).sum(axis=1) / count, (log_bt[idx] * keep).sum(axis=1) / count


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


def _fit_notes(t: pd.DataFrame, optima: pd.DataFrame, model: GPTConfig) -> list[str]:
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
        if o["n_trials"] > 1 and o["n_near"] == o["n_trials"]:
            notes.append(f"{where}: all {o['n_trials']} trials are within the tolerance of the best, so the "
                         "optimum is the grid's centre; widen the grid or check the tolerance")
    if not np.allclose(t["context_len"], model.context_len):
        notes.append(f"context_len in the table differs from the model's {model.context_len}: "
                     "compute uses the model's M; pass the model the ladder trained")
    return notes


# -- a ladder's saved fit -----------------------------------------------------------------------

SCALING_FILE = "scaling.json"
"""Written by `hpsearch scale` into the ladder's sweep directory, beside scaling.csv (the fit's table)."""


def load_fit(sweep_dir: Path) -> tuple[ScalingFit, dict, PretrainConfig]:
    """(fit, scaling.json record, proxy base config) of a finished ladder; refits scaling.csv (seeded, so
    the same fit and intervals as when the ladder finished). SweepError if the sweep is no ladder."""
    d = Path(sweep_dir)
    path = d / SCALING_FILE
    if not path.is_file():
        raise SweepError(f"{d.name} has no {SCALING_FILE}: --target-tokens needs a budget ladder; run "
                         f"`hpsearch scale --name {d.name} --budgets ... --lrs ... --batch-sizes ...` first")
    record = json.loads(path.read_text())
    meta = json.loads((d / "sweep.json").read_text())
    base = PretrainConfig.from_dict(meta["base_config"], source=f"{d}/sweep.json")
    table = pd.read_csv(d / "scaling.csv")
    fit = fit_power_laws(table, tol=record["tolerance"], model=base.model, n_boot=record.get("n_boot", 1000))
    return fit, record, base
