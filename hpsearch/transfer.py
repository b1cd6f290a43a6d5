"""Width transfer study: does the best learning rate stay put when the model gets wider?

    hpsearch transfer --widths 64,128,256,512 --lrs 3e-4,1e-3,3e-3,1e-2,3e-2 --max-tokens-per-trial 200000

runs the same LR grid at several widths (``emb_dim`` at the preset's depth and head count), for the
standard parametrization and for μP, as ONE grid sweep (resumable with ``--resume`` like any sweep),
then writes beside the sweep's own tables:

    transfer.csv    loss per (parametrization, width, LR), averaged over seeds
    transfer.json   best LR per width and its drift in octaves from the narrowest width
    transfer.png    validation loss against LR, one curve per width, one panel per parametrization

Drift is log2(best LR at width w / best LR at the narrowest width): 0 means the proxy's LR is the
wide model's LR; -1 means the wide model wants half of it. A best LR on the edge of the LR grid
makes the drift a lower bound, and the table says so. Under μP the base width is the narrowest width
unless ``--base-width`` says otherwise, so the narrowest μP model *is* the SP model (apart from the
readout's zero init).
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
from trainables.model_config import PARAMETRIZATIONS, preset_config
from trainables.status import RANKED


LOSS = "best_val_loss"


@dataclass(frozen=True)
class TransferOutcome:
    sweep_dir: Path
    table: pd.DataFrame
    optima: pd.DataFrame
    drift: dict[str, float]
    """Parametrization -> |log2(best LR widest / best LR narrowest)|, in octaves."""


def transfer_space(*, model: str, widths: list[int], lrs: list[float], parametrizations: list[str],
                   base_width: int | None = None, seeds: list[int] | None = None) -> Space:
    """The study's grid: parametrization x emb_dim x peak_lr (x seed), base_width fixed."""
    problems = []
    if len(widths) < 2:
        problems.append(f"--widths needs 2 or more widths to compare, got {widths}")
    if len(lrs) < 3:
        problems.append(f"--lrs needs 3 or more learning rates to locate an optimum, got {lrs}")
    bad = [p for p in parametrizations if p not in PARAMETRIZATIONS]
    if bad:
        problems.append(f"--parametrizations {','.join(bad)}: choose from {', '.join(PARAMETRIZATIONS)}")
    if any(lr <= 0 or not math.isfinite(lr) for lr in lrs):
        problems.append(f"--lrs must be positive numbers, got {lrs}")
    base = base_width or min(widths, default=1)
    for w in sorted(set(widths)):
        cfg = preset_config(model, emb_dim=w, parametrization="mup", base_width=base)
        problems += [f"width {w}: {p}" for p in cfg.problems()]
    if problems:
        raise SweepError("; ".join(dict.fromkeys(problems)))
    axes = {"parametrization": {"grid": list(parametrizations)}, "emb_dim": {"grid": sorted(set(widths))},
            "peak_lr": {"grid": sorted(set(lrs))}}
    if seeds and len(seeds) > 1:
        axes["seed"] = {"grid": list(seeds)}
    return parse_space({"name": "width-transfer",
                        "description": f"{len(lrs)} LRs x widths {sorted(set(widths))}, "
                                       f"{'/'.join(parametrizations)}, base width {base}",
                        "axes": axes, "fixed": {"base_width": base}}, source="hpsearch transfer")


