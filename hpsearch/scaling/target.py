"""A fitted ladder applied: the larger run's peak LR, batch and steps, and the fit saved beside a ladder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.scaling.fit import ScalingFit, fit_power_laws
from hpsearch.scaling.laws import (ScalingError, _finite, _positive, compute, deepseek_batch_tokens, deepseek_lr,
                                   flops_per_token, non_embedding_params, step_law_batch_tokens, step_law_lr)
from trainables.config import PretrainConfig
from trainables.errors import SweepError, first_line
from trainables.model_config import GPTConfig


MAX_EXTRAPOLATION = 100.0
"""Warn when the target's compute exceeds the largest measured budget's by more than this factor.

Published ladders do extrapolate 10-1000x (DeepSeek LLM fitted up to ~3e20 FLOPs and trained at
~1e24), but with 5-10 budgets of real-size models spanning 2-3 decades. A proxy ladder here spans
one or two decades, and a rule of thumb for any fit is not to reach further beyond the data than the
data spans: two decades is that limit. An exponent error of 0.05 also becomes a factor of
100^0.05 = 1.26 (a third of an octave, inside a typical LR basin) at 100x, but 1.6x at 10,000x.
"""


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
    fit = fit_power_laws(table, tol=record["tolerance"], model=base.model, n_boot=record.get("n_boot", 1000),
                         method=record.get("optimum", "near-optimal"))  # ladders fitted before --optimum
    return fit, record, base
