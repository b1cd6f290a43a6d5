"""`time_to_answer_ratio` (issue 28): the seed's serial exhaustive grid against an hpsearch search.

    python bench/time_to_answer.py                       # problems pkgs and nano, 10 % budget, seeds 0-2
    python bench/time_to_answer.py --problems pkgs --fraction 0.05
    python bench/time_to_answer.py --quick               # one problem, one seed, 2 reference configs
    python bench/time_to_answer.py --problems changes --search-precision fp32 auto   # and again at the
                                                         # product's default precision (bf16 where the CPU has it)

For each benchmark problem whose ground truth is built (bench/problems.py, bench/grid_<name>.csv):

  serial grid  the source documents' way (LLMs-from-scratch ch05 hparam_search.py): one process with
               every core's threads, the configurations one after another, the text tokenized again for
               each, the book's GPTModel in fp32, torch's AdamW, warmup + cosine with clipping after
               warmup, one evaluation batch at the end (bench/engine_vs_reference.py's reference loop,
               here stopped at the problem's token budget). Timed on --reference-configs points of the
               grid spread over its LR axis; its wall time = their mean per-config time x the grid's
               valid points (running all of them would only repeat the same loop).
  hpsearch     `hpsearch sweep --mode optuna-asha --budget-tokens F x (the grid's tokens)` as a user runs
               it, in a fresh process (imports, Ray's start, trials, results), 2 trials of 1 CPU at a time,
               in fp32 like the serial script (``--search-precision auto``: the product's default, bf16-mixed
               where the CPU has it); its answer is the configuration of the lowest validation loss any of
               its trials reached, trained for real, not replayed, and that configuration's loss in the
               fp32 ground truth is what is compared with the grid's best (in fp32 the two are the same
               run; in bf16 this keeps the precision's own effect on the loss out of the comparison; on
               a problem with a continuous axis the sampled point has no ground truth and its own loss
               is compared).

    time_to_answer_ratio = serial grid wall time / the median search's wall time, over searches whose
                           answer is within 1 % of the grid's best (a search that misses is reported and
                           not counted as an answer)
Goal (issue 28): >= 20x. Both sides run on the same cores, one after the other, nothing else running.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import common  # noqa: F401  (environment first)
import pandas as pd
import torch
import yaml

from common import RUNS_DIR, loadavg, record, stamp
from problems import CORPUS_BUILDERS, PROBLEMS, default_problems

import engine_vs_reference as evr

QUIET = lambda: common.wait_quiet(max_wait=60)  # noqa: E731  (--quick: no waiting)


def corpus_text(problem) -> str:
    """The problem's corpus as one text (nano's embedded corpus is the pydoc topics, as docs')."""
    return CORPUS_BUILDERS[problem.corpus or "docs"]().read_text(encoding="utf-8")


def serial_grid(problem, grid: pd.DataFrame, k: int) -> dict:
    """Per-config wall time of the seed's loop on k grid points spread over the LR axis (all threads)."""
    torch.set_num_threads(os.cpu_count())
    axes = list(problem.axes)
    points = grid[axes].drop_duplicates().sort_values(axes).reset_index(drop=True)
    picks = sorted({round(i * (len(points) - 1) / max(k - 1, 1)) for i in range(k)})
    text, rows = corpus_text(problem), []
    for i in picks:
        params = problem.params(tuple(points.loc[i, axes]))
        cfg = problem.base().with_hparams(params, source=f"problem {problem.name}")
        QUIET()
        t0 = time.perf_counter()
        steps = cfg.train.max_tokens // (cfg.train.batch_size * cfg.model.context_len)
        got = evr.reference_run(cfg, text, max_steps=steps)
        rows.append({**params, **got, "wall_s": time.perf_counter() - t0})
        print(f"{stamp()} {problem.name} serial config {params}: {rows[-1]['wall_s']:.2f} s, {got['steps']} steps",
              flush=True)
    per = statistics.mean(r["wall_s"] for r in rows)
    return {"configs": rows, "per_config_s": per, "grid_points": len(points), "grid_wall_s": per * len(points)}


