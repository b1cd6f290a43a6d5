"""The ladder's figure: each budget's trials, the near-optimal set, the fitted laws and the reference laws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hpsearch.scaling.fit import ScalingFit
from hpsearch.scaling.laws import (deepseek_batch_tokens, deepseek_lr, flops_per_token, non_embedding_params,
                                   step_law_batch_tokens, step_law_lr)
from hpsearch.scaling.table import budget_optima, clean_table, near_optimal
from trainables.model_config import GPTConfig


def plot_scaling(table: pd.DataFrame, fit: ScalingFit, path: str | Path, *, model: GPTConfig,
                 tol: float) -> Path:
    """Three panels as a PNG: loss vs LR per budget, eta_opt vs C, B_opt vs C (fit, CI, references).

    The reference laws are drawn for this ladder's model: DeepSeek through C, Step Law with the
    model's non-embedding N and D = C / M. Drawn on an Agg canvas without pyplot (no global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = clean_table(table)
    optima = budget_optima(t, tol=tol, model=model, method=fit.method)
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
    ax_loss.plot([], [], ":", color="grey", label="η_opt (minimum of the fitted quadratic)" if fit.method == "vertex"
                 else "η_opt (geometric mean of the ringed)")
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
        ax.plot(optima["compute"], optima[col], "o", color="k", label=f"measured ({fit.method})")
        ax.plot(grid, ref_ds, "--", color="C1", label="DeepSeek LLM law")
        ax.plot(grid, ref_step, "--", color="C2", label=f"Step Law (N = {n_params:,}, D = C/M)")
        ax.set(xscale="log", yscale="log", xlabel="compute C = M·D (FLOPs)", ylabel=ylabel,
               title=f"{sym} vs compute")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
