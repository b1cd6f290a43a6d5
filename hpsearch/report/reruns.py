"""Seed reruns: retrain the best two configs over fresh seeds before trusting the ranking.

Real training, no Ray: each rerun is one `trainables.pretrain.pretrain` call on the sweep's base
config with the trial's hyperparameters and a new seed. The rows feed the "reruns" check.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from hpsearch.report.data import trial_config
from hpsearch.results import ranked
from search_spaces import Space
from trainables.config import PretrainConfig
from trainables.errors import first_line

COLUMNS = ["role", "trial_id", "seed", "best_val_loss", "error"]
ROLES = ("winner", "runner-up")


def rerun_top(trials: pd.DataFrame, space: Space, base: PretrainConfig, *, reruns: int,
              log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Retrain the best and runner-up configs with seeds seed+1 .. seed+reruns (seed: the trial's).

    Returns one row per run (COLUMNS); a failed run has a NaN loss and its error's first line.
    """
    from trainables.pretrain import pretrain

    rows = []
    for role, (_, trial) in zip(ROLES, ranked(trials).head(2).iterrows()):
        base_seed = trial_config(base, space, trial).train.seed
        for i in range(1, reruns + 1):
            seed = base_seed + i
            if log:
                log(f"report: rerun {role} {trial['trial_id']} with seed {seed} ({i}/{reruns})")
            loss, error = math.nan, ""
            try:
                loss = float(pretrain(trial_config(base, space, trial, seed=seed), log=None).best_val_loss)
            except Exception as exc:  # one failed seed must not lose the others
                error = first_line(f"{type(exc).__name__}: {exc}")
                if log:
                    log(f"report: rerun failed: {error}")
            rows.append({"role": role, "trial_id": str(trial["trial_id"]), "seed": seed,
                         "best_val_loss": loss, "error": error})
    return pd.DataFrame(rows, columns=COLUMNS)


def losses_by_role(runs: pd.DataFrame) -> dict[str, list[float]]:
    """{"winner": [...], "runner-up": [...]}: the rerun losses `seed_noise_check` compares."""
    return {role: runs.loc[runs["role"] == role, "best_val_loss"].tolist() for role in ROLES}