def transfer_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Loss per (parametrization, emb_dim, peak_lr), mean over seeds; diverged/invalid trials count as inf."""
    t = trials.copy()
    t["loss"] = pd.to_numeric(t[LOSS], errors="coerce").where(t["status"].isin(RANKED))
    t["loss"] = t["loss"].fillna(math.inf)
    return (t.groupby(["parametrization", "emb_dim", "peak_lr"], as_index=False)
             .agg(loss=("loss", "mean"), runs=("loss", "size"))
             .sort_values(["parametrization", "emb_dim", "peak_lr"], kind="stable").reset_index(drop=True))


def lr_optima(table: pd.DataFrame) -> pd.DataFrame:
    """Best LR per (parametrization, width), its drift in octaves from the narrowest width, and edge flags."""
    rows = []
    lrs = sorted(table["peak_lr"].unique())
    for p, by_param in table.groupby("parametrization", sort=False):
        ref = None
        for w, g in by_param.groupby("emb_dim"):
            finite = g[np.isfinite(g["loss"])]
            if finite.empty:
                rows.append({"parametrization": p, "emb_dim": int(w), "best_lr": math.nan, "loss": math.inf,
                             "drift_octaves": math.nan, "edge": "no finished trial"})
                continue
            best = finite.loc[finite["loss"].idxmin()]
            ref = best["peak_lr"] if ref is None else ref
            edge = "lowest LR" if best["peak_lr"] == lrs[0] else "highest LR" if best["peak_lr"] == lrs[-1] else ""
            rows.append({"parametrization": p, "emb_dim": int(w), "best_lr": float(best["peak_lr"]),
                         "loss": float(best["loss"]), "drift_octaves": math.log2(best["peak_lr"] / ref),
                         "edge": edge})
    return pd.DataFrame(rows)


def drift_octaves(optima: pd.DataFrame) -> dict[str, float]:
    """Per parametrization: |log2(best LR at the widest width / at the narrowest)| (NaN if either is missing)."""
    out = {}
    for p, g in optima.groupby("parametrization", sort=False):
        g = g.sort_values("emb_dim")
        first, last = g["best_lr"].iloc[0], g["best_lr"].iloc[-1]
        out[p] = abs(math.log2(last / first)) if math.isfinite(first) and math.isfinite(last) else math.nan
    return out


def plot_transfer(table: pd.DataFrame, optima: pd.DataFrame, path: Path) -> Path:
    """Validation loss against LR, one curve per width, one panel per parametrization; best LR marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    params = list(dict.fromkeys(table["parametrization"]))
    fig = Figure(figsize=(5.2 * len(params), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(params), sharey=True, squeeze=False)[0]
    finite = table["loss"][np.isfinite(table["loss"])]
    for ax, p in zip(axes, params):
        for w, g in table[table["parametrization"] == p].groupby("emb_dim"):
            g = g[np.isfinite(g["loss"])]
            line, = ax.plot(g["peak_lr"], g["loss"], marker="o", ms=3, label=f"width {w}")
            best = optima[(optima["parametrization"] == p) & (optima["emb_dim"] == w)]
            if len(best) and math.isfinite(best["best_lr"].iloc[0]):
                ax.plot(best["best_lr"], best["loss"], marker="*", ms=12, color=line.get_color())
        ax.set_xscale("log")
        lrs = sorted(set(table["peak_lr"]))
        if len(lrs) <= 12:  # label the grid's own LRs, not matplotlib's overlapping minor ticks
            ax.set_xticks(lrs, [f"{v:g}" for v in lrs], rotation=45, fontsize=8)
            ax.minorticks_off()
        ax.set_title(f"{p.upper()}: best LR drift {drift_octaves(optima).get(p, math.nan):.2f} octaves")
        ax.set_xlabel("peak learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("best validation loss")
    if len(finite):
        axes[0].set_ylim(finite.min() - 0.05, min(finite.max(), finite.min() + 3.0) + 0.05)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def write_transfer(sweep_dir: Path, trials: pd.DataFrame) -> TransferOutcome:
    """transfer.csv / .json / .png of a finished transfer sweep."""
    table = transfer_table(trials)
    optima = lr_optima(table)
    drift = drift_octaves(optima)
    atomic_write_text(sweep_dir / "transfer.csv", table.to_csv(index=False))
    record = {"lr_drift_octaves": drift, "optima": optima.replace({math.inf: None}).to_dict("records"),
              "note": "drift is a lower bound where a best LR sits on the edge of the LR grid"}
    atomic_write_text(sweep_dir / "transfer.json", json.dumps(record, indent=2, default=float))
    plot_transfer(table, optima, sweep_dir / "transfer.png")
    return TransferOutcome(sweep_dir, table, optima, drift)


def run_transfer(opts: SweepOptions, *, widths: list[int] | None, lrs: list[float] | None,
                 parametrizations: list[str] = ("sp", "mup"), base_width: int | None = None,
                 seeds: list[int] | None = None, log=print) -> TransferOutcome:
    """Run (or resume) the study as one grid sweep and write its tables and plot."""
    from hpsearch.sweep import run_sweep

    space = None
    if not opts.resume:
        if not widths or not lrs:
            raise SweepError("hpsearch transfer needs --widths and --lrs (or --name NAME --resume)")
        space = transfer_space(model=opts.model, widths=widths, lrs=lrs, parametrizations=list(parametrizations),
                               base_width=base_width, seeds=seeds)
    outcome = run_sweep(replace(opts, mode="grid", num_samples=1), space=space, log=log)
    result = write_transfer(outcome.sweep_dir, outcome.trials)
    log("")
    log(result.optima.to_string(index=False))
    for p, octaves in result.drift.items():
        log(f"{p}: best LR moved {octaves:.2f} octaves from width {int(result.optima['emb_dim'].min())} "
            f"to {int(result.optima['emb_dim'].max())}")
    log(f"wrote {outcome.sweep_dir / 'transfer.png'}, transfer.csv and transfer.json")
    return result
