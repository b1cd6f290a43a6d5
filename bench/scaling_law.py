"""`scaling_law_loss_gap`: fit LR/batch laws on a budget ladder, predict the held-out largest budget.

    python bench/scaling_law.py                                   # embedded corpus (English docs)
    python bench/scaling_law.py --data stdlib --tag -code         # Python's standard library source (code)
    python bench/scaling_law.py --quick                           # the code path in a minute

It runs the product's `hpsearch scale` (one grid sweep over budget x peak_lr x batch_size x seed,
warmup 5 % of each run, cosine fitted to each budget), which fits log eta_opt and log B_opt against
log compute on all budgets but the largest, trains the predicted config at the largest budget for
real over the same seeds, and compares it with that budget's grid optimum (both seed-averaged):
gap = (loss(predicted) - loss(grid best)) / loss(grid best). Goal: <= 1 %.
"""

from __future__ import annotations

import argparse
import shutil
import sysconfig
import time

import common  # noqa: F401  (environment first)
from common import RUNS_DIR, loadavg, record, start_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="8000,16000,32000,64000")
    ap.add_argument("--lrs", default="2e-3,4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2")
    ap.add_argument("--batch-sizes", default="4,8,16")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--preset", default="nano")
    ap.add_argument("--data", default=None, help="a corpus path, 'stdlib' (Python's standard library "
                                                 "source, top-level modules) or none for the embedded corpus")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.quick:
        args.budgets, args.lrs, args.batch_sizes = "1024,2048,4096", "2e-3,8e-3,3.2e-2", "2,4"
    data, pattern = args.data, "**/*.txt"
    if data == "stdlib":
        data, pattern = sysconfig.get_paths()["stdlib"], "*.py"

    from hpsearch.options import SweepOptions
    from hpsearch.scale import run_scale

    start_ray(worker_nice=0)  # Ray starts workers at nice 15: on a shared machine they would only get leftovers
    name = f"scaling-law{args.tag}{'-quick' if args.quick else ''}"
    for d in (name, f"{name}-verify", f"{name}-verify-vertex"):
        shutil.rmtree(RUNS_DIR / d, ignore_errors=True)
    config = RUNS_DIR / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"model: {{preset: {args.preset}, dropout: 0.0}}\n"
                      "train: {initial_lr: 0.0, min_lr: 0.0, weight_decay: 0.1}\n"
                      "eval: {eval_freq: 50, eval_iter: 8}\n")
    opts = SweepOptions(name=name, config=str(config), data=data, data_pattern=pattern, results_dir=str(RUNS_DIR),
                        dashboard=False, verbose=0, cpus_per_trial=1.0, checkpoint_every=1000)
    ints = lambda s: [int(float(x)) for x in s.split(",")]  # noqa: E731
    t0, load0 = time.perf_counter(), loadavg()
    out = run_scale(opts, budgets=ints(args.budgets), lrs=[float(x) for x in args.lrs.split(",")],
                    batch_sizes=ints(args.batch_sizes), seeds=ints(args.seeds), log=print)
    wall = time.perf_counter() - t0
    held = out.record["holdout"] or {}
    figures = {"scaling_law_loss_gap": None if not held else round(held["scaling_law_loss_gap"], 5)}
    keep = ("budget_tokens", "predicted_lr", "measured_lr", "lr_octaves", "lr_within_ci", "predicted_batch_tokens",
            "measured_batch_tokens", "batch_octaves", "batch_within_ci", "predicted_batch_size", "predicted_loss",
            "grid_best_loss_seed_mean", "scaling_law_loss_gap", "nearest_loss")
    record(figures, {"holdout": {k: held.get(k) for k in keep}, "seed_noise_rel_std": out.record["seed_noise_rel_std"],
                     "tolerance": out.record["tolerance"], "fit": out.record["fit"], "budgets": args.budgets,
                     "lrs": args.lrs, "batch_sizes": args.batch_sizes, "seeds": args.seeds, "preset": args.preset,
                     "corpus": args.data or "embedded", "wall_s": round(wall, 1), "loadavg_start": load0},
           quick=args.quick, tag=args.tag)


if __name__ == "__main__":
    main()
