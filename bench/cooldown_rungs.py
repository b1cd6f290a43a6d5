"""Would a short LR cooldown make ASHA's rungs predict the end? (issue 18, item 3)

At a rung ASHA compares trials by their loss there, mid-schedule: a high learning rate still at its
peak looks good early, a lower one that ends best looks bad (on the docs problem the grid's best
config ranks 35th of 45 at the first evaluation). The candidate score: the validation loss after
``k`` more steps whose LR falls linearly to min_lr, from a copy of the run
(`trainables.pretrain.Run.cooldown_loss`; the run itself goes on unchanged).

For every trained point of each problem's grid (bench/problems.py), this re-trains the run with the
product's `Run` (fp32, one thread, two processes) and scores every evaluation but the last both ways;
the raw loss is checked against the committed grid CSV. Then, for a first rung at each evaluation:

- Spearman's rank correlation with the final loss, raw and cooled,
- configs ASHA would stop there (rf 3: all but the best third) that finish within 1 % of the best,
- the cost: the cooldown's extra tokens per judged trial, as a share of a full trial.

    python bench/cooldown_rungs.py [--problems nano code docs] [--fraction 0.1]   # ~16 min on 2 cores
    python bench/cooldown_rungs.py --schedule wsd     # the same on warmup-stable-decay trials (issue 26)
Writes bench/cooldown_<problem>.csv (the scores, for replays) and the figures to bench/results.json.

With ``--schedule wsd`` every point trains on a WSD schedule instead (train.decay_fraction 0.2, 1-sqrt),
so its raw loss has no grid CSV to be checked against; points whose warmup runs into the decay are
left out (the product would skip them), and the scores go to bench/cooldown_<problem>_wsd.csv.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor

import common  # noqa: F401  (environment first)
import pandas as pd

from common import BENCH, record, stamp
from problems import PROBLEMS, add_problems_arg, subset_tag


def score_point(args: tuple) -> list[dict]:
    """(problem name, hyperparameters, cooldown steps) -> one row per evaluation: raw and cooled loss."""
    import torch

    from trainables.corpus import load_tokens
    from trainables.pretrain import Run

    from trainables.errors import ConfigError

    name, hp, k, schedule = args
    torch.set_num_threads(1)
    problem = PROBLEMS[name]
    try:
        run = Run(problem.base().with_hparams({**hp, "schedule": schedule}),
                  load_tokens(problem.corpus_path(), log=None).tokens)
    except ConfigError:  # a WSD decay the warmup runs into: the product skips such a point
        return []
    rows = []

    def on_eval(metrics: dict, save) -> None:
        cooled = metrics["val_loss"] if metrics["training_complete"] else run.cooldown_loss(k)
        rows.append({**hp, "tokens_seen": metrics["tokens_seen"], "val_loss": metrics["val_loss"], "cooled": cooled})

    run.train(on_eval=on_eval, log=None)
    return rows


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def judge(scores: pd.DataFrame, keys: list[str], rf: float = 3.0, within: float = 0.01) -> list[dict]:
    """For a first rung at each evaluation but the last: rank correlation and wrong stops, raw vs cooled."""
    final = scores.sort_values("tokens_seen").groupby(keys)["val_loss"].last()
    near = set(final[final <= final.min() * (1 + within)].index)
    keep = max(1, math.ceil(len(final) / rf))
    out = []
    for tokens, at in scores[scores["tokens_seen"] < scores["tokens_seen"].max()].groupby("tokens_seen"):
        at = at.set_index(keys)
        row = {"rung_tokens": int(tokens), "near_best": len(near)}
        for col in ("val_loss", "cooled"):
            label = "raw" if col == "val_loss" else "cooled"
            stopped = set(at.index) - set(at[col].nsmallest(keep).index)
            row[f"spearman_{label}"] = round(spearman(at[col], final[at.index]), 3)
            row[f"wrongly_stopped_{label}"] = len(stopped & near)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_problems_arg(ap)
    ap.add_argument("--fraction", type=float, default=0.1, help="cooldown length as a fraction of the run's steps")
    ap.add_argument("--schedule", choices=("cosine", "wsd"), default="cosine", help="the trials' LR schedule")
    args = ap.parse_args()
    wsd = args.schedule == "wsd"
    figures, details = {}, {}
    for name in args.problems:
        problem = PROBLEMS[name]
        grid = pd.read_csv(problem.csv)
        keys = list(problem.axes)
        base = problem.base()
        steps = problem.max_tokens // (base.train.batch_size * base.model.context_len)
        k = max(1, round(args.fraction * steps))
        points = [problem.params(p) for p in grid.groupby(keys).size().index]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(2) as pool:
            rows = [r for got in pool.map(score_point, [(name, p, k, args.schedule) for p in points]) for r in got]
        scores = pd.DataFrame(rows)
        scores.to_csv(BENCH / f"cooldown_{name}{'_wsd' if wsd else ''}.csv", index=False)
        points = scores.groupby(keys).size().index
        if wsd:
            drift = math.nan  # no WSD grid to check against
        else:
            check = scores.merge(grid, on=[*keys, "tokens_seen"], suffixes=("", "_grid"))
            drift = float((check["val_loss"] - check["val_loss_grid"]).abs().max())
        rungs = judge(scores, keys)
        cost = k * base.train.batch_size * base.model.context_len / problem.max_tokens
        print(f"{stamp()} == {name}: {len(points)} points, cooldown {k} of {steps} steps (+{cost:.0%} of a trial per "
              f"rung judged), {time.perf_counter() - t0:.0f} s; raw loss vs the grid CSV: max |diff| {drift:.1e}")
        for r in rungs:
            print(f"  first rung at {r['rung_tokens']:>6,} tokens: Spearman raw {r['spearman_raw']:.3f} -> cooled "
                  f"{r['spearman_cooled']:.3f}; wrongly stopped (of {r['near_best']} within 1 %) raw "
                  f"{r['wrongly_stopped_raw']} -> cooled {r['wrongly_stopped_cooled']}")
        details[name] = {"cooldown_steps": k, "run_steps": steps, "extra_share_per_rung": round(cost, 4),
                         "max_abs_diff_vs_grid": drift, "rungs": rungs}
        figures[f"cooldown_rungs_{'wsd_' if wsd else ''}{name}_spearman_gain"] = round(
            sum(r["spearman_cooled"] - r["spearman_raw"] for r in rungs) / len(rungs), 3)
    record(figures, details, tag=subset_tag(args.problems), variant=" --schedule wsd" if wsd else "")


if __name__ == "__main__":
    main()
