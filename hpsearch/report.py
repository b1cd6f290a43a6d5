"""The sweep report: what `hpsearch report NAME [--reruns N]` writes.

It reads a finished sweep directory (trials.parquet, curves.parquet, sweep.json) and writes
``report/`` beside them: PNG plots and an ``index.html`` that shows them under a short summary.

    curves.png         train and val loss against tokens seen, for the best k trials
    lr_schedule.png    the best trial's learning rate per step (warmup, then cosine)
    axis_<name>.png    best_val_loss against each hyperparameter, one point per trial
    importance.png     hyperparameter importance (Optuna's default evaluator)

The checks follow the tuning playbook: warn when the best value sits on the edge of its range,
count infeasible trials, and (with ``reruns``) rerun the best two configs over seeds before trusting
the ranking. `run_checks` and `seed_noise_check` are pure, so tests drive them with hand-made tables.

A trial is *ranked* when it completed or was early-stopped with a finite best_val_loss; the best
trial is the ranked one with the lowest best_val_loss.
"""

from __future__ import annotations

import html
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpsearch import results
from trainables.errors import SweepError

RANKED_STATUSES = ("completed", "early-stopped")
FAILED_STATUSES = ("diverged", "errored")
STATUSES = (*RANKED_STATUSES, *FAILED_STATUSES, "skipped-invalid")
EDGE_FRACTION = 0.05
"""A continuous axis' best value within 5% of either end of its range (log space for loguniform)."""
FAILURE_THRESHOLD = 0.2
"""More than 20% diverged or errored trials: the space is too wide or the code has a bug."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    """Which check: "edge", "failures" or "reruns"."""
    fired: bool
    """True when the check found something to act on."""
    message: str
    """One line for the summary, whether or not the check fired."""
    axis: str | None = None
    """The hyperparameter an "edge" check is about (one Check per numeric axis)."""


# -- reading the sweep ------------------------------------------------------------------------
def space_axes(meta: dict) -> dict[str, tuple[str, list]]:
    """{axis: (dist, args)} from sweep.json's space, e.g. {"peak_lr": ("loguniform", [1e-4, 1e-2])}."""
    out = {}
    for axis, spec in (meta.get("space", {}).get("axes") or {}).items():
        if isinstance(spec, dict) and len(spec) == 1:
            dist, args = next(iter(spec.items()))
            out[axis] = (str(dist), list(args) if isinstance(args, (list, tuple)) else [args])
    return out


def ranked_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed and early-stopped trials with a finite best_val_loss, best first (see results.ranked)."""
    return results.ranked(trials)


# -- checks -----------------------------------------------------------------------------------
def run_checks(trials: pd.DataFrame, meta: dict) -> list[Check]:
    """One "edge" Check per numeric axis (when a best trial exists), then the "failures" Check."""
    ranked = ranked_trials(trials)
    checks = []
    if len(ranked):
        best = ranked.iloc[0]
        for axis, (dist, args) in space_axes(meta).items():
            if axis in best.index:
                check = edge_check(axis, dist, args, best[axis])
                if check is not None:
                    checks.append(check)
    checks.append(failures_check(trials))
    return checks


def edge_check(axis: str, dist: str, args: Sequence, value: Any) -> Check | None:
    """Whether the best ``value`` lies on the edge of the axis' range; None for non-numeric axes."""
    if not _is_number(value) or not math.isfinite(float(value)):
        return None
    v = float(value)
    if dist in ("grid", "choice"):
        if not all(map(_is_number, args)) or len(values := sorted({float(x) for x in args})) < 3:
            return None
        low, high = values[0], values[-1]
        where = "lower" if v <= low else "upper" if v >= high else None
        shown = "[" + ", ".join(_fmt(x) for x in args) + "]"
    elif dist in ("uniform", "loguniform", "int") and len(args) >= 2 and all(map(_is_number, args[:2])):
        low, high = float(args[0]), float(args[1])
        log = dist == "loguniform" and low > 0 and v > 0
        lo, hi, x = (math.log(low), math.log(high), math.log(v)) if log else (low, high, v)
        if hi <= lo:
            return None
        frac = (x - lo) / (hi - lo)
        where = "lower" if frac <= EDGE_FRACTION else "upper" if frac >= 1 - EDGE_FRACTION else None
        shown = f"[{_fmt(args[0])}, {_fmt(args[1])}]"
    else:
        return None
    if where is None:
        return Check("edge", False, f"{axis}: best value {_fmt(value)} lies inside {shown}", axis)
    way = "downward" if where == "lower" else "upward"
    return Check("edge", True, f"{axis}: best value {_fmt(value)} is at the {where} edge of {shown} "
                               f"— widen the range {way}", axis)


