"""Exhaustive grid of short nano runs on the embedded corpus -> bench/grid_nano.csv (committed).

The ground truth search_gap.py measures searches against. One CSV row per evaluation of each
configuration (so a replay can feed ASHA the same intermediate losses). Built with the product's own
grid sweep (`run_sweep`, 2 trials of 1 CPU at a time), one chunk per peak_lr value; the CSV is
rewritten after each chunk, so an interrupted build resumes where it stopped.

    python bench/grid.py            # the full grid: 64 configurations, ~12 min on 2 quiet cores
    python bench/grid.py --quick    # 2 configurations into /tmp, to check the script runs
"""

from __future__ import annotations

import argparse
import shutil
import time

import common  # noqa: F401  (environment first)
import pandas as pd
import yaml

from common import BENCH, RUNS_DIR, start_ray, stamp

GRID_CSV = BENCH / "grid_nano.csv"
MODEL, MAX_TOKENS, EVAL_FREQ, EVAL_ITER = "nano", 12288, 8, 3  # 48 steps of 8 x 32 tokens, 6 evaluations
AXES = {
    "peak_lr": [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128],
    "warmup_steps": [2, 10],
    "dropout": [0.0, 0.1],
    "max_norm": [0.5, 2.0],
}
# batch_size is fixed: the product evaluates eval_iter batches of batch_size windows, so trials with
# different batch sizes would be scored on different validation subsets.
FIXED = {"batch_size": 8, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}
COLUMNS = [*AXES, "status", "step", "tokens_seen", "val_loss", "train_loss"]


def space_file(lr: float, axes: dict, tag: str) -> str:
    path = RUNS_DIR / f"grid-space-{tag}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    rest = {k: {"grid": v} for k, v in axes.items() if k != "peak_lr"}
    path.write_text(yaml.safe_dump({"name": f"grid-{tag}", "axes": rest, "fixed": {**FIXED, "peak_lr": lr}}))
    return str(path)


def run_chunk(lr: float, axes: dict, tag: str, max_tokens: int) -> pd.DataFrame:
    from hpsearch.sweep import SweepOptions, run_sweep

    opts = SweepOptions(space=space_file(lr, axes, tag), mode="grid", name=f"grid-{tag}-{int(time.time())}",
                        model=MODEL, max_tokens_per_trial=max_tokens, eval_freq=EVAL_FREQ, eval_iter=EVAL_ITER,
                        cpus_per_trial=1.0, max_concurrent=2, results_dir=str(RUNS_DIR), dashboard=False,
                        verbose=0, precision="fp32")  # the same ground truth on every CPU
    out = run_sweep(opts, log=lambda line: None)
    shutil.rmtree(RUNS_DIR / opts.name, ignore_errors=True)  # the CSV keeps what matters
    trials = out.trials.assign(peak_lr=lr)
    rows = out.curves.merge(trials[["trial_id", "status", *axes]], on="trial_id")
    return rows[COLUMNS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 configurations into /tmp, not the committed CSV")
    args = ap.parse_args()
    axes, csv, max_tokens = AXES, GRID_CSV, MAX_TOKENS
    if args.quick:
        axes = {"peak_lr": [0.008], "warmup_steps": [2], "dropout": [0.0, 0.1], "max_norm": [1.0]}
        csv, max_tokens = RUNS_DIR / "grid_quick.csv", 4096
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=COLUMNS)
    start_ray()
    for i, lr in enumerate(axes["peak_lr"]):
        if (done["peak_lr"] == lr).any():
            continue
        t0 = time.perf_counter()
        rows = run_chunk(lr, axes, f"lr{i}", max_tokens)
        done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
        tmp = csv.with_suffix(".tmp")
        done.to_csv(tmp, index=False)
        tmp.replace(csv)
        best = rows.groupby(list(axes))["val_loss"].min()
        print(f"{stamp()} peak_lr {lr:g}: {best.size} configs in {time.perf_counter() - t0:.0f} s, "
              f"best val loss {best.min():.4f}; {done.groupby(list(axes)).ngroups} configs in {csv.name}",
              flush=True)
    n = done.groupby(list(axes)).ngroups
    print(f"grid complete: {n} configurations, {len(done)} evaluations in {csv}")


if __name__ == "__main__":
    main()
