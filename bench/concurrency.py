"""Issue 6, figure 2: do C trials at a time on this 2-core machine finish C times faster?

concurrency_efficiency = (sum of the N trials' times when each runs alone) / C / (wall span of the
same N trials run C at a time). A trial's time is `train_trial` entry -> exit (probe.py); the span is
the first entry -> the last exit, so launch gaps count against concurrency. The serial and the
concurrent sweep alternate, order flipped each repeat; the figure is the median over repeats.

Diagnostics printed beside it: each trial's in-loop tokens/s alone vs concurrent, its CPU seconds per
wall second (> 1 would mean threads beyond the one CPU reserved), the torch/OMP thread settings it
saw, and the same pairing without Ray (two plain `pretrain()` processes vs one) as the ceiling that
cores and memory bandwidth allow.

    python bench/concurrency.py [--quick] [--repeats 3] [--trials 4] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common
import torch

from common import RUNS_DIR, median, record, spread, stamp
from probe import start_probed_ray
from tune_overhead import SPACE, probed_sweep, sweep_options

PROBE_LOG = RUNS_DIR / "probe-concurrency.jsonl"


def sweep_once(n: int, c: int, max_tokens: int) -> dict:
    recs = list(probed_sweep(sweep_options(f"conc{c}", trials=n, max_tokens=max_tokens, reuse=True,
                                           concurrent=c)).values())
    return {"times": [r["exit"] - r["enter"] for r in recs],
            "span": max(r["exit"] for r in recs) - min(r["enter"] for r in recs),
            "tps": [r["tps"] for r in recs],
            "cpu_per_wall": [r["cpu_s"] / (r["exit"] - r["enter"]) for r in recs],
            "threads": recs[0]["info"]}


def plain_child(max_tokens: int) -> None:
    """One plain pretrain() of the benchmark config (1 torch thread); prints its timing as JSON."""
    from hpsearch.sweep import base_config
    from search_spaces import get_space
    from trainables.corpus import load_tokens
    from trainables.pretrain import pretrain

    opts = sweep_options("plain", trials=1, max_tokens=max_tokens, reuse=True)
    cfg = base_config(opts, get_space(opts.space)).with_hparams({"peak_lr": SPACE["axes"]["peak_lr"]["grid"][0]})
    tokens = load_tokens(cfg.data.path, log=None).tokens
    torch.set_num_threads(1)
    t0 = time.time()
    summary = pretrain(cfg, tokens=tokens, log=None)
    print(json.dumps({"start": t0, "end": time.time(), "tps": summary.tokens_per_second}))


def plain_group(k: int, max_tokens: int) -> dict:
    """k plain processes at once; their wall span (first start -> last end)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--plain-child", "--max-tokens", str(max_tokens)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"span": max(r["end"] for r in runs) - min(r["start"] for r in runs),
            "times": [r["end"] - r["start"] for r in runs], "tps": [r["tps"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    max_tokens = args.max_tokens or (4096 if args.quick else 10240)
    if args.plain_child:
        return plain_child(max_tokens)
    repeats, n, c = (1 if args.quick else args.repeats), args.trials, args.concurrency
    start_probed_ray(PROBE_LOG)
    eff, plain_eff, alone, together, cpu_use = [], [], [], [], []
    for r in range(repeats):
        got = {}
        for mode in (("serial", "concurrent") if r % 2 == 0 else ("concurrent", "serial")):
            got[mode] = sweep_once(n, 1 if mode == "serial" else c, max_tokens)
        eff.append(sum(got["serial"]["times"]) / c / got["concurrent"]["span"])
        alone += got["serial"]["tps"]
        together += got["concurrent"]["tps"]
        cpu_use += got["concurrent"]["cpu_per_wall"]
        one, pair = plain_group(1, max_tokens), plain_group(c, max_tokens)
        plain_eff.append(one["span"] / pair["span"])
        print(f"{stamp()} repeat {r}: serial sum {sum(got['serial']['times']):.1f} s, {c} at a time span "
              f"{got['concurrent']['span']:.1f} s -> efficiency {eff[-1]:.3f}; without Ray: 1 alone "
              f"{one['span']:.1f} s, {c} together {pair['span']:.1f} s -> {plain_eff[-1]:.3f} "
              f"(load {common.loadavg()})", flush=True)
    print(f"trial threads: {got['concurrent']['threads']}")
    print(f"in-loop tokens/s per trial: alone {spread(alone)}, {c} at a time {spread(together)}")
    print(f"CPU s per wall s of a concurrent trial: {spread(cpu_use)}")
    print(f"plain processes, {c} together vs alone: {spread(plain_eff)}")
    print(f"concurrency_efficiency {spread(eff)}  (goal >= 0.90)")
    record({"concurrency_efficiency": round(median(eff), 4), "concurrency_efficiency_without_ray": round(median(plain_eff), 4)},
           {"quick": args.quick, "trials": n, "concurrency": c, "model": "tiny", "max_tokens": max_tokens,
            "efficiency": eff, "plain_efficiency": plain_eff, "tps_alone": alone, "tps_concurrent": together,
            "cpu_per_wall_concurrent": cpu_use, "trial_threads": got["concurrent"]["threads"],
            "loadavg_end": common.loadavg()})


if __name__ == "__main__":
    main()
