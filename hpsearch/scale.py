"""Budget transfer: a ladder of small sweeps, a fitted LR/batch law, and a check of it on held-out data.

    hpsearch scale --budgets 2e5,4e5,8e5,1.6e6 --lrs 1e-3,2e-3,4e-3,8e-3 --batch-sizes 4,8,16 --seeds 2

1. **Ladder** (one grid sweep, resumable with ``--resume``): every (budget, peak_lr, batch_size,
   seed). ``max_tokens`` is the budget, so each run's cosine schedule is fitted to its own budget, and
   warmup is a fixed fraction of each run's steps (``train.warmup_fraction``, default 5 %), so every
   run has the same schedule shape. Tokens come from the sweep's token cache.
2. **Noise and fit** (:mod:`hpsearch.scaling`): the seed-to-seed spread of the same config gives the
   tolerance of the near-optimal set; log η_opt and log B_opt are fitted against log compute with
   bootstrap intervals, beside the DeepSeek LLM and Step Law reference laws.
3. **Verify** (with 3 budgets or more): refit without the largest budget, predict its optimum, and
   train the predicted config there for real, over the same seeds (a second sweep, NAME-verify).
   ``scaling_law_loss_gap`` = (its loss - the held-out grid's best) / the grid's best.

Writes into the ladder's sweep directory: scaling.json (fit, noise, tolerance, hold-out), scaling.csv
(the table the fit read) and scaling.png. `hpsearch export NAME --target-tokens 10B` then writes a
config for the user's budget from the fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from hpsearch import scaling
from hpsearch.scaling import SCALING_FILE
from hpsearch.options import SweepOptions
from search_spaces import Space, parse_space
from trainables.config import PretrainConfig
from trainables.errors import SweepError
from trainables.files import atomic_write_text, plain_tree
from trainables.status import RANKED

DEFAULT_WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class ScaleOutcome:
    sweep_dir: Path
    table: pd.DataFrame
    fit: scaling.ScalingFit
    record: dict


def ladder_space(*, budgets: list[int], lrs: list[float], batch_sizes: list[int], seeds: list[int],
                 warmup_fraction: float) -> Space:
    problems = []
    if len(set(budgets)) < 2:
        problems.append(f"--budgets needs 2 or more token budgets (3+ to verify the fit), got {budgets}")
    if any(b < 1 for b in budgets):
        problems.append(f"--budgets must be positive token counts, got {budgets}")
    if len(set(lrs)) < 3:
        problems.append(f"--lrs needs 3 or more learning rates to locate each budget's optimum, got {lrs}")
    if any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        problems.append(f"--lrs must be positive numbers, got {lrs}")
    if any(b < 1 for b in batch_sizes):
        problems.append(f"--batch-sizes must be positive integers, got {batch_sizes}")
    if len(set(seeds)) < 2:
        problems.append("--seeds must be 2 or more: the near-optimal tolerance comes from seed-to-seed noise")
    if problems:
        raise SweepError("; ".join(problems))
    return parse_space({
        "name": "budget-ladder",
        "description": f"budgets {sorted(set(budgets))} x {len(set(lrs))} LRs x batch {sorted(set(batch_sizes))} "
                       f"x {len(set(seeds))} seeds",
        "axes": {"max_tokens": {"grid": sorted(set(budgets))}, "peak_lr": {"grid": sorted(set(lrs))},
                 "batch_size": {"grid": sorted(set(batch_sizes))}, "seed": {"grid": sorted(set(seeds))}},
        # the budget ends every run: epochs only need to be enough never to cut it shorter
        "fixed": {"num_epochs": 100_000, "warmup_fraction": warmup_fraction},
    }, source="hpsearch scale")


def scaling_table(trials: pd.DataFrame, base: PretrainConfig) -> pd.DataFrame:
    """The fit's input: one row per finished trial (budget, peak_lr, batch_size, context_len, loss, seed).

    The loss is the validation loss at the end of the budget (the cosine has reached min_lr there).
    Diverged and skipped trials carry an infinite loss and are dropped by the fit, never ranked.
    """
    t = trials[trials["status"].isin(RANKED)]
    return pd.DataFrame({
        "budget_tokens": t["max_tokens"].astype(int), "peak_lr": t["peak_lr"].astype(float),
        "batch_size": t["batch_size"].astype(int), "context_len": base.model.context_len,
        "loss": pd.to_numeric(t["final_val_loss"], errors="coerce"), "seed": t["seed"].astype(int),
        "tokens_seen": t["tokens_seen"].astype(int),
    }).reset_index(drop=True)


def verify_space(*, budget: int, lr: float, batch_size: int, seeds: list[int], warmup_fraction: float) -> Space:
    return parse_space({
        "name": "budget-ladder-verify",
        "description": f"the fit's predicted optimum at the held-out budget {budget:,}",
        "axes": {"seed": {"grid": sorted(set(seeds))}},
        "fixed": {"max_tokens": budget, "peak_lr": lr, "batch_size": batch_size, "num_epochs": 100_000,
                  "warmup_fraction": warmup_fraction},
    }, source="hpsearch scale --verify")


def run_scale(opts: SweepOptions, *, budgets: list[int] | None, lrs: list[float] | None,
              batch_sizes: list[int] | None, seeds: list[int] | None,
              warmup_fraction: float = DEFAULT_WARMUP_FRACTION, verify: bool = True, n_boot: int = 1000,
              log=print) -> ScaleOutcome:
    """Run (or resume) the ladder, fit, verify on the held-out budget, and write scaling.json/.csv/.png."""
    from hpsearch.sweep import run_sweep, stop_if_interrupted

    space = None
    if not opts.resume:
        if not (budgets and lrs and batch_sizes and seeds):
            raise SweepError("hpsearch scale needs --budgets, --lrs and --batch-sizes (or --name NAME --resume)")
        space = ladder_space(budgets=budgets, lrs=lrs, batch_sizes=batch_sizes, seeds=seeds,
                             warmup_fraction=warmup_fraction)
    ladder = run_sweep(replace(opts, mode="grid", num_samples=1), space=space, log=log, command="scale")
    stop_if_interrupted(ladder, "scale")  # an interrupted ladder fits nothing
    meta = json.loads((ladder.sweep_dir / "sweep.json").read_text())
    base = PretrainConfig.from_dict(meta["base_config"], source=f"{ladder.sweep_dir}/sweep.json")
    ladder_space_ = parse_space(meta["space"], source=f"{ladder.sweep_dir}/sweep.json")
    seeds = list(ladder_space_.axes["seed"].values)
    warmup_fraction = ladder_space_.fixed.get("warmup_fraction", warmup_fraction)

    table = scaling_table(ladder.trials, base)
    atomic_write_text(ladder.sweep_dir / "scaling.csv", table.to_csv(index=False))
    try:
        noise = scaling.seed_noise(table)
        tol = scaling.tolerance_from_noise(noise)
        fit = scaling.fit_power_laws(table, tol=tol, model=base.model, n_boot=n_boot)
    except ValueError as exc:
        raise SweepError(f"{ladder.sweep_dir}: cannot fit the ladder ({exc})") from None
    record = {"seed_noise_rel_std": noise, "tolerance": tol, "fit": fit_record(fit), "n_boot": n_boot,
              "flops_per_token": fit.flops_per_token, "model": base.to_dict()["model"],
              "warmup_fraction": warmup_fraction, "budgets": sorted(table["budget_tokens"].unique().tolist())}

    if verify and table["budget_tokens"].nunique() >= 3:
        record["holdout"] = _verify(opts, ladder.name, table, base, tol, seeds, warmup_fraction, n_boot, log)
    elif verify:
        record["holdout"] = None
        log("verification skipped: it holds out the largest budget, so it needs 3 or more budgets")

    atomic_write_text(ladder.sweep_dir / SCALING_FILE, json.dumps(plain_tree(record), indent=2))
    scaling.plot_scaling(table, fit, ladder.sweep_dir / "scaling.png", model=base.model, tol=tol)
    log("")
    log(f"seed-to-seed noise {noise:.3%} (relative std) -> near-optimal tolerance {tol:.3%}")
    log(fit.summary())
    if record.get("holdout"):
        h = record["holdout"]
        log(f"held-out budget {h['budget_tokens']:,}: predicted lr {h['predicted_lr']:.3g} (measured optimum "
            f"{h['measured_lr']:.3g}), batch {h['predicted_batch_tokens']:,.0f} tokens (measured "
            f"{h['measured_batch_tokens']:,.0f}); scaling_law_loss_gap {h['loss_gap']:.4f}")
    log(f"wrote {ladder.sweep_dir / SCALING_FILE}, scaling.csv and scaling.png")
    return ScaleOutcome(ladder.sweep_dir, table, fit, record)


def _verify(opts, name, table, base, tol, seeds, warmup_fraction, n_boot, log) -> dict:
    """Fit without the largest budget, train its predicted optimum there for real, compare with the grid."""
    from hpsearch.sweep import run_sweep, stop_if_interrupted

    largest = int(table["budget_tokens"].max())
    held = scaling.holdout(table, tol=tol, model=base.model, n_boot=n_boot)
    lr = float(held["predicted_lr"])
    batch = max(1, round(held["predicted_batch_tokens"] / base.model.context_len))
    verify_name = f"{name}-verify"
    vopts = replace(opts, name=verify_name, mode="grid", num_samples=1)
    verify_dir = Path(opts.results_dir) / verify_name
    vopts = replace(vopts, resume=(verify_dir / "sweep.json").is_file())
    log(f"verifying: lr {lr:.3g}, batch {batch} at the held-out budget {largest:,} over seeds {seeds}")
    out = run_sweep(vopts, space=verify_space(budget=largest, lr=lr, batch_size=batch, seeds=seeds,
                                              warmup_fraction=warmup_fraction), log=log, command="scale")
    stop_if_interrupted(out, "scale", name)
    losses = pd.to_numeric(out.trials.loc[out.trials["status"].isin(RANKED), "final_val_loss"], errors="coerce")
    predicted_loss = float(losses.mean()) if len(losses) and losses.notna().all() else math.inf
    held = scaling.holdout(table, tol=tol, model=base.model, predicted_loss=predicted_loss, n_boot=n_boot)
    held.pop("fit", None)
    # the grid's best is compared seed-averaged, like the predicted config's loss
    at = table[table["budget_tokens"] == largest]
    grid_best = at.groupby(["peak_lr", "batch_size"])["loss"].mean().min()
    held.update({"budget_tokens": largest, "verify_sweep": verify_name, "predicted_batch_size": batch,
                 "predicted_loss": predicted_loss, "grid_best_loss_seed_mean": float(grid_best),
                 "scaling_law_loss_gap": (predicted_loss - grid_best) / grid_best})
    held["loss_gap"] = held["scaling_law_loss_gap"]
    return held


def fit_record(fit: scaling.ScalingFit) -> dict:
    """The fitted laws as plain numbers (scaling.json); the bootstrap samples stay out."""
    def law(p: scaling.PowerLaw) -> dict:
        return {"coef": p.coef, "exponent": p.exponent, "coef_ci": list(p.coef_ci), "exponent_ci": list(p.exponent_ci)}

    return {"lr": law(fit.lr), "batch_tokens": law(fit.batch), "tolerance": fit.tol, "notes": list(fit.notes),
            "optima": fit.optima.to_dict("records")}
