"""Seed a new Optuna-mode sweep with an earlier sweep's finished trials (``--warm-start NAME``).

Ray's ``Tuner.restore`` continues a sweep only with the same space. Widening an axis whose best value
sat on the edge should cost only the new points: the earlier sweep's completed trials whose values lie
inside the new space are told to the new sweep's sampler before it proposes anything (Optuna trials
marked ``warm_start``), and a proposal of one of them is answered with its earlier loss instead of
training again (:class:`hpsearch.searchers.StatusAwareOptunaSearch`).

Losses are only comparable when everything but the searched values is the same, so the earlier sweep
must have the same base config (model, data, budget, schedule fixed values, evaluation) apart from the
axes of either space; anything else is refused with the keys that differ.
"""

from __future__ import annotations

import math
from pathlib import Path

from hpsearch import results as res
from search_spaces import Space
from trainables.config import PretrainConfig
from trainables.errors import SweepError
from trainables.files import plain
from trainables.status import COMPLETED


def _flat(cfg: dict) -> dict:
    return {f"{section}.{k}": v for section, body in cfg.items() for k, v in (body or {}).items()}


def warm_points(earlier_dir: Path, base: PretrainConfig, space: Space) -> list[tuple[dict, float]]:
    """[(values, best_val_loss)] of the earlier sweep's completed trials that lie inside ``space``."""
    name = earlier_dir.name
    if not (earlier_dir / "sweep.json").is_file():
        raise SweepError(f"--warm-start {name}: no sweep named {name} in {earlier_dir.parent}; "
                         f"list them with `hpsearch ls --results-dir {earlier_dir.parent}`")
    try:
        trials, _, meta = res.load(earlier_dir)
    except SweepError as exc:
        raise SweepError(f"--warm-start {name}: {exc}") from None
    earlier_axes = set(meta.get("space", {}).get("axes", {}))
    searched = set(space.axes) | earlier_axes
    theirs, ours = _flat(meta.get("base_config") or {}), _flat(base.to_dict())
    differ = sorted(k for k in set(theirs) | set(ours)
                    if k.split(".", 1)[1] not in searched and theirs.get(k) != ours.get(k))
    if differ:
        shown = ", ".join(f"{k} ({theirs.get(k)!s:.40} there, {ours.get(k)!s:.40} here)" for k in differ[:3])
        raise SweepError(f"--warm-start {name}: its losses are not comparable with this sweep's, whose base config "
                         f"differs in {shown}{' and more' if len(differ) > 3 else ''}; warm-start from a sweep "
                         "with the same model, data, budget and fixed values")
    missing = [a for a in space.axes if a not in earlier_axes and a not in trials.columns]
    if missing:
        raise SweepError(f"--warm-start {name}: it did not search {', '.join(missing)}, so its trials have no "
                         "value for that axis here; warm-start from a sweep that searched it (or fix it in the space)")
    points = []
    for _, row in trials[trials["status"] == COMPLETED].iterrows():
        loss = float(row["best_val_loss"])
        values = {a: plain(row[a]) for a in space.axes if a in row}
        if math.isfinite(loss) and len(values) == len(space.axes) and all(
                space.axes[a].contains(v) for a, v in values.items()):
            points.append((values, loss))
    return points