def search(problem, seed: int, budget: int, name: str, precision: str, truth: pd.Series) -> dict:
    """A real `hpsearch sweep --mode optuna-asha --budget-tokens` in a fresh process, timed end to end."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    space, config = RUNS_DIR / f"tta-space-{problem.name}.yaml", RUNS_DIR / f"tta-config-{problem.name}.yaml"
    space.write_text(yaml.safe_dump({"name": f"bench-{problem.name}", "axes": {  # as Problem.space()
        a: {"loguniform": [min(v), max(v)]} if a in problem.continuous else {"grid": v} for a, v in problem.axes.items()}}))
    config.write_text(problem.base().to_yaml())
    cmd = [sys.executable, "-m", "hpsearch.cli", "sweep", "--name", name, "--results-dir", str(RUNS_DIR),
           "--space", str(space), "--config", str(config), "--mode", "optuna-asha", "--seed", str(seed),
           "--budget-tokens", str(budget), "--num-samples", "1000", "--max-tokens-per-trial", str(problem.max_tokens),
           "--eval-freq", str(problem.eval_freq), "--eval-iter", str(problem.eval_iter),
           "--precision", precision, "--cpus-per-trial", "1", "--no-dashboard"]
    if problem.corpus:
        cmd += ["--data", problem.corpus_path()]
    shutil.rmtree(RUNS_DIR / name, ignore_errors=True)
    QUIET()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    trials = pd.read_parquet(RUNS_DIR / name / "trials.parquet")
    trained = trials[trials["tokens_seen"].fillna(0) > 0]
    top = trained.loc[trained["best_val_loss"].idxmin()]
    pick = {a: float(top[a]) for a in problem.axes}
    # a continuous axis's sampled value is not a grid point: no ground truth for it, its own loss stands
    at = None if problem.continuous else tuple(pick[a] for a in problem.axes)
    return {"wall_s": wall, "best": float(top["best_val_loss"]), "pick": pick,
            "pick_truth": float(truth.loc[at]) if at else float(top["best_val_loss"]), "trials": len(trained),
            "tokens": int(trained["tokens_seen"].sum()), "budget_tokens": budget, "command": " ".join(cmd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", choices=PROBLEMS, default=None,
                    help="default: pkgs and nano (the problems whose 10 %% searches reach 1 %% of their grid)")
    ap.add_argument("--fraction", type=float, default=0.10, help="the search's budget, a fraction of the grid's tokens")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--reference-configs", type=int, default=4)
    ap.add_argument("--search-precision", nargs="+", choices=["fp32", "auto"], default=["fp32"],
                    help="the searches' --precision, each against the same serial timing (the serial script and "
                         "the ground truth are fp32; auto is the product's default)")
    ap.add_argument("--quick", action="store_true", help="one problem, seed 0, 2 reference configs: checks the script")
    args = ap.parse_args()
    names = args.problems or [p for p in ("pkgs", "nano") if p in default_problems()]
    missing = [n for n in names if not PROBLEMS[n].csv.is_file()]
    if missing:
        raise SystemExit(f"no ground truth for {', '.join(missing)}: run python bench/grid.py --problem NAME first")
    if args.quick:
        names, args.seeds, args.reference_configs = names[:1], [0], 2
        global QUIET
        QUIET = lambda: None  # noqa: E731
    suffix = {"fp32": "", "auto": "_default_precision"}
    out, figures = {}, {}
    for name in names:
        problem = PROBLEMS[name]
        grid = pd.read_csv(problem.csv)
        axes = list(problem.axes)
        truth = grid.groupby(axes)["val_loss"].min()  # each configuration's best, as a trial's best_val_loss
        grid_best = float(truth.min())
        grid_tokens = int(grid.groupby(axes)["tokens_seen"].max().sum())
        serial = serial_grid(problem, grid, args.reference_configs)
        out[name] = {"serial": serial, "grid_best": grid_best, "grid_tokens": grid_tokens}
        for precision in args.search_precision:
            runs = []
            for seed in args.seeds:
                got = search(problem, seed, int(args.fraction * grid_tokens), f"tta-{name}-{precision}-{seed}",
                             precision, truth)
                got["gap"], got["own_gap"] = got["pick_truth"] / grid_best - 1.0, got["best"] / grid_best - 1.0
                runs.append(got)
                print(f"{stamp()} {name} search ({precision}) seed {seed}: {got['wall_s']:.1f} s, {got['trials']} "
                      f"trials, {got['tokens']:,} of {got['budget_tokens']:,} tokens, best {got['best']:.4f} at "
                      f"{got['pick']}, {got['pick_truth']:.4f} in the ground truth (gap {got['gap']:.4f} to the "
                      f"grid's {grid_best:.4f})", flush=True)
            answered = [r["wall_s"] for r in runs if r["gap"] <= 0.01]
            ratio = serial["grid_wall_s"] / statistics.median(answered) if answered else None
            out[name]["searches" + suffix[precision]] = runs
            out[name]["answered" + suffix[precision]] = len(answered)
            out[name]["ratio" + suffix[precision]] = ratio
            out[name]["ratio_range" + suffix[precision]] = ([serial["grid_wall_s"] / max(answered),
                                                             serial["grid_wall_s"] / min(answered)] if answered else None)
            print(f"{stamp()} {name} ({precision}): serial grid {serial['grid_points']} x {serial['per_config_s']:.2f} "
                  f"s = {serial['grid_wall_s']:.0f} s; searches within 1 %: {len(answered)} of {len(runs)}, median "
                  f"{statistics.median(answered) if answered else math.nan:.1f} s -> ratio "
                  f"{ratio if ratio else math.nan:.1f}x", flush=True)
            if ratio:
                figures[f"time_to_answer_ratio_{name}{suffix[precision]}"] = round(ratio, 2)
    for precision in args.search_precision:
        ratios = [o["ratio" + suffix[precision]] for o in out.values()]
        if all(ratios) and len(ratios) > 1:
            figures["time_to_answer_ratio" + suffix[precision]] = round(min(ratios), 2)  # the worse problem's
    print(json.dumps(figures))
    record(figures, {"fraction": args.fraction, "seeds": args.seeds, "search_precision": args.search_precision,
                     "loadavg_end": loadavg(), "problems": out}, quick=args.quick,
           tag=f" --fraction {args.fraction:g}" if args.fraction != 0.10 else "",
           variant="".join(f" {n}" for n in names if n not in ("pkgs", "nano"))
           + ("" if args.search_precision == ["fp32"] else " --search-precision " + " ".join(args.search_precision)))


if __name__ == "__main__":
    main()
