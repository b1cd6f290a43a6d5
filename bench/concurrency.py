"""Issue 6, figure 2: do C trials at a time on this 2-core machine finish C times faster?

concurrency_efficiency = (sum of the N trials' times when each runs alone) / C / (wall span of the
same N trials run C at a time). A trial's time is `train_trial` entry -> exit (probe.py); the span is
the first entry -> the last exit, so launch gaps count against concurrency. The serial and the
concurrent sweep alternate, order flipped each repeat; the figure is the median over repeats.

Ray's workers run at nice 0 here (Ray's default, 15, lets any other process on this shared machine
take their CPU first; --worker-nice 15 restores it). Diagnostics printed beside it: each trial's in-loop tokens/s alone vs concurrent, its CPU seconds per
wall second (> 1 would mean threads beyond the one CPU reserved), the torch/OMP thread settings it
saw, and the same pairing without Ray (two plain `pretrain()` processes vs one, at the trials' CPU
priority) as the ceiling that cores and memory bandwidth allow.

    python bench/concurrency.py [--quick] [--repeats 3] [--trials 4] [--concurrency 2] [--worker-nice 0]
"""

from __future__ import annotations

import argparse

import common

from common import RUNS_DIR, median, record, spread, stamp
from probe import start_probed_ray
from tune_overhead import finish_plain, probed_sweep, start_plain, sweep_options, worker_niceness

PROBE_LOG = RUNS_DIR / "probe-concurrency.jsonl"


def sweep_once(n: int, c: int, max_tokens: int) -> dict:
    recs = list(probed_sweep(sweep_options(f"conc{c}", trials=n, max_tokens=max_tokens, reuse=True,
                                           concurrent=c)).values())
    return {"times": [r["exit"] - r["enter"] for r in recs],
            "span": max(r["exit"] for r in recs) - min(r["enter"] for r in recs),
            "tps": [r["tps"] for r in recs],
            "cpu_per_wall": [r["cpu_s"] / (r["exit"] - r["enter"]) for r in recs],
            "threads": recs[0]["info"]}


def plain_group(k: int, max_tokens: int, nice: int) -> dict:
    """k plain processes at once, at the trials' CPU priority; their wall span (first start -> last end)."""
    runs = [finish_plain(p) for p in [start_plain(max_tokens, nice) for _ in range(k)]]
    return {"span": max(r["end"] for r in runs) - min(r["start"] for r in runs),
            "times": [r["end"] - r["start"] for r in runs], "tps": [r["tps"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--worker-nice", type=int, default=0,
                    help="CPU priority of Ray's workers (Ray's default: 15); plain runs get the same")
    args = ap.parse_args()
    max_tokens = args.max_tokens or (4096 if args.quick else 10240)
    repeats, n, c = (1 if args.quick else args.repeats), args.trials, args.concurrency
    start_probed_ray(PROBE_LOG, worker_nice=args.worker_nice)
    nice = worker_niceness()
    eff, plain_eff, alone, together, cpu_use, busy = [], [], [], [], [], []
    for r in range(repeats):
        got = {}
        for mode in (("serial", "concurrent") if r % 2 == 0 else ("concurrent", "serial")):
            busy.append(common.wait_quiet())
            got[mode] = sweep_once(n, 1 if mode == "serial" else c, max_tokens)
        eff.append(sum(got["serial"]["times"]) / c / got["concurrent"]["span"])
        alone += got["serial"]["tps"]
        together += got["concurrent"]["tps"]
        cpu_use += got["concurrent"]["cpu_per_wall"]
        busy.append(common.wait_quiet())
        one = plain_group(1, max_tokens, nice)
        busy.append(common.wait_quiet())
        pair = plain_group(c, max_tokens, nice)
        plain_eff.append(one["span"] / pair["span"])
        print(f"{stamp()} repeat {r}: serial sum {sum(got['serial']['times']):.1f} s, {c} at a time span "
              f"{got['concurrent']['span']:.1f} s -> efficiency {eff[-1]:.3f}; without Ray: 1 alone "
              f"{one['span']:.1f} s, {c} together {pair['span']:.1f} s -> {plain_eff[-1]:.3f} "
              f"(cores busy before each: {busy[-4:]})", flush=True)
    print(f"trial threads: {got['concurrent']['threads']}")
    print(f"in-loop tokens/s per trial: alone {spread(alone)}, {c} at a time {spread(together)}")
    print(f"CPU s per wall s of a concurrent trial: {spread(cpu_use)}")
    print(f"plain processes, {c} together vs alone: {spread(plain_eff)}")
    print(f"concurrency_efficiency {spread(eff)}  (goal >= 0.90)")
    record({"concurrency_efficiency": round(median(eff), 4), "concurrency_efficiency_without_ray": round(median(plain_eff), 4)},
           {"quick": args.quick, "trials": n, "concurrency": c, "model": "tiny", "max_tokens": max_tokens,
            "efficiency": eff, "plain_efficiency": plain_eff, "tps_alone": alone, "tps_concurrent": together,
            "cpu_per_wall_concurrent": cpu_use, "trial_threads": got["concurrent"]["threads"], "busy_before": busy,
            "loadavg_end": common.loadavg()}, quick=args.quick)


if __name__ == "__main__":
    main()
