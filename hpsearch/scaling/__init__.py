"""Budget transfer: fit how the optimal learning rate and batch size scale with compute.

A *ladder* is a set of small sweeps of one proxy model at several token budgets D. Each budget's optimum
is read one of two ways (:mod:`.optimum`): ``vertex``, the minimum of a quadratic in log LR and log batch
fitted to all its trials (Chinchilla's Approach 2 reading of a profile, Hoffmann et al. 2022, sec. 3.2), or
``near-optimal``, the geometric mean of the trials within a noise tolerance of the best loss (DeepSeek LLM,
sec. 3.1: a band of near-optimal points is less noisy than the single best point, whose position jumps
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
  or a set that holds every trial, is reported in the fit's notes: widen the grid there. The vertex
  uses every trial instead, but assumes the loss is a bowl in log LR and log batch over the grid; a
  vertex outside the grid is read on its edge.
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
:func:`plot_scaling`. Rooms: :mod:`.laws` (compute, reference laws), :mod:`.table` (noise, near-optimal
set, per-budget optima), :mod:`.optimum` (the two readings of one budget's optimum), :mod:`.fit` (power
laws, hold-out), :mod:`.target` (the larger run, the saved fit) and :mod:`.plot`.
"""

from hpsearch.scaling.fit import CI_PERCENTILES, PowerLaw, ScalingFit, fit_power_laws, holdout
from hpsearch.scaling.laws import (ScalingError, compute, deepseek_batch_tokens, deepseek_lr, flops_per_token,
                                   non_embedding_params, step_law_batch_tokens, step_law_lr)
from hpsearch.scaling.optimum import DEFAULT_METHOD, METHODS, check_method
from hpsearch.scaling.plot import plot_scaling
from hpsearch.scaling.table import (CONFIG_COLUMNS, TABLE_COLUMNS, budget_optima, clean_table, near_optimal,
                                    nearest_loss, seed_noise, tolerance_from_noise)
from hpsearch.scaling.target import MAX_EXTRAPOLATION, SCALING_FILE, load_fit, target_run

__all__ = [
    "CI_PERCENTILES", "CONFIG_COLUMNS", "DEFAULT_METHOD", "MAX_EXTRAPOLATION", "METHODS", "SCALING_FILE",
    "TABLE_COLUMNS", "PowerLaw", "ScalingError", "ScalingFit", "check_method", "budget_optima", "clean_table",
    "compute", "deepseek_batch_tokens", "deepseek_lr", "fit_power_laws", "flops_per_token", "holdout", "load_fit",
    "near_optimal", "nearest_loss", "non_embedding_params", "plot_scaling", "seed_noise", "step_law_batch_tokens",
    "step_law_lr", "target_run", "tolerance_from_noise",
]
