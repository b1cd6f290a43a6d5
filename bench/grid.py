"""Exhaustive grid of one benchmark problem -> bench/grid_<problem>.csv and .json (committed).

The ground truth search_gap.py and rung_quality.py measure searches against (the problems are in
bench/problems.py). One CSV row per evaluation of each trained configuration (so a replay can feed
ASHA the same intermediate losses); statically invalid points are excluded by the product's grid and
have no rows. Built with the product's own grid sweep (`run_sweep`, 2 trials of 1 CPU at a time), one
chunk per peak_lr value; the CSV is rewritten after each chunk, so an interrupted build resumes where
it stopped. The .json beside it records the corpus's sha256 and token count.

    python bench/grid.py --problem nano   # 64 configurations, ~12 min on 2 quiet cores
    python bench/grid.py --problem code   # 48 points (32 valid), ~8 min
    python bench/grid.py --problem docs   # 45 points, ~12 min
    python bench/grid.py --problem pkgs   # 52 points (13 LRs half an octave apart), ~15 min
    python bench/grid.py --problem changes   # 48 points of the small preset, ~51 min
    python bench/grid.py --problem pkgs2x    # 112 points of pkgs' trial, ~23 min
    python bench/grid.py --quick [--problem NAME]   # 2 configurations into /tmp, to check the script runs

A problem's continuous axes (pkgs: peak_lr, searched as a range by search_gap.py) are trained here on
their grid values only: the ground truth a replayed trial snaps its sampled value to.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import time

import common  # noqa: F401  (environment first)
import pandas as pd
import yaml

from common import RUNS_DIR, start_ray, stamp
from problems import PROBLEMS, Problem, corpus_sha256

STATS = ["status", "step", "tokens_seen", "val_loss", "train_loss"]


def run_chunk(problem: Problem, lr: float, tag: str) -> pd.DataFrame:
    from hpsearch.sweep import SweepOptions, run_sweep

    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    space, config = RUNS_DIR / f"grid-space-{tag}.yaml", RUNS_DIR / f"grid-config-{tag}.yaml"
    rest = {k: {"grid": v} for k, v in problem.axes.items() if k != "peak_lr"}
    space.write_text(yaml.safe_dump({"name": f"grid-{tag}", "axes": rest, "fixed": {"peak_lr": lr}}))
    config.write_text(problem.base().to_yaml())
    opts = SweepOptions(space=str(space), config=str(config), data=problem.corpus_path(), mode="grid",
                        name=f"grid-{tag}-{int(time.time())}", max_tokens_per_trial=problem.max_tokens,
                        eval_freq=problem.eval_freq, eval_iter=problem.eval_iter, cpus_per_trial=1.0,
                        max_concurrent=2, results_dir=str(RUNS_DIR), dashboard=False, verbose=0,
                        precision="fp32")  # the same ground truth on every CPU
    out = run_sweep(opts, log=lambda line: None)
    shutil.rmtree(RUNS_DIR / opts.name, ignore_errors=True)  # the CSV keeps what matters
    trials = out.trials.assign(peak_lr=lr)
    trained = trials[trials["status"] != "skipped"]
    rows = out.curves.merge(trained[["trial_id", "status", *rest]], on="trial_id")
    return rows.assign(peak_lr=lr)[[*problem.axes, *STATS]]


def write_meta(problem: Problem) -> None:
    from trainables.corpus import load_tokens

    n = len(load_tokens(problem.corpus_path(), log=None).tokens)
    meta = {"problem": problem.what, "corpus_sha256": corpus_sha256(problem), "corpus_tokens": n,
            "python": platform.python_version(), "base_config": problem.base().to_dict()}
    problem.meta_path.write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", choices=PROBLEMS, default="nano")
    ap.add_argument("--quick", action="store_true",
                    help="2 configurations of the problem (its middle LR, the last axis's first two values, the "
                         "first value of the others) at 4,096 tokens into /tmp, not the committed CSV")
    args = ap.parse_args()
    problem, csv = PROBLEMS[args.problem], PROBLEMS[args.problem].csv
    if args.quick:
        lrs, last = problem.axes["peak_lr"], list(problem.axes)[-1]
        axes = {a: [lrs[len(lrs) // 2]] if a == "peak_lr" else list(v[:2] if a == last else v[:1])
                for a, v in problem.axes.items()}
        problem = dataclasses.replace(problem, axes=axes, max_tokens=4096)
        csv = RUNS_DIR / f"grid_quick_{problem.name}.csv"
        csv.unlink(missing_ok=True)  # a check starts afresh
    else:
        write_meta(problem)
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=[*problem.axes, *STATS])
    start_ray(worker_nice=0)
    for i, lr in enumerate(problem.axes["peak_lr"]):
        if (done["peak_lr"] == lr).any():
            continue
        t0 = time.perf_counter()
        rows = run_chunk(problem, lr, f"{problem.name}-lr{i}")
        done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
        tmp = csv.with_suffix(".tmp")
        done.to_csv(tmp, index=False)
        tmp.replace(csv)
        best = rows.groupby(list(problem.axes))["val_loss"].min()
        print(f"{stamp()} {problem.name} peak_lr {lr:g}: {best.size} configs in {time.perf_counter() - t0:.0f} s, "
              f"best val loss {best.min():.4f}; {done.groupby(list(problem.axes)).ngroups} configs in {csv.name}",
              flush=True)
    n = done.groupby(list(problem.axes)).ngroups
    print(f"grid complete: {n} configurations, {len(done)} evaluations in {csv}")


if __name__ == "__main__":
    main()
