"""The tuning playbook's checks on a finished sweep; pure functions of tables and numbers.

    edge      the best value of a numeric axis sits on the edge of its range: widen the range
    failures  too many trials diverged or errored: the space is too wide or the code has a bug
    reruns    the winner's lead over the runner-up, against the noise between seeds

Each returns a `Check` whose message is one line for the summary, whether or not it fired.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.report.data import fmt, is_finite_number, is_number
from hpsearch.results import ranked
from search_spaces import Dist, LogUniform, Space
from trainables.status import FAILED

EDGE_FRACTION = 0.05
"""A continuous axis' best value within 5% of either end of its range (log space for loguniform)."""
FAILURE_THRESHOLD = 0.2
"""More than 20% diverged or errored trials: the space is too wide or the code has a bug."""


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


def run_checks(trials: pd.DataFrame, space: Space) -> list[Check]:
    """One "edge" Check per numeric axis (when a best trial exists), then the "failures" Check."""
    best = ranked(trials)
    checks = []
    if len(best):
        top = best.iloc[0]
        for axis, dist in space.axes.items():
            if axis in top.index and (check := edge_check(axis, dist, top[axis])) is not None:
                checks.append(check)
    checks.append(failures_check(trials))
    return checks


def edge_check(axis: str, dist: Dist, value: Any) -> Check | None:
    """Whether the best ``value`` lies on the edge of the axis' range; None for non-numeric axes.

    Grids and choices need 3 or more numeric values (with two, every value is an edge).
    """
    if not is_finite_number(value):
        return None
    v = float(value)
    if dist.discrete:
        if not all(map(is_number, dist.values)) or len(values := sorted({float(x) for x in dist.values})) < 3:
            return None
        where = "lower" if v <= values[0] else "upper" if v >= values[-1] else None
        shown = "[" + ", ".join(fmt(x) for x in dist.values) + "]"
    else:
        low, high = float(dist.low), float(dist.high)
        log = isinstance(dist, LogUniform) and low > 0 and v > 0
        lo, hi, x = (math.log(low), math.log(high), math.log(v)) if log else (low, high, v)
        if hi <= lo:
            return None
        frac = (x - lo) / (hi - lo)
        where = "lower" if frac <= EDGE_FRACTION else "upper" if frac >= 1 - EDGE_FRACTION else None
        shown = f"[{fmt(dist.low)}, {fmt(dist.high)}]"
    if where is None:
        return Check("edge", False, f"{axis}: best value {fmt(value)} lies inside {shown}", axis)
    way = "downward" if where == "lower" else "upward"
    return Check("edge", True, f"{axis}: best value {fmt(value)} is at the {where} edge of {shown} "
                               f"— widen the range {way}", axis)


def failures_check(trials: pd.DataFrame) -> Check:
    """The fraction of all trials that diverged or errored; fires above FAILURE_THRESHOLD."""
    n = len(trials)
    failed = int(trials["status"].isin(FAILED).sum())
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


def _finite(xs: Sequence[float]) -> np.ndarray:
    a = np.asarray(list(xs), dtype=float)
    return a[np.isfinite(a)]


def _mean_std(a: np.ndarray) -> str:
    if len(a) == 0:
        return "no finite loss"
    std = f"{a.std(ddof=1):.4f}" if len(a) > 1 else "?"
    return f"{a.mean():.4f} ± {std} (n={len(a)})"
