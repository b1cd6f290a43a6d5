"""Issue 13, item 4: what a finished sweep leaves on disk, before and after its checkpoints are pruned.

Runs one real sweep with the product's `run_sweep` (nano model, embedded corpus, optuna-asha over the
demo space, trials checkpointing every 2 evaluations as a long sweep's trials do by the clock) with
pruning off (`keep_checkpoints` above the trial count), measures the sweep directory (`du`: bytes on
disk), then prunes with the product's own `hpsearch.footprint.prune_checkpoints` and the default
`--keep-checkpoints 3`, exactly as `collect_results` does at the end of every sweep, and measures
again. Goal (issue 13): a finished sweep costs <= 1 MB per trial plus the kept checkpoints.

    python bench/footprint.py            # 8 trials of 16k tokens, ~1-2 min on 2 cores; appends to bench/RESULTS.md
    python bench/footprint.py --quick    # 4 grid trials, figures to results.json runs only

The sweep's directory is deleted afterwards (scratch under /tmp/bench_runs).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from common import BENCH, RUNS_DIR, loadavg, record, start_ray, stamp  # first: pins the environment

KEEP = 3  # the product's default --keep-checkpoints
MB = 1e6


def disk_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` (du: allocated blocks, symlinks not followed)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def checkpoint_bytes(tune_dir: Path) -> int:
    return sum(disk_bytes(c) for c in tune_dir.glob("*/checkpoint_*") if c.is_dir() and not c.is_symlink())


def measure(sweep_dir: Path) -> dict:
    tune_dir = sweep_dir / "tune"
    trial_dirs = [d for d in tune_dir.iterdir() if d.is_dir() and not d.is_symlink()]
    per_trial = sorted(disk_bytes(d) for d in trial_dirs)
    return {"sweep_bytes": disk_bytes(sweep_dir), "checkpoint_bytes": checkpoint_bytes(tune_dir),
            "checkpoints": len(list(tune_dir.glob("*/checkpoint_*"))),
            "trial_dir_bytes_median": per_trial[len(per_trial) // 2], "trial_dir_bytes_max": per_trial[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 grid trials; figures to results.json runs only")
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()

    from hpsearch.footprint import prune_checkpoints
    from hpsearch.sweep import SweepOptions, run_sweep

    start_ray(worker_nice=0)  # Ray starts workers at nice 15: on a shared machine they would only get leftovers
    name = f"footprint-{int(time.time())}"
    common_opts = dict(name=name, model="nano", eval_freq=4, eval_iter=2, checkpoint_every=2, cpus_per_trial=1.0,
                       max_concurrent=2, results_dir=str(RUNS_DIR), dashboard=False, verbose=0,
                       keep_checkpoints=10**6)  # nothing pruned by the sweep: measured before, pruned below
    if args.quick:
        opts = SweepOptions(space="smoke", mode="grid", max_tokens_per_trial=2048, **common_opts)
    else:
        opts = SweepOptions(space="demo", mode="optuna-asha", num_samples=args.trials, max_tokens_per_trial=16384,
                            seed=0, **common_opts)
    print(f"{stamp()} sweep {name}: {opts.mode}, space {opts.space}, model nano (load {loadavg()})", flush=True)
    t0 = time.perf_counter()
    out = run_sweep(opts, log=lambda line: None)
    wall = time.perf_counter() - t0
    n = len(out.trials)
    sweep_dir = out.sweep_dir
    before = measure(sweep_dir)
    lines = []
    pruned = prune_checkpoints(sweep_dir / "tune", out.trials, keep=KEEP, log=lines.append)
    after = measure(sweep_dir)
    rest = after["sweep_bytes"] - after["checkpoint_bytes"]  # everything but the kept checkpoints
    figures = {"footprint_mb_per_trial": round(rest / n / MB, 3)}
    details = {"trials": n, "statuses": {k: int(v) for k, v in out.trials["status"].value_counts().items()},
               "sweep_wall_s": round(wall, 1),
               "before": before, "after": after, "kept": pruned.kept, "pruned_trials": len(pruned.trials),
               "freed_bytes": pruned.freed_bytes, "line": lines[0]}
    print(f"{stamp()} {n} trials ({', '.join(f'{v} {k}' for k, v in details['statuses'].items())}) in {wall:.0f} s")
    print(f"before: {before['sweep_bytes'] / MB:,.1f} MB ({before['sweep_bytes'] / n / MB:,.2f} MB per trial, "
          f"{before['checkpoints']} checkpoints of {before['checkpoint_bytes'] / MB:,.1f} MB)")
    print(f"after:  {after['sweep_bytes'] / MB:,.1f} MB ({after['checkpoints']} checkpoints of "
          f"{after['checkpoint_bytes'] / MB:,.1f} MB kept; the rest {rest / MB:,.2f} MB = "
          f"{rest / n / MB:,.3f} MB per trial)")
    print(lines[0])
    record(figures, details, quick=args.quick)
    if not args.quick:
        append_results(opts, details, figures, rest, n)
    shutil.rmtree(sweep_dir, ignore_errors=True)


def append_results(opts, d: dict, figures: dict, rest: int, n: int) -> None:
    """A section at the end of bench/RESULTS.md with the command and the figures."""
    b, a = d["before"], d["after"]
    statuses = ", ".join(f"{v} {k}" for k, v in d["statuses"].items())
    met = "yes" if figures["footprint_mb_per_trial"] <= 1.0 else "no"
    text = f"""
## Footprint — `{shlex.join(['python', 'bench/footprint.py', *sys.argv[1:]])}` (issue 13, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)

One real sweep through `run_sweep`: {opts.mode} over the `{opts.space}` space, nano model, embedded corpus,
{opts.max_tokens_per_trial:,} tokens per trial, a checkpoint every {opts.checkpoint_every} evaluations (Tune keeps 2 per trial);
{n} trials ({statuses}) in {d['sweep_wall_s']:.0f} s. Measured with `du` on the sweep directory, before and
after `hpsearch.footprint.prune_checkpoints` with the default `--keep-checkpoints {KEEP}` (what every sweep
now runs when its results are collected).

| | sweep directory | per trial | checkpoints |
|---|---|---|---|
| before pruning | {b['sweep_bytes'] / MB:,.1f} MB | {b['sweep_bytes'] / n / MB:,.2f} MB (trial dir median {b['trial_dir_bytes_median'] / MB:,.2f} MB) | {b['checkpoints']}, {b['checkpoint_bytes'] / MB:,.1f} MB |
| after pruning | {a['sweep_bytes'] / MB:,.1f} MB | {a['sweep_bytes'] / n / MB:,.2f} MB (trial dir median {a['trial_dir_bytes_median'] / MB:,.3f} MB) | {a['checkpoints']}, {a['checkpoint_bytes'] / MB:,.1f} MB (the best {KEEP}) |
| **`footprint_mb_per_trial`** (all but the kept checkpoints) | {rest / MB:,.2f} MB | **{figures['footprint_mb_per_trial']:.3f} MB** | goal ≤ 1 MB: {met} |

The sweep logged: `{d['line']}`. What stays per finished trial: `result.json`, `progress.csv`, the
TensorBoard event file and `params.json/.pkl` (tens of KB at this budget; they grow with the number of
evaluations). Unfinished (interrupted) trials keep their checkpoints for `--resume`; `tests/test_footprint.py`
checks that `--resume` of a pruned, finished sweep reruns nothing.
"""
    with (BENCH / "RESULTS.md").open("a", encoding="utf-8") as f:
        f.write(text)
    print(f"appended the figures to {BENCH / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
