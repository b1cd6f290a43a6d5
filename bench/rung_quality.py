"""Do ASHA's rungs predict the end? Rank correlation at each rung and wrongly stopped configs (issue 18).

Reads each benchmark problem's committed ground truth (bench/grid_<problem>.csv, see bench/problems.py:
every evaluation of every trained configuration) and replays ASHA's decision at each rung
synchronously: a config's score at a rung is its validation loss at the first evaluation at or past
the rung; the best 1/rf go on. It reports, for three placements of the first rung: Tune's usual
max_t / rf^2, that but never before the space's longest warmup ends (the product's default until
2026-12-02 16:00), and the product's default now (half the trial, never before warmup ends:
hpsearch.searchers.default_grace):

- Spearman's rank correlation between the loss at each rung and the final loss,
- wrongly stopped: configs cut at a rung that would have finished within 1 % of the grid's best.

No training: it costs seconds. `python bench/rung_quality.py [--problems nano code docs] [--rf 3]`.
"""

from __future__ import annotations

import argparse
import math

import common  # noqa: F401  (environment first)
import pandas as pd

from common import record
from problems import PROBLEMS, add_problems_arg, subset_tag

from hpsearch.searchers import default_grace


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def rungs(grace: int, max_t: int, rf: float) -> list[int]:
    out, r = [], grace
    while r < max_t:
        out.append(int(r))
        r *= rf
    return out


def replay(curves: pd.DataFrame, keys: list[str], grace: int, max_t: int, rf: float, within: float = 0.01) -> dict:
    final = curves.sort_values("tokens_seen").groupby(keys)["val_loss"].last()
    best = final.min()
    near = set(final[final <= best * (1 + within)].index)
    alive = set(final.index)
    out = {"grace": grace, "rungs": []}
    for rung in rungs(grace, max_t, rf):
        at = curves[curves["tokens_seen"] >= rung].sort_values("tokens_seen").groupby(keys)["val_loss"].first()
        at = at[at.index.isin(alive)]
        rho = spearman(at, final[at.index])
        keep = set(at.nsmallest(max(1, math.ceil(len(at) / rf))).index)
        stopped = alive - keep
        out["rungs"].append({"rung_tokens": rung, "judged": len(at), "spearman": round(rho, 3),
                             "stopped": len(stopped), "wrongly_stopped": len(stopped & near)})
        alive = keep
    out["near_best"] = len(near)
    out["wrongly_stopped"] = sum(r["wrongly_stopped"] for r in out["rungs"])
    out["survivor_is_best"] = bool(final[list(alive)].min() == best)
    return out


def main() -> None:
    from hpsearch.sweep import max_warmup_tokens

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_problems_arg(ap)
    ap.add_argument("--rf", type=float, default=3.0)
    args = ap.parse_args()
    figures, details = {}, {}
    for name in args.problems:
        problem = PROBLEMS[name]
        curves = pd.read_csv(problem.csv)
        keys = list(problem.axes)
        max_t = int(curves["tokens_seen"].max())
        warmup_tokens = max_warmup_tokens(problem.base(), problem.space(), max_t)
        placements = {"rf2": max(1, int(max_t / args.rf ** 2)),
                      "warmup": max(1, min(max(int(max_t / args.rf ** 2), warmup_tokens), max_t - 1)),
                      "default": default_grace(max_t, warmup_tokens)}
        labels = {"rf2": "max_t/rf^2", "warmup": "max_t/rf^2, not before the longest warmup",
                  "default": "default: half the trial, not before the longest warmup"}
        got = {k: replay(curves, keys, g, max_t, args.rf) for k, g in placements.items()}
        print(f"== {name}: {problem.what}")
        for key, r in got.items():
            print(f"{labels[key]}: grace {r['grace']:,} tokens; {r['near_best']} configs within 1 % of the best")
            for x in r["rungs"]:
                print(f"  rung {x['rung_tokens']:>6,}: {x['judged']} judged, Spearman {x['spearman']:.3f}, "
                      f"{x['stopped']} stopped, {x['wrongly_stopped']} of them within 1 % of the best at the end")
            print(f"  wrongly stopped in all: {r['wrongly_stopped']}; the survivors include the best: "
                  f"{r['survivor_is_best']}")
            figures[f"asha_{name}_first_rung_spearman_{key}"] = r["rungs"][0]["spearman"]
            figures[f"asha_{name}_wrongly_stopped_{key}"] = r["wrongly_stopped"]
        details[name] = {**got, "csv": problem.csv.name}
    record(figures, details, tag=subset_tag(args.problems))


if __name__ == "__main__":
    main()
