"""Issue 6, figure 1: what running inside Ray Tune costs a trial.

tune_overhead_ratio = tokens/s of one tiny run inside a one-trial sweep / the same config run by
plain `pretrain()` (1 torch thread on both sides, as cpus_per_trial=1 gives the trial). Both sides
use the product's own figure: tokens_per_second at the final evaluation (training time since the
loop started, evaluations and the trial's reports and checkpoints included). The plain run is a
child process at the trial's CPU priority. Ray starts workers at nice 15, so on a shared machine
every normal-priority process takes the CPU from a trial first; this benchmark starts its Ray with
workers at nice 0 (--worker-nice) and measures what priority alone does apart (plain at nice 15 /
plain at nice 0). Sides rotate each repeat, each waits for quiet cores; the figure is the median of
the per-repeat ratios. Beside it: the best-of-N ratio (interference only ever slows a run down) and
tokens per CPU-second of the trial's process (blind to interference; Tune's in-process work only).

Fixed cost per trial: sweeps of identical short trials run one at a time, with and without actor
reuse; for every trial after the first, previous trial's exit -> this trial's first optimizer step,
split at the entry of `train_trial` (Tune + actor launch | building the Run + the first step; the
second step's time is printed beside it, to tell the one-off cost from one step's work).

    python bench/tune_overhead.py [--quick] [--repeats 7] [--worker-nice 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common
import torch
import yaml

from common import RUNS_DIR, median, record, spread, stamp
from probe import LOG_ENV, events, per_trial, start_probed_ray

SPACE = {"name": "overhead", "axes": {"peak_lr": {"grid": [1.0e-3]}},
         "fixed": {"warmup_steps": 2, "batch_size": 8, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}}
PROBE_LOG = RUNS_DIR / "probe-overhead.jsonl"


def sweep_options(tag: str, *, trials: int, max_tokens: int, reuse: bool, concurrent: int = 1):
    from hpsearch.sweep import SweepOptions

    space = RUNS_DIR / "overhead-space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(yaml.safe_dump(SPACE))
    return SweepOptions(space=str(space), mode="grid", name=f"{tag}-{time.time_ns()}", num_samples=trials,
                        model="tiny", max_tokens_per_trial=max_tokens, eval_freq=10, eval_iter=3,
                        cpus_per_trial=1.0, max_concurrent=concurrent, reuse_actors=reuse,
                        results_dir=str(RUNS_DIR), dashboard=False, verbose=0)


def probed_sweep(opts) -> dict[str, dict]:
    """Run the sweep; the probe's per-trial record of it, ordered by entry."""
    from hpsearch.sweep import run_sweep

    t0 = time.time()
    run_sweep(opts, log=lambda line: None)
    shutil.rmtree(Path(opts.results_dir) / opts.name, ignore_errors=True)  # checkpoints: ~80 MB a trial
    trials = per_trial(events(Path(os.environ[LOG_ENV]), since=t0))
    return dict(sorted(trials.items(), key=lambda kv: kv[1]["enter"]))


def plain_child(max_tokens: int) -> None:
    """The sweep's trial config through plain pretrain(), 1 torch thread; prints its timing as JSON."""
    from hpsearch.sweep import base_config
    from search_spaces import get_space
    from trainables.corpus import load_tokens
    from trainables.pretrain import pretrain

    opts = sweep_options("plain", trials=1, max_tokens=max_tokens, reuse=True)
    cfg = base_config(opts, get_space(opts.space)).with_hparams({"peak_lr": SPACE["axes"]["peak_lr"]["grid"][0]})
    tokens = load_tokens(cfg.data.path, log=None).tokens
    torch.set_num_threads(1)
    last = {}
    t0, cpu0 = time.time(), time.process_time()
    pretrain(cfg, tokens=tokens, log=None, on_eval=lambda m, save: last.update(m))
    print(json.dumps({"start": t0, "end": time.time(), "tps": last["tokens_per_second"], "nice": os.nice(0),
                      "tokens_per_cpu_s": last["tokens_seen"] / (time.process_time() - cpu0)}))


def start_plain(max_tokens: int, nice: int) -> subprocess.Popen:
    """A plain run in a fresh process at CPU priority ``nice`` (OMP_NUM_THREADS=1, as Ray sets for a trial)."""
    cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "tune_overhead.py"), "--plain-child",
           "--max-tokens", str(max_tokens)]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.nice(nice))


def finish_plain(proc: subprocess.Popen) -> dict:
    out = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(f"plain child failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def worker_niceness() -> int:
    import ray

    return ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote())