def failures_check(trials: pd.DataFrame) -> Check:
    """The fraction of all trials that diverged or errored; fires above FAILURE_THRESHOLD."""
    n = len(trials)
    failed = int(trials["status"].isin(FAILED_STATUSES).sum())
    frac = failed / n if n else 0.0
    fired = frac > FAILURE_THRESHOLD
    msg = f"{failed} of {n} trials ({frac:.0%}) diverged or errored"
    if fired:
        msg += (f", above {FAILURE_THRESHOLD:.0%}: a high fraction means a bad space or a bug "
                "(read the error column; narrow the learning-rate range)")
    return Check("failures", fired, msg)


def lead_exceeds_noise(winner: Sequence[float], runner_up: Sequence[float]) -> bool:
    """The rule: mean(runner_up) - mean(winner) > std(winner) + std(runner_up) (sample stds).

    Losses: lower is better. Non-finite values are dropped; fewer than 2 finite losses on either
    side cannot measure seed noise, so the lead is not established (False).
    """
    w, r = _finite(winner), _finite(runner_up)
    if len(w) < 2 or len(r) < 2:
        return False
    return float(r.mean() - w.mean()) > float(w.std(ddof=1) + r.std(ddof=1))


def seed_noise_check(winner: Sequence[float], runner_up: Sequence[float]) -> Check:
    """The "reruns" Check: fires when the winner's lead is not larger than the seed noise."""
    w, r = _finite(winner), _finite(runner_up)
    if len(w) < 2 or (len(runner_up) and len(r) < 2):
        lost = len(winner) - len(w) + len(runner_up) - len(r)
        why = (f"{lost} rerun(s) gave no finite loss (see the error column of reruns.csv)" if lost
               else "pass --reruns 2 or more")
        return Check("reruns", True, f"reruns: winner {_mean_std(w)}; seed noise needs 2 or more "
                                     f"finite losses per config: {why}")
    if not len(runner_up):
        return Check("reruns", False, f"reruns: winner {_mean_std(w)}; no runner-up to compare")
    lead = float(r.mean() - w.mean())
    noise = float(w.std(ddof=1) + r.std(ddof=1))
    head = (f"reruns: winner {_mean_std(w)} vs runner-up {_mean_std(r)}; lead {lead:.4f} "
            f"vs seed noise {noise:.4f} (rule: lead > sum of the two stds)")
    if lead_exceeds_noise(w, r):
        return Check("reruns", False, head + " — the winner's lead is real")
    if -lead > noise:
        return Check("reruns", True, head + " — the runner-up did better on reruns: prefer it")
    return Check("reruns", True, head + " — within seed noise: treat the two configs as tied")


