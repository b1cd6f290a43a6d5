"""Issue 6, figure 1: what running inside Ray Tune costs a trial.

tune_overhead_ratio = tokens/s of one tiny run inside a one-trial sweep / the same config run by
plain `pretrain()` in this process (1 torch thread on both sides, as cpus_per_trial=1 gives the
trial). Both sides use the product's own figure: tokens_per_second at the final evaluation (training
time since the loop started, evaluations and the trial's reports and checkpoints included). The two
sides alternate, order flipped each repeat; the figure is the median of the paired ratios.

Fixed cost per trial: sweeps of identical short trials run one at a time, with and without actor
reuse; for every trial after the first, previous trial's exit -> this trial's first optimizer step,
split at the entry of `train_trial` (Tune + actor launch | building the Run + the first step; the
second step's time is printed beside it, to tell the one-off cost from one step's work).

    python bench/tune_overhead.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import common
import torch
import yaml

from common import RUNS_DIR, median, record, spread, stamp
from probe import events, per_trial, start_probed_ray

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
    trials = per_trial(events(PROBE_LOG, since=t0))
    return dict(sorted(trials.items(), key=lambda kv: kv[1]["enter"]))


def plain_tps(opts) -> float:
    """The same config through plain pretrain() in this process, 1 torch thread."""
    from hpsearch.sweep import base_config
    from search_spaces import get_space
    from trainables.corpus import load_tokens
    from trainables.pretrain import pretrain

    space = get_space(opts.space)
    cfg = base_config(opts, space).with_hparams({"peak_lr": SPACE["axes"]["peak_lr"]["grid"][0]})
    tokens = load_tokens(cfg.data.path, log=None).tokens
    last = {}
    torch.set_num_threads(1)
    pretrain(cfg, tokens=tokens, log=None, on_eval=lambda m, save: last.update(m))
    return last["tokens_per_second"]


def measure_ratio(repeats: int, max_tokens: int) -> dict:
    plain, tune_side, ratios = [], [], []
    for r in range(repeats):
        opts = sweep_options("overhead", trials=1, max_tokens=max_tokens, reuse=True)
        sides = ["plain", "tune"] if r % 2 == 0 else ["tune", "plain"]
        got = {}
        for side in sides:
            if side == "plain":
                got[side] = plain_tps(opts)
            else:
                (trial,) = probed_sweep(opts).values()
                got[side] = trial["tps"]
        plain.append(got["plain"])
        tune_side.append(got["tune"])
        ratios.append(got["tune"] / got["plain"])
        print(f"{stamp()} repeat {r}: plain {got['plain']:.0f} tok/s, in Tune {got['tune']:.0f} tok/s, "
              f"ratio {ratios[-1]:.3f} (load {common.loadavg()})", flush=True)
    return {"plain_tps": plain, "tune_tps": tune_side, "ratios": ratios}


def measure_fixed_cost(repeats: int, trials: int) -> dict:
    out = {}
    for r in range(repeats):
        for reuse in ((True, False) if r % 2 == 0 else (False, True)):
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
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    repeats, max_tokens = (1, 5120) if args.quick else (args.repeats, 20480)
    start_probed_ray(PROBE_LOG)
    ratio = measure_ratio(repeats, max_tokens)
    fixed = measure_fixed_cost(1 if args.quick else 2, 3 if args.quick else 4)
    print(f"plain pretrain   {spread(ratio['plain_tps'])} tok/s")
    print(f"one-trial sweep  {spread(ratio['tune_tps'])} tok/s")
    print(f"tune_overhead_ratio {spread(ratio['ratios'])}  (goal >= 0.97)")
    for key, d in fixed.items():
        print(f"fixed cost per trial, {key:8}: {spread(d['total_s'])} s = launch {median(d['launch_s']):.2f} s "
              f"+ Run build and first step {median(d['build_s']):.2f} s (a later step takes {median(d['step_s']):.2f} s)")
    record({"tune_overhead_ratio": round(median(ratio["ratios"]), 4),
            "trial_fixed_cost_s_reuse": round(median(fixed["reuse"]["total_s"]), 3),
            "trial_fixed_cost_s_no_reuse": round(median(fixed["no_reuse"]["total_s"]), 3)},
           {"quick": args.quick, "model": "tiny", "max_tokens": max_tokens, **ratio, "fixed_cost": fixed,
            "loadavg_end": common.loadavg()})


if __name__ == "__main__":
    main()
