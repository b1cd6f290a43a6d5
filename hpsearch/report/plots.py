"""The report's plots, one PNG each, drawn on matplotlib's Agg canvas (no pyplot, no global state).

    plot_curves        train and val loss against tokens seen, for the best trials
    plot_lr_schedule   the best trial's learning rate per step (warmup, then cosine)
    plot_axis          best_val_loss against one hyperparameter, one point per trial
    plot_importance    hyperparameter importance as horizontal bars
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hpsearch.report.data import fmt, is_number, match
from hpsearch.results import ranked
from search_spaces import Dist, LogUniform
from trainables.budget import warmup_steps_of
from trainables.config import PretrainConfig
from trainables.files import plain
from trainables.status import COMPLETED, EARLY_STOPPED, FAILED

UNITS = {"peak_lr": "learning rate", "initial_lr": "learning rate", "min_lr": "learning rate",
         "batch_size": "sequences per step", "warmup_steps": "optimizer steps",
         "weight_decay": "AdamW coefficient", "dropout": "probability"}
"""The x-axis label's unit for the hyperparameters that have one."""


def _figure(title: str, xlabel: str, ylabel: str, size=(7.0, 4.4)):
    """A figure on its own Agg canvas: no pyplot, so no global backend or state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def plot_curves(curves: pd.DataFrame, best: pd.DataFrame, path: Path) -> Path:
    """Train (dashed) and val (solid) loss against tokens seen for the trials in ``best``."""
    from matplotlib.ticker import EngFormatter

    fig, ax = _figure(f"Loss curves of the {len(best)} best trials", "tokens seen",
                      "loss (cross-entropy, nats/token)")
    for i, (_, trial) in enumerate(best.iterrows()):
        c = curves[curves["trial_id"].astype(str) == str(trial["trial_id"])].sort_values("tokens_seen")
        color = f"C{i % 10}"
        ax.plot(c["tokens_seen"], c["val_loss"], "-o", color=color, ms=3,
                label=f"{trial['trial_id']} (best val {trial['best_val_loss']:.3f})")
        ax.plot(c["tokens_seen"], c["train_loss"], "--", color=color, alpha=0.7)
    ax.plot([], [], "k-", label="val loss")  # style keys: one legend entry per trial, not two
    ax.plot([], [], "k--", alpha=0.7, label="train loss")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_lr_schedule(trial: pd.Series, config: PretrainConfig, curves: pd.DataFrame | None,
                     path: Path) -> Path:
    """The LR at every step of ``trial`` (run with ``config``), recomputed, with the reported points."""
    from trainables.budget import decay_steps_of, lr_at

    t = config.train
    total = int(trial["steps"]) if "steps" in trial.index and pd.notna(trial["steps"]) else 0
    warmup = warmup_steps_of(t, total)
    kw = {"warmup_steps": warmup, "initial_lr": t.initial_lr, "peak_lr": t.peak_lr, "min_lr": t.min_lr,
          "schedule": t.schedule, "decay_steps": decay_steps_of(t, total), "decay_shape": t.decay_shape}
    fig, ax = _figure(f"Learning-rate schedule of the best trial ({trial['trial_id']})",
                      "optimizer step", "learning rate")
    if total > 0:
        steps = np.arange(total)  # optimizer steps 0 .. total-1
        what = {"cosine": f"cosine to {t.min_lr:g}", "constant": "constant",
                "wsd": f"stable, then {t.decay_shape} to {t.min_lr:g} over the last {t.decay_fraction:g}"}[t.schedule]
        ax.plot(steps, [lr_at(int(s), total_steps=total, **kw) for s in steps], "-", color="C0",
                label=f"schedule (warmup {warmup}, {what})")
    if curves is not None and {"step", "lr"} <= set(curves.columns):
        c = curves[curves["trial_id"].astype(str) == str(trial["trial_id"])]
        # a report after step k carries the lr that step k-1 (0-based) trained with
        ax.plot(c["step"] - 1, c["lr"], "o", color="C1", ms=4, label="reported at evaluations")
    ax.axvline(warmup, color="grey", ls=":", lw=1, label="end of warmup")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_axis(trials: pd.DataFrame, axis: str, dist: Dist, path: Path) -> Path:
    """best_val_loss against one hyperparameter; failed trials as red x along the top."""
    ok = ranked(trials).dropna(subset=[axis])
    failed = trials[trials["status"].isin(FAILED)].dropna(subset=[axis])
    listed = list(dist.values) if dist.discrete else []
    numeric = not dist.discrete or all(map(is_number, listed))
    if numeric:
        def xs(col: pd.Series):
            return col.astype(float).to_numpy()
    else:
        cats = [plain(v) for v in listed]
        cats += [v for v in (plain(x) for x in pd.concat([ok[axis], failed[axis]]).unique()) if v not in cats]

        def xs(col: pd.Series):
            return np.array([cats.index(match(v, cats)) for v in col], dtype=float)

    label = f"{axis} ({UNITS[axis]})" if axis in UNITS else axis
    fig, ax = _figure(f"best_val_loss against {axis} ({dist.kind})", label, "best val loss (nats/token)")
    for status, marker in ((COMPLETED, "o"), (EARLY_STOPPED, "s")):
        part = ok[ok["status"] == status]
        if len(part):
            ax.scatter(xs(part[axis]), part["best_val_loss"], marker=marker, s=22,
                       facecolors="C0" if status == COMPLETED else "none", edgecolors="C0",
                       label=f"{status} ({len(part)})")
    if len(ok):
        ax.scatter(xs(ok[axis].iloc[:1]), ok["best_val_loss"].iloc[:1], marker="*", s=180,
                   color="gold", edgecolors="black", zorder=3, label="best")
    losses = ok["best_val_loss"].astype(float)
    low, high = (losses.min(), losses.max()) if len(losses) else (0.0, 1.0)
    pad = (high - low) * 0.08 or 0.05 * max(abs(high), 1.0)
    if len(failed):
        ax.scatter(xs(failed[axis]), np.full(len(failed), high + pad), marker="x", color="red", s=40,
                   label=f"diverged/errored ({len(failed)}, no valid loss)")
    ax.set_ylim(low - pad, high + 2 * pad)
    if numeric:
        values = np.concatenate([xs(ok[axis]), xs(failed[axis])])
        if isinstance(dist, LogUniform) or (axis.endswith("lr") and len(values) and (values > 0).all()):
            ax.set_xscale("log")
        if not dist.discrete:
            for edge in (dist.low, dist.high):
                ax.axvline(float(edge), color="grey", ls=":", lw=1)
        elif len(listed) <= 12:
            ax.set_xticks([float(v) for v in listed], [fmt(v) for v in listed])
            ax.minorticks_off()
    else:
        ax.set_xticks(range(len(cats)), [str(v) for v in cats])
        ax.set_xlim(-0.5, len(cats) - 0.5)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_importance(importances: dict[str, float], path: Path) -> Path:
    """One bar per axis, largest at the top, each labelled with its share."""
    names = sorted(importances, key=importances.get)
    fig, ax = _figure("Hyperparameter importance (Optuna, default evaluator)",
                      "importance (normalized, sums to 1)", "", size=(7.0, 1.2 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="C0")
    for y, n in enumerate(names):
        ax.text(importances[n], y, f" {importances[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(importances.values()) * 1.15))
    fig.savefig(path)
    return path