# -- reruns (real training) -------------------------------------------------------------------
def rerun_top(trials: pd.DataFrame, meta: dict, *, reruns: int, log: Log | None = None) -> pd.DataFrame:
    """Retrain the best and runner-up configs with seeds base_seed+1..+reruns.

    Returns one row per run: role, trial_id, seed, best_val_loss, error ("" when none).
    """
    from trainables.config import PretrainConfig
    from trainables.pretrain import pretrain

    axes = space_axes(meta)
    base = PretrainConfig.from_dict(meta.get("base_config") or {}, source="sweep.json base_config")
    rows = []
    for role, (_, trial) in zip(("winner", "runner-up"), ranked_trials(trials).head(2).iterrows()):
        hparams = {a: _native(axes[a], trial[a]) for a in axes if a in trial.index and pd.notna(trial[a])}
        base_seed = base.with_hparams(hparams).train.seed
        for i in range(1, reruns + 1):
            seed = base_seed + i
            _say(log, f"report: rerun {role} {trial['trial_id']} with seed {seed} ({i}/{reruns})")
            loss, error = math.nan, ""
            try:
                cfg = base.with_hparams(hparams | {"seed": seed})
                loss = float(pretrain(cfg, log=None).best_val_loss)
            except Exception as exc:  # one failed seed must not lose the others
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                _say(log, f"report: rerun failed: {error}")
            rows.append({"role": role, "trial_id": str(trial["trial_id"]), "seed": seed,
                         "best_val_loss": loss, "error": error})
    return pd.DataFrame(rows, columns=["role", "trial_id", "seed", "best_val_loss", "error"])


# -- importance -------------------------------------------------------------------------------
def hparam_importance(trials: pd.DataFrame, meta: dict) -> tuple[dict[str, float], list[str]]:
    """(importances by axis, notes) from an in-memory Optuna study built from the ranked trials.

    Axes with a single tried value are left out with a note; with fewer than 2 usable trials the
    importances are empty and a note says why.
    """
    import optuna

    axes, ranked, notes, usable = space_axes(meta), ranked_trials(trials), [], []
    for axis in axes:
        if axis not in trials.columns:
            notes.append(f"{axis}: no column in trials.parquet; left out of the importance")
        elif ranked[axis].dropna().nunique() < 2:
            notes.append(f"{axis}: a single value among ranked trials; left out of the importance")
        else:
            usable.append(axis)
    rows = ranked.dropna(subset=usable)
    if len(rows) < 2 or not usable:
        notes.append(f"importance not computed: needs 2 or more ranked trials and an axis with 2 or "
                     f"more values (have {len(rows)} trials, {len(usable)} axes)")
        return {}, notes
    dists = {a: _distribution(*axes[a], rows[a]) for a in usable}
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