def measure_ratio(repeats: int, max_tokens: int, nice: int) -> dict:
    """Per side and repeat: tokens/s (the product's figure); tokens per CPU-second for tune and plain."""
    alt = 15 if nice == 0 else 0  # the other priority, to measure what priority alone does
    sides = {"tune": [], "plain": [], "plain_alt": []}
    per_cpu = {"tune": [], "plain": []}
    busy = []
    for r in range(repeats):
        for side in list(sides)[r % 3:] + list(sides)[:r % 3]:
            busy.append(common.wait_quiet())
            if side == "tune":
                (trial,) = probed_sweep(sweep_options("overhead", trials=1, max_tokens=max_tokens, reuse=True)).values()
                sides[side].append(trial["tps"])
                per_cpu[side].append(trial["tokens"] / trial["cpu_s"])
            else:
                got = finish_plain(start_plain(max_tokens, nice if side == "plain" else alt))
                sides[side].append(got["tps"])
                if side == "plain":
                    per_cpu[side].append(got["tokens_per_cpu_s"])
        print(f"{stamp()} repeat {r}: in Tune {sides['tune'][-1]:.0f} tok/s, plain at nice {nice} "
              f"{sides['plain'][-1]:.0f}, plain at nice {alt} {sides['plain_alt'][-1]:.0f} "
              f"(cores busy before each: {busy[-3:]})", flush=True)
    at = {nice: sides["plain"], alt: sides["plain_alt"]}
    return {"worker_nice": nice, **{f"{k}_tps": v for k, v in sides.items()}, "busy_before": busy,
            "ratios": [t / p for t, p in zip(sides["tune"], sides["plain"])],
            "best_of_n_ratio": max(sides["tune"]) / max(sides["plain"]),
            "cpu_ratios": [t / p for t, p in zip(per_cpu["tune"], per_cpu["plain"])],
            "nice15_over_nice0": [p15 / p0 for p15, p0 in zip(at[15], at[0])]}


def measure_fixed_cost(repeats: int, trials: int) -> dict:
    out = {}
    for r in range(repeats):
        for reuse in ((True, False) if r % 2 == 0 else (False, True)):
            common.wait_quiet()
            recs = list(probed_sweep(sweep_options("fixed", trials=trials, max_tokens=2048, reuse=reuse)).values())
            d = out.setdefault("reuse" if reuse else "no_reuse",
                               {"launch_s": [], "build_s": [], "total_s": [], "step_s": []})
            for prev, cur in zip(recs, recs[1:]):
                d["launch_s"].append(cur["enter"] - prev["exit"])
                d["build_s"].append(cur["first_step"] - cur["enter"])
                d["total_s"].append(cur["first_step"] - prev["exit"])
                d["step_s"].append(cur["second_step"] - cur["first_step"])
            print(f"{stamp()} reuse_actors={reuse}: exit -> first step " +
                  ", ".join(f"{t:.2f}" for t in d["total_s"][-(len(recs) - 1):]) + " s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short repeat of each measurement")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--worker-nice", type=int, default=0,
                    help="CPU priority of Ray's workers (Ray's default: 15); the plain run gets the same")
    ap.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    max_tokens = args.max_tokens or (5120 if args.quick else 15360)
    if args.plain_child:
        return plain_child(max_tokens)
    repeats = 1 if args.quick else args.repeats
    start_probed_ray(PROBE_LOG, worker_nice=args.worker_nice)
    nice = worker_niceness()
    ratio = measure_ratio(repeats, max_tokens, nice)
    fixed = measure_fixed_cost(1 if args.quick else 2, 3 if args.quick else 4)
    alt = 15 if nice == 0 else 0
    print(f"one-trial sweep          {spread(ratio['tune_tps'])} tok/s (Ray worker at nice {nice})")
    print(f"plain pretrain, nice {nice:<2}  {spread(ratio['plain_tps'])} tok/s")
    print(f"plain pretrain, nice {alt:<2}  {spread(ratio['plain_alt_tps'])} tok/s")
    print(f"priority alone: plain at nice 15 / at nice 0 {spread(ratio['nice15_over_nice0'])}")
    print(f"tokens per CPU-second, in Tune / plain {spread(ratio['cpu_ratios'])} (Run build included on both sides)")
    print(f"best tokens/s of {repeats}, in Tune / plain {ratio['best_of_n_ratio']:.4f}")
    print(f"tune_overhead_ratio {spread(ratio['ratios'])}  (median of paired ratios; goal >= 0.97)")
    for key, d in fixed.items():
        print(f"fixed cost per trial, {key:8}: {spread(d['total_s'])} s = launch {median(d['launch_s']):.2f} s "
              f"+ Run build and first step {median(d['build_s']):.2f} s (a later step takes {median(d['step_s']):.2f} s)")
    record({"tune_overhead_ratio": round(median(ratio["ratios"]), 4),
            "tune_overhead_cpu_ratio": round(median(ratio["cpu_ratios"]), 4),
            "tune_overhead_best_of_n_ratio": round(ratio["best_of_n_ratio"], 4),
            "trial_fixed_cost_s_reuse": round(median(fixed["reuse"]["total_s"]), 3),
            "trial_fixed_cost_s_no_reuse": round(median(fixed["no_reuse"]["total_s"]), 3)},
           {"quick": args.quick, "model": "tiny", "max_tokens": max_tokens, **ratio,
            "fixed_cost": fixed, "loadavg_end": common.loadavg()}, quick=args.quick)


if __name__ == "__main__":
    main()
