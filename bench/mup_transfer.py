"""`mup_lr_drift_octaves`: how far the best learning rate moves across width, SP against μP.

    python bench/mup_transfer.py                     # CPU study: widths 32-256, ~600 steps (~30 min on 2 cores)
    python bench/mup_transfer.py --quick             # the same code path in a minute (figures go to runs only)
    python bench/mup_transfer.py --widths 256,512,1024,2048 --preset small --steps 2000 --batch 32 \\
        --gpus-per-trial 1 --tag -gpu                # the GPU-sized study (see bench/RESULTS.md)

It runs the product's own `hpsearch transfer` study (one grid sweep: parametrization x width x LR)
on a fixed step horizon, then records, per parametrization, |log2(best LR at the widest width /
best LR at the narrowest)| and the best LR at each width. A best LR on the edge of the LR grid makes
that figure a lower bound; the record says so.
"""

from __future__ import annotations

import argparse
import shutil
import time

import common  # noqa: F401  (environment first)
from common import RUNS_DIR, loadavg, record, start_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--lrs", default="2e-3,4e-3,8e-3,1.6e-2,3.2e-2,6.4e-2")
    ap.add_argument("--preset", default="nano", help="depth, heads and context of every width (default nano: "
                                                     "1 layer, 2 heads, context 32)")
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps per trial (the horizon)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--data", default=None, help="corpus (default: the embedded one)")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.quick:
        args.widths, args.lrs, args.steps = "32,64", "2e-3,8e-3,3.2e-2", 40

    from hpsearch.options import SweepOptions
    from hpsearch.transfer import run_transfer
    from trainables.model import PRESETS

    start_ray(worker_nice=0)  # Ray starts workers at nice 15: on a shared machine they would only get leftovers
    ctx = PRESETS[args.preset].context_len
    tokens = args.steps * args.batch * ctx
    name = f"mup-transfer{args.tag}{'-quick' if args.quick else ''}"
    shutil.rmtree(RUNS_DIR / name, ignore_errors=True)
    config = RUNS_DIR / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # warmup 5 % of the horizon, cosine to 1 % of nothing (min_lr 0): the same schedule shape at every LR
    config.write_text(f"model: {{preset: {args.preset}, dropout: 0.0}}\n"
                      f"train: {{batch_size: {args.batch}, max_tokens: {tokens}, warmup_fraction: 0.05,"
                      f" initial_lr: 0.0, min_lr: 0.0, weight_decay: 0.0, num_epochs: 1000}}\n"
                      f"eval: {{eval_freq: {max(1, args.steps // 6)}, eval_iter: 4}}\n")
    opts = SweepOptions(name=name, config=str(config), data=args.data, results_dir=str(RUNS_DIR),
                        dashboard=False, verbose=0, cpus_per_trial=1.0, gpus_per_trial=args.gpus_per_trial,
                        checkpoint_every=1000)
    t0, load0 = time.perf_counter(), loadavg()
    out = run_transfer(opts, widths=[int(w) for w in args.widths.split(",")],
                       lrs=[float(x) for x in args.lrs.split(",")], log=print)
    wall = time.perf_counter() - t0
    optima = out.optima.to_dict("records")
    edges = [f"{r['parametrization']} width {r['emb_dim']}: {r['edge']}" for r in optima if r["edge"]]
    figures = {"mup_lr_drift_octaves": round(out.drift.get("mup", float("nan")), 3),
               "sp_lr_drift_octaves": round(out.drift.get("sp", float("nan")), 3)}
    record(figures, {"optima": optima, "edge_notes": edges, "steps": args.steps, "tokens_per_trial": tokens,
                     "widths": args.widths, "lrs": args.lrs, "preset": args.preset, "batch": args.batch,
                     "corpus": args.data or "embedded", "wall_s": round(wall, 1), "loadavg_start": load0,
                     "table": out.table.to_dict("records")},
           quick=args.quick, tag=args.tag)


if __name__ == "__main__":
    main()