def _distribution(dist: str, args: list, observed: pd.Series):
    """The Optuna distribution of an axis, widened to cover every observed value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dist in ("uniform", "loguniform", "int") and len(args) >= 2:
        low, high = min(args[0], observed.min()), max(args[1], observed.max())
        if dist == "int":
            return IntDistribution(int(low), int(high))
        return FloatDistribution(float(low), float(high), log=dist == "loguniform")
    choices = [_plain(v) for v in args] if dist in ("grid", "choice") else []
    choices += [v for v in (_plain(x) for x in observed.unique()) if v not in choices]
    return CategoricalDistribution(choices)


def _param_value(distribution, value: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return _match(value, distribution.choices)
    return int(value) if isinstance(distribution, IntDistribution) else float(value)


# -- plots ------------------------------------------------------------------------------------
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


def plot_lr_schedule(trial: pd.Series, meta: dict, curves: pd.DataFrame | None, path: Path) -> Path:
    """The best trial's LR at every step, recomputed from its hyperparameters, with reported points."""
    from trainables.pretrain import lr_at

    train = (meta.get("base_config") or {}).get("train") or {}

    def value(name: str, default: float) -> float:
        if name in trial.index and _is_number(trial[name]) and math.isfinite(float(trial[name])):
            return float(trial[name])
        return float(train.get(name, default))

    # Defaults mirror trainables.config.TrainArgs, for a base_config that leaves a key out.
    kw = {"warmup_steps": int(value("warmup_steps", 10)), "initial_lr": value("initial_lr", 1e-5),
          "peak_lr": value("peak_lr", 5e-4), "min_lr": value("min_lr", 1e-5)}
    total = int(trial["steps"]) if "steps" in trial.index and pd.notna(trial["steps"]) else 0
    fig, ax = _figure(f"Learning-rate schedule of the best trial ({trial['trial_id']})",
                      "optimizer step", "learning rate")
    if total > 0:
        steps = np.arange(total)  # optimizer steps 0 .. total-1
        ax.plot(steps, [lr_at(int(s), total_steps=total, **kw) for s in steps], "-", color="C0",
                label=f"schedule (warmup {kw['warmup_steps']}, cosine to {kw['min_lr']:g})")
    if curves is not None and {"step", "lr"} <= set(curves.columns):
        c = curves[curves["trial_id"].astype(str) == str(trial["trial_id"])]
        # a report after step k carries the lr that step k-1 (0-based) trained with
        ax.plot(c["step"] - 1, c["lr"], "o", color="C1", ms=4, label="reported at evaluations")
    ax.axvline(kw["warmup_steps"], color="grey", ls=":", lw=1, label="end of warmup")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_axis(trials: pd.DataFrame, axis: str, dist: str, args: list, path: Path) -> Path:
    """best_val_loss against one hyperparameter; failed trials as red x along the top."""
    ranked = ranked_trials(trials).dropna(subset=[axis])
    failed = trials[trials["status"].isin(FAILED_STATUSES)].dropna(subset=[axis])
    listed = list(args) if dist in ("grid", "choice") else []
    numeric = dist in ("uniform", "loguniform", "int") or (listed and all(map(_is_number, listed)))
    if numeric:
        def xs(col: pd.Series):
            return col.astype(float).to_numpy()
    else:
        cats = [_plain(v) for v in listed]
        cats += [v for v in (_plain(x) for x in pd.concat([ranked[axis], failed[axis]]).unique())
                 if v not in cats]

        def xs(col: pd.Series):
            return np.array([cats.index(_match(v, cats)) for v in col], dtype=float)

    fig, ax = _figure(f"best_val_loss against {axis} ({dist})", _axis_label(axis),
                      "best val loss (nats/token)")
    for status, marker in (("completed", "o"), ("early-stopped", "s")):
        part = ranked[ranked["status"] == status]
        if len(part):
            ax.scatter(xs(part[axis]), part["best_val_loss"], marker=marker, s=22,
                       facecolors="C0" if status == "completed" else "none", edgecolors="C0",
                       label=f"{status} ({len(part)})")
    if len(ranked):
        ax.scatter(xs(ranked[axis].iloc[:1]), ranked["best_val_loss"].iloc[:1], marker="*", s=180,
                   color="gold", edgecolors="black", zorder=3, label="best")
    losses = ranked["best_val_loss"].astype(float)
    low, high = (losses.min(), losses.max()) if len(losses) else (0.0, 1.0)
    pad = (high - low) * 0.08 or 0.05 * max(abs(high), 1.0)
    if len(failed):
        ax.scatter(xs(failed[axis]), np.full(len(failed), high + pad), marker="x", color="red", s=40,
                   label=f"diverged/errored ({len(failed)}, no valid loss)")
    ax.set_ylim(low - pad, high + 2 * pad)
    if numeric:
        values = np.concatenate([xs(ranked[axis]), xs(failed[axis])])
        if dist == "loguniform" or (axis.endswith("lr") and len(values) and (values > 0).all()):
            ax.set_xscale("log")
        if dist in ("uniform", "loguniform", "int") and len(args) >= 2:
            for edge in args[:2]:
                ax.axvline(float(edge), color="grey", ls=":", lw=1)
        elif 0 < len(listed) <= 12:
            ax.set_xticks([float(v) for v in listed], [_fmt(v) for v in listed])
            ax.minorticks_off()
    else:
        ax.set_xticks(range(len(cats)), [str(v) for v in cats])
        ax.set_xlim(-0.5, len(cats) - 0.5)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_importance(importances: dict[str, float], path: Path) -> Path:
    names = sorted(importances, key=importances.get)
    fig, ax = _figure("Hyperparameter importance (Optuna, default evaluator)",
                      "importance (normalized, sums to 1)", "", size=(7.0, 1.2 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="C0")
    for y, n in enumerate(names):
        ax.text(importances[n], y, f" {importances[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(importances.values()) * 1.15))
    fig.savefig(path)
    return path


# -- the report -------------------------------------------------------------------------------
def summary_line(trials: pd.DataFrame) -> str:
    """e.g. "12 trials: 9 completed, 3 diverged; 1.2M tokens spent; best val loss 3.4512 (trial t07)"."""
    counts = trials["status"].value_counts()
    order = [s for s in STATUSES if s in counts] + [s for s in counts.index if s not in STATUSES]
    by_status = ", ".join(f"{int(counts[s])} {s}" for s in order)
    tokens = pd.to_numeric(trials.get("tokens_seen", pd.Series(dtype=float)), errors="coerce").sum()
    line = f"{len(trials)} trials: {by_status}; {_human(tokens)} tokens spent"
    ranked = ranked_trials(trials)
    if len(ranked):
        best = ranked.iloc[0]
        line += f"; best val loss {best['best_val_loss']:.4f} (trial {best['trial_id']})"
    return line


def write_report(sweep_dir: Path, *, reruns: int = 0, top_k: int = 5, log: Log | None = print) -> Path:
    """Write ``sweep_dir/report/`` (PNG plots + index.html) and return the index.html path."""
    sweep_dir = Path(sweep_dir)
    trials, curves, meta = results.load(sweep_dir)
    curves = curves if len(curves) else None
    ranked = ranked_trials(trials)
    if not len(ranked):
        raise SweepError(f"{sweep_dir / 'trials.parquet'}: no completed or early-stopped trial has a "
                         "finite best_val_loss; read the trials' error column, fix the space or the "
                         "code, and rerun the sweep")
    if reruns < 0:
        raise SweepError(f"--reruns must be >= 0, got {reruns}")
    out = sweep_dir / "report"
    out.mkdir(exist_ok=True)
    _say(log, f"report: {summary_line(trials)}")
    checks, notes = run_checks(trials, meta), []
    plots: list[tuple[str, str]] = []  # (file name, caption)

    best = ranked.head(max(1, top_k))
    if curves is not None and len(curves):
        plot_curves(curves, best, out / "curves.png")
        plots.append(("curves.png", f"Train (dashed) and val (solid) loss of the {len(best)} best trials."))
    else:
        notes.append("no curves.parquet: loss curves not drawn")
    plot_lr_schedule(ranked.iloc[0], meta, curves, out / "lr_schedule.png")
    plots.append(("lr_schedule.png", "Learning rate of the best trial: recomputed per step, with the "
                                     "values reported at evaluations."))
    for axis, (dist, args) in space_axes(meta).items():
        if axis in trials.columns:
            name = f"axis_{re.sub(r'[^A-Za-z0-9_.-]', '_', axis)}.png"
            plot_axis(trials, axis, dist, args, out / name)
            plots.append((name, f"{axis}: {dist} {args}. Red x: diverged or errored trials."))
        else:
            notes.append(f"{axis}: in the space but not in trials.parquet; no plot")
    importances, importance_notes = hparam_importance(trials, meta)
    notes += importance_notes
    if importances:
        plot_importance(importances, out / "importance.png")
        plots.append(("importance.png", "Share of the variation in best_val_loss each axis explains "
                                            "(rough with few trials)."))

    if reruns > 0:
        runs = rerun_top(trials, meta, reruns=reruns, log=log)
        runs.to_csv(out / "reruns.csv", index=False)
        losses = {role: runs.loc[runs["role"] == role, "best_val_loss"].tolist()
                  for role in ("winner", "runner-up")}
        checks.append(seed_noise_check(losses["winner"], losses["runner-up"]))

    index = out / "index.html"
    index.write_text(_html(meta, trials, best, checks, notes, plots), encoding="utf-8")
    for c in checks:
        if c.fired:
            _say(log, f"report: warning: {c.message}")
    _say(log, f"report: wrote {index}")
    return index


def _html(meta, trials, best, checks, notes, plots) -> str:
    e = html.escape
    name, mode = str(meta.get("name", "sweep")), str(meta.get("mode", ""))
    axes = [a for a in space_axes(meta) if a in best.columns]
    head = ["trial", "status", "best val loss", *axes]
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in
                         (t["trial_id"], t["status"], round(float(t["best_val_loss"]), 4),
                          *(t[a] for a in axes))) + "</tr>"
        for _, t in best.iterrows())
    failed = trials[trials["status"].isin(FAILED_STATUSES)].head(10)
    errors = "".join(f"<li><code>{e(str(t['trial_id']))}</code> {e(str(t['status']))}: "
                     f"{e(_first_line(t.get('error')))}</li>" for _, t in failed.iterrows())
    check_items = "".join(f"<li class=\"{'warn' if c.fired else 'ok'}\">{'⚠' if c.fired else '✓'} "
                          f"{e(c.message)}</li>" for c in checks)
    figures = "".join(f"<figure><img src=\"{e(f)}\" alt=\"{e(f)}\"><figcaption>{e(cap)}</figcaption>"
                      "</figure>" for f, cap in plots)
    parts = [
        "<!doctype html><html><head><meta charset=\"utf-8\">",
        f"<title>{e(name)} — hpsearch report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "li.warn{color:#a40}li.ok{color:#276}table{border-collapse:collapse;font-size:90%}",
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}",
        "figure{display:inline-block;margin:.5em;vertical-align:top}img{max-width:520px}",
        "figcaption{font-size:85%;max-width:520px}</style></head><body>",
        f"<h1>Sweep {e(name)} <small>({e(mode)})</small></h1>",
        f"<p>{e(summary_line(trials))}</p>",
        f"<h2>Checks</h2><ul>{check_items}</ul>",
        f"<h2>Best trials</h2><table><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr>{rows}</table>",
    ]
    if errors:
        parts.append(f"<h2>Failed trials</h2><ul>{errors}</ul>")
    parts.append(f"<h2>Plots</h2>{figures}")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# -- helpers ----------------------------------------------------------------------------------
