"""A finished sweep as the report reads it, and the values in its tables.

`load_sweep` reads the directory once (via `hpsearch.results.load`) and parses what sweep.json
records into the project's own types: the search space (`search_spaces.Space`, with typed
distributions) and the base pretraining config (`trainables.config.PretrainConfig`). A trial's
hyperparameters become a runnable config with `trial_config`.

The helpers below turn trials-table cells (numpy scalars, floats standing in for ints after a NaN)
back into the values the space declared, and format them for messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpsearch import results
from search_spaces import Dist, IntRange, Space, parse_space
from trainables.config import PretrainConfig
from trainables.files import plain


@dataclass(frozen=True)
class Sweep:
    """One finished sweep directory, read and parsed."""

    dir: Path
    trials: pd.DataFrame
    """trials.parquet: one row per trial, a column per axis."""
    curves: pd.DataFrame | None
    """curves.parquet (one row per evaluation), or None when absent or empty."""
    ranked: pd.DataFrame
    """The ranked trials, best first (see `hpsearch.results.ranked`)."""
    meta: dict
    """sweep.json as written by `hpsearch sweep`."""
    space: Space
    base: PretrainConfig
    """The config every trial started from before its hyperparameters were applied."""

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "sweep"))

    @property
    def mode(self) -> str:
        return str(self.meta.get("mode", ""))


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read ``sweep_dir``; SweepError, SpaceError or ConfigError naming the file if it is unusable."""
    d = Path(sweep_dir)
    trials, curves, meta = results.load(d)
    where = d / "sweep.json"
    return Sweep(
        dir=d,
        trials=trials,
        curves=curves if len(curves) else None,
        ranked=results.ranked(trials),
        meta=meta,
        space=parse_space(meta["space"], source=f"{where} space"),
        base=PretrainConfig.from_dict(meta.get("base_config") or {}, source=f"{where} base_config"),
    )


def trial_hparams(space: Space, trial: pd.Series) -> dict[str, Any]:
    """The trial's value of every axis it has (non-null), as the space declared it."""
    return {axis: native(dist, trial[axis]) for axis, dist in space.axes.items()
            if axis in trial.index and pd.notna(trial[axis])}


def trial_config(base: PretrainConfig, space: Space, trial: pd.Series, **overrides: Any) -> PretrainConfig:
    """``base`` with the trial's hyperparameters (then ``overrides``, e.g. seed=...) applied."""
    return base.with_hparams(trial_hparams(space, trial) | overrides,
                             source=f"trial {trial.get('trial_id', '?')}")


def dist_args(dist: Dist) -> list:
    """The distribution's YAML arguments, e.g. [0.0001, 0.01] for {loguniform: [1.0e-4, 1.0e-2]}."""
    return dist.to_yaml()[dist.kind]


# -- table values ---------------------------------------------------------------------------------
def native(dist: Dist, value: Any) -> Any:
    """A table value as the space declared it: int for int ranges, the listed value for grids."""
    if isinstance(dist, IntRange):
        return int(value)
    return match(value, dist.values) if dist.discrete else plain(value)


def match(value: Any, choices: Sequence) -> Any:
    """The listed choice equal to ``value`` (so 16.0 from a float column maps back to 16)."""
    value = plain(value)
    for c in choices:
        if c == value and (type(c) is bool) == (type(value) is bool):
            return c
    return value


def is_number(v: Any) -> bool:
    """int or float (numpy's too), not bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def is_finite_number(v: Any) -> bool:
    return is_number(v) and math.isfinite(float(v))


def fmt(v: Any) -> str:
    """A value for a message: floats in %g (0.0001, 1e-05), everything else as str."""
    v = plain(v)
    return f"{v:g}" if isinstance(v, float) else str(v)
