"""Transfer studies: does the best learning rate stay put when the model gets wider or deeper?

    hpsearch transfer --widths 64,128,256,512 --lrs 3e-4,1e-3,3e-3,1e-2,3e-2 --max-tokens-per-trial 200000
    hpsearch transfer --depths 2,4,8 --lrs 1e-3,2e-3,4e-3,8e-3 --seeds 0,1

runs the same LR grid at several widths (``emb_dim`` at the preset's depth and head count; SP against
μP) and/or depths (``n_layers``; no rule against CompleteP) as ONE grid sweep (resumable with
``--resume`` like any sweep), then writes beside the sweep's own tables:

    transfer.csv    loss per (arm, size, LR): mean and std over seeds
    transfer.json   best LR per size, the drift in octaves, and what is undetermined
    transfer.png    validation loss against LR, one curve per size, one panel per arm

Drift is the largest |log2(best LR at a size / best LR at the smallest size)|: 0 means the proxy's
LR is the large model's LR. A best LR on the edge of the LR grid leaves the drift undetermined: the
summary names the LRs to add instead of reporting a number. A grid's drift comes in whole grid steps,
so beside it each size's optimum is also read off the parabola (in log LR) through its best LR and
the two neighbours, and the summary gives that finer drift too. Under μP the base width is the narrowest
width and under a depth rule the base depth the shallowest, unless ``--base-width`` /
``--base-depth`` say otherwise, so the smallest model of every arm is the same model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hpsearch.options import SweepOptions
from search_spaces import Space, parse_space
from trainables.errors import SweepError
from trainables.files import atomic_write, atomic_write_text
from trainables.model_config import DEPTH_RULES, PARAMETRIZATIONS, preset_config
from trainables.status import RANKED


LOSS = "best_val_loss"
ARM_KEYS = ("parametrization", "depth_rule")
"""What a study compares: parametrizations across width, depth rules across depth."""
SIZE_KEYS = ("emb_dim", "n_layers")


@dataclass(frozen=True)
class TransferOutcome:
    sweep_dir: Path
    table: pd.DataFrame
    optima: pd.DataFrame
    drift: dict[str, float]
    """Arm -> largest |log2(best LR at a size / best LR at the smallest size)|, in octaves; NaN if undetermined."""
    undetermined: dict[str, str]
    """Arm -> why its drift is not known (an optimum on the LR grid's edge) and which LRs to add."""
    interpolated: dict[str, float]
    """Arm -> the same drift between the parabolas' optima (``interp_lr``); NaN where any is unknown."""


def transfer_space(*, model: str, widths: list[int] | None = None, lrs: list[float],
                   parametrizations: list[str] = ("sp", "mup"), base_width: int | None = None,
                   depths: list[int] | None = None, depth_rules: list[str] = ("none", "completep"),
                   base_depth: int | None = None, seeds: list[int] | None = None) -> Space:
    """The study's grid: peak_lr x (parametrization x emb_dim) x (depth_rule x n_layers) (x seed)."""
    widths, depths = sorted(set(widths or [])), sorted(set(depths or []))
    problems = []
    if len(widths) < 2 and len(depths) < 2:
        problems.append("give --widths or --depths (or both) with 2 or more values to compare, "
                        f"got widths {widths or 'none'}, depths {depths or 'none'}")
    if len(lrs) < 3:
        problems.append(f"--lrs needs 3 or more learning rates to locate an optimum, got {lrs}")
    if widths:
        bad = [p for p in parametrizations if p not in PARAMETRIZATIONS]
        if bad:
            problems.append(f"--parametrizations {','.join(bad)}: choose from {', '.join(PARAMETRIZATIONS)}")
    if depths:
        bad = [r for r in depth_rules if r not in DEPTH_RULES]
        if bad:
            problems.append(f"--depth-rules {','.join(bad)}: choose from {', '.join(DEPTH_RULES)}")
    if any(lr <= 0 or not math.isfinite(lr) for lr in lrs):
        problems.append(f"--lrs must be positive numbers, got {lrs}")
    bw = (base_width or min(widths)) if widths else None
    bd = (base_depth or min(depths)) if depths else None
    for w in widths or [None]:
        for d in depths or [None]:
            shape = {k: v for k, v in (("emb_dim", w), ("n_layers", d)) if v is not None}
            cfg = preset_config(model, **shape, parametrization="mup" if widths else "sp", base_width=bw,
                                depth_rule="completep" if depths else "none", base_depth=bd)
            problems += [f"{' x '.join(f'{k} {v}' for k, v in shape.items())}: {p}" for p in cfg.problems()]
    if problems:
        raise SweepError("; ".join(dict.fromkeys(problems)))
    axes: dict = {}
    fixed: dict = {}
    if widths:
        axes |= {"parametrization": {"grid": list(parametrizations)}, "emb_dim": {"grid": widths}}
        fixed["base_width"] = bw
    if depths:
        axes |= {"depth_rule": {"grid": list(depth_rules)}, "n_layers": {"grid": depths}}
        fixed["base_depth"] = bd
    axes["peak_lr"] = {"grid": sorted(set(lrs))}
    if seeds and len(seeds) > 1:
        axes["seed"] = {"grid": list(seeds)}
    elif seeds:
        fixed["seed"] = seeds[0]  # one seed is honoured too: the study trains that seed, not the config's
    what = " and ".join(x for x in (f"widths {widths}" if widths else "", f"depths {depths}" if depths else "") if x)
    return parse_space({"name": "transfer", "description": f"{len(lrs)} LRs x {what}", "axes": axes,
                        "fixed": fixed}, source="hpsearch transfer")


def transfer_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Loss per (arm, size, peak_lr): mean and std over seeds; diverged/invalid trials count as inf."""
    t = trials.copy()
    t["loss"] = pd.to_numeric(t[LOSS], errors="coerce").where(t["status"].isin(RANKED))
    t["loss"] = t["loss"].fillna(math.inf)
    arms = [k for k in ARM_KEYS if k in t.columns and t[k].notna().any()]
    sizes = [k for k in SIZE_KEYS if k in t.columns and t[k].nunique(dropna=True) > 1]
    arms = [a for a in arms if (a == "parametrization" and "emb_dim" in sizes) or (a == "depth_rule" and "n_layers" in sizes)]
    t["arm"] = t[arms].astype(str).agg("/".join, axis=1) if arms else "all"
    keys = ["arm", *arms, *sizes, "peak_lr"]
    return (t.groupby(keys, as_index=False)
             .agg(loss=("loss", "mean"), loss_std=("loss", "std"), runs=("loss", "size"))
             .sort_values(keys, kind="stable").reset_index(drop=True))


def _sizes(table: pd.DataFrame) -> list[str]:
    return [k for k in SIZE_KEYS if k in table.columns]


def lr_optima(table: pd.DataFrame) -> pd.DataFrame:
    """Best LR per (arm, size), its drift in octaves from the smallest size, and edge flags."""
    rows = []
    lrs = sorted(table["peak_lr"].unique())
    sizes = _sizes(table)
    for arm, by_arm in table.groupby("arm", sort=False):
        ref = None
        for size, g in by_arm.groupby(sizes):
            size = dict(zip(sizes, size if isinstance(size, tuple) else (size,)))
            finite = g[np.isfinite(g["loss"])]
            row = {"arm": arm, **{k: int(v) for k, v in size.items()}}
            if finite.empty:
                rows.append({**row, "best_lr": math.nan, "loss": math.inf, "drift_octaves": math.nan,
                             "edge": "no finished trial"})
                continue
            best = finite.loc[finite["loss"].idxmin()]
            interp = parabola_optimum(g["peak_lr"].to_numpy(float), g["loss"].to_numpy(float))
            if ref is None:  # the arm's smallest size with a finished trial
                ref, ref_interp = best["peak_lr"], interp
            edge = "lowest LR" if best["peak_lr"] == lrs[0] else "highest LR" if best["peak_lr"] == lrs[-1] else ""
            rows.append({**row, "best_lr": float(best["peak_lr"]), "loss": float(best["loss"]),
                         "loss_std": float(best["loss_std"]) if "loss_std" in best and pd.notna(best["loss_std"]) else math.nan,
                         "drift_octaves": math.log2(best["peak_lr"] / ref), "edge": edge, "interp_lr": interp,
                         "interp_drift_octaves": math.log2(interp / ref_interp)})
    return pd.DataFrame(rows)


def parabola_optimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The LR at the vertex of the parabola (in log2 LR) through the lowest loss and its two neighbours
    on the grid; NaN where the lowest is on the grid's edge or a neighbour has no finite loss."""
    order = np.argsort(lrs)
    x, y = np.log2(lrs[order]), losses[order]
    i = int(np.argmin(y))
    if i in (0, len(y) - 1) or not np.isfinite(y[i - 1:i + 2]).all():
        return math.nan
    (x0, x1, x2), (y0, y1, y2) = x[i - 1:i + 2], y[i - 1:i + 2]
    a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)  # > 0: argmin takes the first lowest, so y0 > y1 <= y2
    return float(2.0 ** (((x0 + x1) - (y1 - y0) / (x1 - x0) / a) / 2))


