"""`depth_lr_drift_octaves`: how far the best learning rate moves across depth, with and without CompleteP.

    python bench/depth_transfer.py                   # CPU study: depths 2,4,8, 5 LRs, 2 seeds (~20 min on 2 cores)
    python bench/depth_transfer.py --quick           # the same code path in a minute (figures go to runs only)
    python bench/depth_transfer.py --reanalyse depth-transfer depth-transfer-base4   # finished studies' trials
                                                     # again: parabola optima and their bootstrap noise over seeds
    python bench/depth_transfer.py --depths 4,8,16,32 --width 512 --steps 2000 --batch 32 --gpus-per-trial 1 \\
        --tag -gpu                                   # the GPU-sized study, when an accelerator is lent

It runs the product's own `hpsearch transfer --depths` study (one grid sweep: depth rule x n_layers x
LR x seed) on the held-out package-text corpus with a 2,048-token BPE trained on the spot
(bench/heldout.py), on a fixed step horizon, and records per rule the largest |log2(best LR at a
depth / best LR at the base depth)| over depths (null, with the LRs to add, where an optimum sits on
the grid's edge), and the seed noise at each optimum.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time

import common  # noqa: F401  (environment first)
import heldout
from common import RUNS_DIR, loadavg, record, start_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", default="2,4,8")
    ap.add_argument("--lrs", default="2.5e-4,5e-4,1e-3,2e-3,4e-3,8e-3")
    ap.add_argument("--rules", default="none,completep")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per trial (the horizon)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="")
    ap.add_argument("--reanalyse", nargs="+", metavar="STUDY",
                    help="study names under the benchmark's runs directory: read their trials, train nothing")
    ap.add_argument("--bootstrap", type=int, default=300, help="--reanalyse: seed resamples for the noise")
    args = ap.parse_args()
    if args.reanalyse:
        return reanalyse(args.reanalyse, args.bootstrap)
    if args.quick:
        args.depths, args.lrs, args.steps, args.seeds = "1,2", "4e-3,1.6e-2,6.4e-2", 20, "0"

    from hpsearch.options import SweepOptions
    from hpsearch.transfer import run_transfer

    corpus = heldout.build(source="packages")
    start_ray(worker_nice=0)
    tokens = args.steps * args.batch * args.context
    name = f"depth-transfer{args.tag}{'-quick' if args.quick else ''}"
    shutil.rmtree(RUNS_DIR / name, ignore_errors=True)
    config = RUNS_DIR / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # warmup 10 % of the horizon, cosine to 0: the same schedule shape at every LR and depth
    config.write_text(
        f"model: {{preset: tiny, vocab_size: {corpus['vocab_size']}, emb_dim: {args.width}, n_heads: {args.heads},"
        f" context_len: {args.context}, dropout: 0.0}}\n"
        f"train: {{batch_size: {args.batch}, max_tokens: {tokens}, warmup_fraction: 0.1,"
        f" initial_lr: 0.0, min_lr: 0.0, weight_decay: 0.0, num_epochs: 1000}}\n"
        f"eval: {{eval_freq: {max(1, args.steps // 4)}, eval_iter: 8}}\n")
    opts = SweepOptions(name=name, config=str(config), data=corpus["path"], results_dir=str(RUNS_DIR),
                        dashboard=False, verbose=0, cpus_per_trial=1.0, gpus_per_trial=args.gpus_per_trial,
                        checkpoint_every=0)
    t0, load0 = time.perf_counter(), loadavg()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = run_transfer(opts, widths=None, lrs=[float(x) for x in args.lrs.split(",")],
                       depths=[int(d) for d in args.depths.split(",")], depth_rules=args.rules.split(","),
                       seeds=seeds, log=print)
    wall = time.perf_counter() - t0

    def fig(v):
        return None if v is None or math.isnan(v) else round(v, 3)

    figures = {"depth_lr_drift_octaves": {"without": fig(out.drift.get("none")),
                                          "with": fig(out.drift.get("completep")),
                                          **({"depth-mup": fig(out.drift.get("depth-mup"))}
                                             if "depth-mup" in out.drift else {}),
                                          "seeds": len(seeds), "undetermined": out.undetermined},
               "depth_lr_drift_octaves_interpolated": {arm: fig(v) for arm, v in out.interpolated.items()}}
    record(figures, {"optima": out.optima.to_dict("records"), "steps": args.steps, "tokens_per_trial": tokens,
                     "depths": args.depths, "lrs": args.lrs, "width": args.width, "batch": args.batch,
                     "corpus": {k: v for k, v in corpus.items() if k not in ("path", "tokenizer")},
                     "wall_s": round(wall, 1), "loadavg_start": load0, "table": out.table.to_dict("records")},
           quick=args.quick, tag=args.tag)


def reanalyse(names: list[str], n_boot: int) -> None:
    """Each finished study's parabola optima (signed drift per depth) and, as its noise, the std of the
    largest |drift| over ``n_boot`` resamples of its seeds with replacement (the same seeds' trials)."""
    import numpy as np
    import pandas as pd

    from hpsearch.transfer import interpolated_drift, lr_optima, transfer_table

    rng, out = np.random.default_rng(0), {}
    for name in names:
        trials = pd.read_parquet(RUNS_DIR / name / "trials.parquet")
        seeds = sorted(int(s) for s in trials["seed"].unique())

        def optima(sample):
            return lr_optima(transfer_table(pd.concat([trials[trials["seed"] == s] for s in sample])))

        full = optima(seeds)
        boots = [interpolated_drift(optima(list(rng.choice(seeds, len(seeds))))) for _ in range(n_boot)]
        out[name] = {}
        for arm, g in full.groupby("arm"):
            drifts = [b[arm] for b in boots if math.isfinite(b[arm])]
            out[name][arm] = {"signed_drift_by_depth": {int(r["n_layers"]): round(r["interp_drift_octaves"], 3)
                                                        for _, r in g.iterrows()},
                              "interp_lr_by_depth": {int(r["n_layers"]): r["interp_lr"] for _, r in g.iterrows()},
                              "drift": round(float(g["interp_drift_octaves"].abs().max()), 3),
                              "bootstrap_std": round(float(np.std(drifts)), 3), "bootstrap_finite": len(drifts),
                              "seeds": len(seeds)}
            print(f"{name} {arm}: drift {out[name][arm]['drift']:.3f} +- {out[name][arm]['bootstrap_std']:.3f} "
                  f"(signed by depth {out[name][arm]['signed_drift_by_depth']})")
    record({}, {"studies": out, "bootstrap": n_boot}, tag=" --reanalyse")


if __name__ == "__main__":
    main()
