"""Budget transfer: a ladder of small sweeps, a fitted LR/batch law, and a check of it on held-out data.

    hpsearch scale --budgets 2e5,4e5,8e5,1.6e6 --lrs 1e-3,2e-3,4e-3,8e-3 --batch-sizes 4,8,16 --seeds 0,1

1. **Ladder** (one grid sweep, resumable with ``--resume``): every (budget, peak_lr, batch_size,
   seed). ``max_tokens`` is the budget, so each run's cosine schedule is fitted to its own budget, and
   warmup is a fixed fraction of each run's steps (``train.warmup_fraction``, default 5 %), so every
   run has the same schedule shape. Tokens come from the sweep's token cache.
2. **Noise and fit** (:mod:`hpsearch.scaling`): the seed-to-seed spread of the same config gives the
   tolerance of the near-optimal set; log η_opt and log B_opt are fitted against log compute with
   bootstrap intervals, beside the DeepSeek LLM and Step Law reference laws.
3. **Verify** (with 3 budgets or more): refit without the largest budget, predict its optimum, and
   train the predicted config there for real, over the same seeds (a second sweep, NAME-verify-vertex;
   NAME-verify for ``--optimum near-optimal``).
   ``scaling_law_loss_gap`` = (its loss - the held-out grid's best) / the grid's best.

``--schedule wsd`` (warmup-stable-decay) trains one run per (peak_lr, batch_size, seed) to the largest
budget and scores every smaller budget by a cooldown branch (``train.cooldowns``, Hägele et al. 2024,
§4): the branch's loss is the loss of a WSD run of that budget, since both share warmup (a fixed number
of steps here: ``--warmup-fraction`` of the smallest budget's steps at the largest batch) and stable
phase. A doubling ladder of k budgets then trains the largest budget plus decay_fraction of the others
instead of all of them: tokens (1 + f(1 - 2^(1-k))) / (2 - 2^(1-k)) of the cosine ladder's. The
verification run is WSD too.

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
from trainables.budget import decay_steps_of
from trainables.status import DIVERGED, RANKED

DEFAULT_WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class ScaleOutcome:
    sweep_dir: Path
    table: pd.DataFrame
    fit: scaling.ScalingFit
    record: dict


SCHEDULES = ("cosine", "wsd")


def ladder_space(*, budgets: list[int], lrs: list[float], batch_sizes: list[int], seeds: list[int],
                 warmup_fraction: float, schedule: str = "cosine", context_len: int = 0) -> Space:
    """cosine: one run per (budget, LR, batch, seed), warmup a fraction of each. wsd: one run per (LR, batch,
    seed) to the largest budget with a cooldown branch at each smaller one, warmup a fixed step count."""
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
        problems.append(f"--seeds takes 2 or more seed values, e.g. 0,1 (got {','.join(map(str, seeds))}): the "
                        "near-optimal tolerance comes from seed-to-seed noise")
    if schedule not in SCHEDULES:
        problems.append(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if problems:
        raise SweepError("; ".join(problems))
    budgets, batch_sizes = sorted(set(budgets)), sorted(set(batch_sizes))
    axes = {"peak_lr": {"grid": sorted(set(lrs))}, "batch_size": {"grid": batch_sizes},
            "seed": {"grid": sorted(set(seeds))}}
    # the budget ends every run: epochs only need to be enough never to cut it shorter
    if schedule == "wsd":
        fixed = {"num_epochs": 100_000, "max_tokens": budgets[-1], "cooldowns": budgets[:-1],
                 **wsd_fixed(budgets, batch_sizes, warmup_fraction, context_len)}
        what = f"WSD ladder: one run to {budgets[-1]:,} tokens, cooldown branches at {budgets[:-1]}"
    else:
        axes = {"max_tokens": {"grid": budgets}, **axes}
        fixed = {"num_epochs": 100_000, "warmup_fraction": warmup_fraction}
        what = f"budgets {budgets}"
    return parse_space({
        "name": "budget-ladder",
        "description": f"{what} x {len(set(lrs))} LRs x batch {batch_sizes} x {len(set(seeds))} seeds",
        "axes": axes, "fixed": fixed,
    }, source="hpsearch scale")


def wsd_fixed(budgets: list[int], batch_sizes: list[int], warmup_fraction: float, context_len: int) -> dict:
    """A WSD ladder's schedule: one warmup length in steps for every run, branch and budget, so that a
    branch is the shorter run step for step: ``warmup_fraction`` of the smallest budget's steps at the
    largest batch (at least 1)."""
    steps = min(budgets) // (max(batch_sizes) * context_len)
    return {"schedule": "wsd", "warmup_steps": max(1, round(warmup_fraction * steps)), "warmup_fraction": None}


def branch_rows(base: PretrainConfig, curves: pd.DataFrame | None) -> pd.DataFrame:
    """The curves' cooldown-branch rows of a WSD ladder, one per (trial, budget); none for other ladders."""
    if not (base.train.cooldowns and curves is not None and "cooldown_tokens" in curves):
        return pd.DataFrame(columns=["trial_id", "cooldown_tokens", "cooldown_val_loss"])
    return curves.dropna(subset=["cooldown_tokens"]).drop_duplicates(["trial_id", "cooldown_tokens"])