def interpolated_drift(optima: pd.DataFrame) -> dict[str, float]:
    """Arm -> the largest |log2(parabola optimum at a size / at the smallest size)|; NaN where any is unknown."""
    return {arm: float(g["interp_drift_octaves"].abs().max()) if g["interp_drift_octaves"].notna().all() else math.nan
            for arm, g in optima.groupby("arm", sort=False)}


def drift_octaves(optima: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """(arm -> largest |drift| from the smallest size, arm -> why undetermined).

    An optimum on the LR grid's edge (or a size with no finished trial) leaves the drift unknown: the
    arm's drift is NaN and the reason names the LRs to add, never a drift of 0.
    """
    drift, undetermined = {}, {}
    lrs_edge = {"lowest LR": "below", "highest LR": "above"}
    for arm, g in optima.groupby("arm", sort=False):
        where = [(", ".join(f"{k} {r[k]}" for k in _sizes(optima) if k in r), r["edge"]) for _, r in g.iterrows() if r["edge"]]
        if where:
            undetermined[arm] = "; ".join(
                f"{size}: best LR on the grid's {edge}" + (f", add LRs {lrs_edge[edge]} {g.loc[g['edge'] == edge, 'best_lr'].iloc[0]:g}"
                                                           if edge in lrs_edge else "") for size, edge in where)
            drift[arm] = math.nan
        else:
            drift[arm] = float(g["drift_octaves"].abs().max())
    return drift, undetermined


def _size_label(row, sizes: list[str]) -> str:
    names = {"emb_dim": "width", "n_layers": "depth"}
    return ", ".join(f"{names[k]} {int(row[k])}" for k in sizes)


def plot_transfer(table: pd.DataFrame, optima: pd.DataFrame, path: Path) -> Path:
    """Validation loss against LR, one curve per size, one panel per arm; best LR marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = list(dict.fromkeys(table["arm"]))
    sizes = _sizes(table)
    drift, undetermined = drift_octaves(optima)
    fig = Figure(figsize=(5.2 * len(arms), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    finite = table["loss"][np.isfinite(table["loss"])]
    lrs = sorted(set(table["peak_lr"]))
    for ax, arm in zip(axes, arms):
        for size, g in table[table["arm"] == arm].groupby(sizes):
            size = size if isinstance(size, tuple) else (size,)
            g = g[np.isfinite(g["loss"])]
            line, = ax.plot(g["peak_lr"], g["loss"], marker="o", ms=3, label=_size_label(dict(zip(sizes, size)), sizes))
            best = optima[(optima["arm"] == arm) & np.logical_and.reduce([optima[k] == v for k, v in zip(sizes, size)])]
            if len(best) and math.isfinite(best["best_lr"].iloc[0]):
                ax.plot(best["best_lr"], best["loss"], marker="*", ms=12, color=line.get_color())
        ax.set_xscale("log")
        if len(lrs) <= 12:  # label the grid's own LRs, not matplotlib's overlapping minor ticks
            ax.set_xticks(lrs, [f"{v:g}" for v in lrs], rotation=45, fontsize=8)
            ax.minorticks_off()
        moved = "undetermined (optimum on the grid's edge)" if arm in undetermined else f"{drift.get(arm, math.nan):.2f} octaves"
        ax.set_title(f"{arm}: best LR drift {moved}", fontsize=9)
        ax.set_xlabel("peak learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("best validation loss (mean over seeds)")
    if len(finite):
        axes[0].set_ylim(finite.min() - 0.05, min(finite.max(), finite.min() + 3.0) + 0.05)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def write_transfer(sweep_dir: Path, trials: pd.DataFrame) -> TransferOutcome:
    """transfer.csv / .json / .png of a finished transfer sweep."""
    table = transfer_table(trials)
    optima = lr_optima(table)
    drift, undetermined = drift_octaves(optima)
    atomic_write_text(sweep_dir / "transfer.csv", table.to_csv(index=False))
    interpolated = interpolated_drift(optima)
    record = {"lr_drift_octaves": {k: (None if math.isnan(v) else v) for k, v in drift.items()},
              "lr_drift_octaves_interpolated": {k: (None if math.isnan(v) else v) for k, v in interpolated.items()},
              "undetermined": undetermined, "seeds": int(table["runs"].max()) if len(table) else 0,
              "optima": optima.replace({math.inf: None}).to_dict("records"),
              "note": "drift: the largest |log2(best LR / best LR at the smallest size)| over sizes; null where an "
                      "optimum sits on the LR grid's edge (undetermined: add the LRs named); interpolated: the same "
                      "between the vertices of the parabolas (in log LR) through each best LR and its two neighbours"}
    atomic_write_text(sweep_dir / "transfer.json", json.dumps(record, indent=2, default=float))
    plot_transfer(table, optima, sweep_dir / "transfer.png")
    return TransferOutcome(sweep_dir, table, optima, drift, undetermined, interpolated)


def summary_lines(result: TransferOutcome) -> list[str]:
    """One line per arm: its drift, or why it is undetermined."""
    sizes = _sizes(result.optima)
    span = ", ".join(f"{k} {int(result.optima[k].min())}-{int(result.optima[k].max())}" for k in sizes)
    out = []
    for arm, octaves in result.drift.items():
        if arm in result.undetermined:
            out.append(f"{arm}: drift undetermined ({result.undetermined[arm]})")
        else:
            finer = result.interpolated.get(arm, math.nan)
            out.append(f"{arm}: best LR moved at most {octaves:.2f} octaves across {span}"
                       + ("" if math.isnan(finer) else f" ({finer:.2f} between the parabolas through each best LR "
                                                      "and its neighbours)"))
    return out


def run_transfer(opts: SweepOptions, *, widths: list[int] | None, lrs: list[float] | None,
                 parametrizations: list[str] = ("sp", "mup"), base_width: int | None = None,
                 depths: list[int] | None = None, depth_rules: list[str] = ("none", "completep"),
                 base_depth: int | None = None, seeds: list[int] | None = None, log=print) -> TransferOutcome:
    """Run (or resume) the study as one grid sweep and write its tables and plot.

    An interrupted study writes nothing and concludes nothing: :class:`Interrupted` (exit 130) names the
    resume command.
    """
    from hpsearch.sweep import run_sweep, stop_if_interrupted

    space = None
    if not opts.resume:
        if not (widths or depths) or not lrs:
            raise SweepError("hpsearch transfer needs --lrs and --widths and/or --depths (or --name NAME --resume)")
        space = transfer_space(model=opts.model, widths=widths, lrs=lrs, parametrizations=list(parametrizations),
                               base_width=base_width, depths=depths, depth_rules=list(depth_rules),
                               base_depth=base_depth, seeds=seeds)
    outcome = run_sweep(replace(opts, mode="grid", num_samples=1), space=space, log=log, command="transfer")
    stop_if_interrupted(outcome, "transfer")
    result = write_transfer(outcome.sweep_dir, outcome.trials)
    log("")
    log(result.optima.to_string(index=False))
    for line in summary_lines(result):
        log(line)
    log(f"wrote {outcome.sweep_dir / 'transfer.png'}, transfer.csv and transfer.json")
    return result