def _first_line(text: Any) -> str:
    lines = str(text).strip().splitlines() if isinstance(text, str) else []
    return lines[0] if lines else "(no message)"


def _say(log: Log | None, msg: str) -> None:
    if log is not None:
        log(msg)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _match(value: Any, choices: Sequence) -> Any:
    """The listed choice equal to ``value`` (so 16.0 from a float column maps back to 16)."""
    value = _plain(value)
    for c in choices:
        if c == value and (type(c) is bool) == (type(value) is bool):
            return c
    return value


def _native(axis: tuple[str, list], value: Any) -> Any:
    """A trials-table value as the space declared it: int for int axes, the listed choice for grids."""
    dist, args = axis
    if dist == "int":
        return int(value)
    return _match(value, args) if dist in ("grid", "choice") else _plain(value)


def _finite(xs: Sequence[float]) -> np.ndarray:
    a = np.asarray(list(xs), dtype=float)
    return a[np.isfinite(a)]


def _mean_std(a: np.ndarray) -> str:
    if len(a) == 0:
        return "no finite loss"
    std = f"{a.std(ddof=1):.4f}" if len(a) > 1 else "?"
    return f"{a.mean():.4f} ± {std} (n={len(a)})"


def _fmt(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _human(n: float) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def _axis_label(axis: str) -> str:
    units = {"peak_lr": "learning rate", "initial_lr": "learning rate", "min_lr": "learning rate",
             "batch_size": "sequences per step", "warmup_steps": "optimizer steps",
             "weight_decay": "AdamW coefficient", "dropout": "probability"}
    return f"{axis} ({units[axis]})" if axis in units else axis