def scaling_table(trials: pd.DataFrame, base: PretrainConfig, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """The fit's input: one row per finished run (budget, peak_lr, batch_size, context_len, loss, seed).

    The loss is the validation loss at the end of the budget (the schedule has reached min_lr there).
    Diverged and skipped trials are dropped, never ranked. A WSD ladder (``base.train.cooldowns``) adds
    a row per cooldown branch from ``curves``: the loss of the shorter run, scored on the way (kept from
    a trial that diverged later, since the shorter run ended before it did).
    """
    def rows(t: pd.DataFrame, budget, loss, tokens) -> pd.DataFrame:
        return pd.DataFrame({
            "budget_tokens": budget, "peak_lr": t["peak_lr"].astype(float).to_numpy(),
            "batch_size": t["batch_size"].astype(int).to_numpy(), "context_len": base.model.context_len,
            "loss": loss, "seed": t["seed"].astype(int).to_numpy(), "tokens_seen": tokens})

    t = trials[trials["status"].isin(RANKED)]
    budget = t["max_tokens"].astype(int).to_numpy() if "max_tokens" in t else int(base.train.max_tokens)
    table = rows(t, budget, pd.to_numeric(t["final_val_loss"], errors="coerce").to_numpy(),
                 t["tokens_seen"].astype(int).to_numpy())
    branches = branch_rows(base, curves)
    if len(branches):
        b = branches.merge(trials[trials["status"].isin((*RANKED, DIVERGED))], on="trial_id", how="inner")
        table = pd.concat([table, rows(b, b["cooldown_tokens"].astype(int).to_numpy(),
                                       b["cooldown_val_loss"].astype(float).to_numpy(),
                                       b["cooldown_tokens"].astype(int).to_numpy())], ignore_index=True)
    return table.sort_values(["budget_tokens", "peak_lr", "batch_size", "seed"], kind="stable").reset_index(drop=True)


def ladder_tokens(trials: pd.DataFrame, base: PretrainConfig, curves: pd.DataFrame | None = None) -> int:
    """Tokens the ladder trained: every trial's, plus each cooldown branch's decay."""
    total = int(pd.to_numeric(trials["tokens_seen"], errors="coerce").fillna(0).sum())
    branches = branch_rows(base, curves)
    if len(branches):
        batch = dict(zip(trials["trial_id"], trials["batch_size"].astype(int)))
        for trial_id, tokens in zip(branches["trial_id"], branches["cooldown_tokens"].astype(int)):
            per_step = batch[trial_id] * base.model.context_len
            total += decay_steps_of(base.train, max(1, tokens // per_step)) * per_step
    return total


def verify_space(*, budget: int, lr: float, batch_size: int, seeds: list[int], schedule: dict) -> Space:
    """The predicted config at the held-out budget over the ladder's seeds, on the ladder's schedule
    (``schedule``: its warmup and, for WSD, schedule and warmup steps)."""
    return parse_space({
        "name": "budget-ladder-verify",
        "description": f"the fit's predicted optimum at the held-out budget {budget:,}",
        "axes": {"seed": {"grid": sorted(set(seeds))}},
        "fixed": {"max_tokens": budget, "peak_lr": lr, "batch_size": batch_size, "num_epochs": 100_000, **schedule},
    }, source="hpsearch scale --verify")


def run_scale(opts: SweepOptions, *, budgets: list[int] | None, lrs: list[float] | None,
              batch_sizes: list[int] | None, seeds: list[int] | None,
              warmup_fraction: float = DEFAULT_WARMUP_FRACTION, verify: bool = True, n_boot: int = 1000,
              schedule: str = "cosine", optimum: str | None = None, log=print) -> ScaleOutcome:
    """Run (or resume) the ladder, fit, verify on the held-out budget, and write scaling.json/.csv/.png.
    ``optimum`` is how each budget's optimum is read (hpsearch.scaling.optimum); a finished ladder can be
    refitted with another by --resume."""
    from hpsearch.sweep import run_sweep, stop_if_interrupted

    if optimum is not None:  # a ScalingError: one line and exit 2, like every HPSearchError
        scaling.check_method(optimum)

    space = None
    if not opts.resume:
        if not (budgets and lrs and batch_sizes and seeds):
            raise SweepError("hpsearch scale needs --budgets, --lrs and --batch-sizes (or --name NAME --resume)")
        space = ladder_space(budgets=budgets, lrs=lrs, batch_sizes=batch_sizes, seeds=seeds,
                             warmup_fraction=warmup_fraction, schedule=schedule, context_len=_context_len(opts))
    ladder = run_sweep(replace(opts, mode="grid", num_samples=1), space=space, log=log, command="scale")
    stop_if_interrupted(ladder, "scale")  # an interrupted ladder fits nothing
    meta = json.loads((ladder.sweep_dir / "sweep.json").read_text())
    base = PretrainConfig.from_dict(meta["base_config"], source=f"{ladder.sweep_dir}/sweep.json")
    ladder_space_ = parse_space(meta["space"], source=f"{ladder.sweep_dir}/sweep.json")
    seeds = list(ladder_space_.axes["seed"].values)
    fixed = ladder_space_.fixed
    wsd = bool(base.train.cooldowns)
    warmup_fraction = fixed.get("warmup_fraction") or warmup_fraction
    schedule_fixed = ({k: fixed[k] for k in ("schedule", "warmup_steps", "warmup_fraction")} if wsd
                      else {"warmup_fraction": warmup_fraction})
    if base.eval.eval_batch_size:  # the verification is scored on the ladder's validation windows
        schedule_fixed["eval_batch_size"] = base.eval.eval_batch_size

    if optimum is None:  # a resumed ladder keeps the reading it was fitted with, a new one takes the default
        fitted = ladder.sweep_dir / SCALING_FILE
        optimum = (json.loads(fitted.read_text()).get("optimum", "near-optimal") if fitted.is_file()
                   else scaling.DEFAULT_METHOD)
    table = scaling_table(ladder.trials, base, ladder.curves)
    atomic_write_text(ladder.sweep_dir / "scaling.csv", table.to_csv(index=False))
    try:
        noise = scaling.seed_noise(table)
        tol = scaling.tolerance_from_noise(noise)
        fit = scaling.fit_power_laws(table, tol=tol, model=base.model, n_boot=n_boot, method=optimum)
    except ValueError as exc:
        raise SweepError(f"{ladder.sweep_dir}: cannot fit the ladder ({exc})") from None
    record = {"seed_noise_rel_std": noise, "tolerance": tol, "optimum": optimum, "fit": fit_record(fit),
              "n_boot": n_boot, "flops_per_token": fit.flops_per_token, "model": base.to_dict()["model"],
              "warmup_fraction": warmup_fraction, "budgets": sorted(table["budget_tokens"].unique().tolist()),
              "schedule": base.train.schedule, "ladder_tokens": ladder_tokens(ladder.trials, base, ladder.curves)}
    if wsd:
        record.update(warmup_steps=base.train.warmup_steps, decay_fraction=base.train.decay_fraction,
                      decay_shape=base.train.decay_shape)

    if verify and table["budget_tokens"].nunique() >= 3:
        record["holdout"] = _verify(opts, ladder.name, table, base, tol, seeds, schedule_fixed, n_boot, optimum,
                                    log)
    elif verify:
        record["holdout"] = None
        log("verification skipped: it holds out the largest budget, so it needs 3 or more budgets")

    atomic_write_text(ladder.sweep_dir / SCALING_FILE, json.dumps(plain_tree(record), indent=2))
    scaling.plot_scaling(table, fit, ladder.sweep_dir / "scaling.png", model=base.model, tol=tol)
    log("")
    log(f"the ladder trained {record['ladder_tokens']:,} tokens ({base.train.schedule})")
    log(f"seed-to-seed noise {noise:.3%} (relative std) -> near-optimal tolerance {tol:.3%}")
    log(fit.summary())
    if record.get("holdout"):
        h = record["holdout"]
        log(f"held-out budget {h['budget_tokens']:,}: predicted lr {h['predicted_lr']:.3g} (measured optimum "
            f"{h['measured_lr']:.3g}), batch {h['predicted_batch_tokens']:,.0f} tokens (measured "
            f"{h['measured_batch_tokens']:,.0f}); scaling_law_loss_gap {h['loss_gap']:.4f}")
    log(f"wrote {ladder.sweep_dir / SCALING_FILE}, scaling.csv and scaling.png")
    return ScaleOutcome(ladder.sweep_dir, table, fit, record)


def _verify(opts, name, table, base, tol, seeds, schedule, n_boot, method, log) -> dict:
    """Fit without the largest budget, train its predicted optimum there for real, compare with the grid."""
    from hpsearch.sweep import run_sweep, stop_if_interrupted

    largest = int(table["budget_tokens"].max())
    held = scaling.holdout(table, tol=tol, model=base.model, n_boot=n_boot, method=method)
    lr = float(held["predicted_lr"])
    batch = max(1, round(held["predicted_batch_tokens"] / base.model.context_len))
    verify_name = f"{name}-verify" + ("" if method == "near-optimal" else f"-{method}")  # as before vertex came
    verify_dir = Path(opts.results_dir) / verify_name
    # the ladder's own recorded config (model, data, recipe), not this command's flags: a --resume that
    # refits a finished ladder gives none of them
    config = ladder_config(Path(opts.results_dir) / name, base)
    vopts = replace(opts, name=verify_name, mode="grid", num_samples=1, config=str(config), data=None,
                    tokenizer=None, resume=(verify_dir / "sweep.json").is_file())
    log(f"verifying: lr {lr:.3g}, batch {batch} at the held-out budget {largest:,} over seeds {seeds}")
    out = run_sweep(vopts, space=verify_space(budget=largest, lr=lr, batch_size=batch, seeds=seeds,
                                              schedule=schedule), log=log, command="scale")
    stop_if_interrupted(out, "scale", name)
    losses = pd.to_numeric(out.trials.loc[out.trials["status"].isin(RANKED), "final_val_loss"], errors="coerce")
    predicted_loss = float(losses.mean()) if len(losses) and losses.notna().all() else math.inf
    held = scaling.holdout(table, tol=tol, model=base.model, predicted_loss=predicted_loss, n_boot=n_boot,
                           method=method)
    held.pop("fit", None)
    # the grid's best is compared seed-averaged, like the predicted config's loss
    at = table[table["budget_tokens"] == largest]
    grid_best = at.groupby(["peak_lr", "batch_size"])["loss"].mean().min()
    held.update({"budget_tokens": largest, "verify_sweep": verify_name, "predicted_batch_size": batch,
                 "predicted_loss": predicted_loss, "grid_best_loss_seed_mean": float(grid_best),
                 "scaling_law_loss_gap": (predicted_loss - grid_best) / grid_best})
    held["loss_gap"] = held["scaling_law_loss_gap"]
    return held


def ladder_config(sweep_dir: Path, base: PretrainConfig) -> Path:
    """The ladder's recorded config as a file in its directory (ladder-config.yaml), for runs of single
    configs at its budgets; without its cooldown branches, which are the ladder's, not theirs."""
    path = sweep_dir / "ladder-config.yaml"
    atomic_write_text(path, replace(base, train=replace(base.train, cooldowns=None)).to_yaml())
    return path


def _context_len(opts: SweepOptions) -> int:
    """The ladder's context length: its --config's, else its --model preset's."""
    from trainables.config import load_config
    from trainables.model_config import preset_config

    return (load_config(opts.config).model if opts.config else preset_config(opts.model)).context_len


def fit_record(fit: scaling.ScalingFit) -> dict:
    """The fitted laws as plain numbers (scaling.json); the bootstrap samples stay out."""
    def law(p: scaling.PowerLaw) -> dict:
        return {"coef": p.coef, "exponent": p.exponent, "coef_ci": list(p.coef_ci), "exponent_ci": list(p.exponent_ci)}

    return {"lr": law(fit.lr), "batch_tokens": law(fit.batch), "tolerance": fit.tol, "notes": list(fit.notes),
            "optima": fit.optima.to_dict("records")}
