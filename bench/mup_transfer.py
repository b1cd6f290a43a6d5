"""`mup_lr_drift_octaves` and `mup_vs_sp_at_base_width`: μP against SP across width, on two corpora.

    python bench/mup_transfer.py                     # CPU study: widths 32-128, 5 LRs, 100 steps, 2 seeds, 2 corpora (~6 min)
    python bench/mup_transfer.py --quick             # the same code path in a minute (figures go to runs only)
    python bench/mup_transfer.py --widths 256,512,1024,2048 --preset small --steps 2000 --batch 32 \\
        --gpus-per-trial 1 --tag -gpu                # the GPU-sized study (see bench/RESULTS.md)

Per corpus (bench/heldout.py: installed packages' READMEs and licenses, and the standard library's
source, each with a 2,048-token BPE trained on it) it runs the product's own `hpsearch transfer`
study (one grid sweep: parametrization x width x LR x seed) on a fixed step horizon, then records:

- mup_lr_drift_octaves: per parametrization, the largest |log2(best LR at a width / at the narrowest)|,
  null (undetermined, with the LRs to add) where an optimum sits on the LR grid's edge;
- mup_vs_sp_at_base_width: (μP - SP) / SP of the best seed-mean loss at the narrowest (base) width, and
  the relative seed std there (the goal is gap <= noise);
- wider_is_better: whether μP's best loss falls (or holds within noise) as width grows.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time

import common  # noqa: F401  (environment first)
import heldout
from common import RUNS_DIR, loadavg, record, start_ray


def fig(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def study(args, corpus_name: str) -> dict:
    from hpsearch.options import SweepOptions
    from hpsearch.transfer import run_transfer
    from trainables.model_config import PRESETS

    corpus = heldout.build(source=corpus_name)
    ctx = PRESETS[args.preset].context_len
    tokens = args.steps * args.batch * ctx
    name = f"mup-transfer-{corpus_name}{args.tag}{'-quick' if args.quick else ''}"
    shutil.rmtree(RUNS_DIR / name, ignore_errors=True)
    config = RUNS_DIR / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # warmup 10 % of the horizon, cosine to 0: the same schedule shape at every LR
    extra = getattr(args, "model_extra", "")  # e.g. ", norm_gains: false" (bench/llama_proxy.py)
    config.write_text(f"model: {{preset: {args.preset}, vocab_size: {corpus['vocab_size']}, dropout: 0.0{extra}}}\n"
                      f"train: {{batch_size: {args.batch}, max_tokens: {tokens}, warmup_fraction: 0.1,"
                      f" initial_lr: 0.0, min_lr: 0.0, weight_decay: 0.0, num_epochs: 1000}}\n"
                      f"eval: {{eval_freq: {max(1, args.steps // 4)}, eval_iter: 8}}\n")
    opts = SweepOptions(name=name, config=str(config), data=corpus["path"], results_dir=str(RUNS_DIR),
                        dashboard=False, verbose=0, cpus_per_trial=1.0, gpus_per_trial=args.gpus_per_trial,
                        checkpoint_every=0)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    out = run_transfer(opts, widths=[int(w) for w in args.widths.split(",")],
                       lrs=[float(x) for x in args.lrs.split(",")], seeds=seeds, log=print)
    opt = out.optima.set_index(["arm", "emb_dim"])
    base = int(out.optima["emb_dim"].min())
    sp, mup = opt.loc[("sp", base)], opt.loc[("mup", base)]
    noise = sp["loss_std"] / sp["loss"]
    mup_losses = out.optima[out.optima["arm"] == "mup"].sort_values("emb_dim")["loss"].tolist()
    tol = 2 * max(noise, 1e-9) * mup_losses[0]
    return {
        "drift": {arm: fig(v) for arm, v in out.drift.items()}, "undetermined": out.undetermined,
        "gap_at_base_width": fig((mup["loss"] - sp["loss"]) / sp["loss"]), "noise": fig(noise),
        "mup_best_loss_by_width": [fig(v) for v in mup_losses],
        "wider_is_better": all(b <= a + tol for a, b in zip(mup_losses, mup_losses[1:])),
        "optima": out.optima.to_dict("records"), "table": out.table.to_dict("records"),
        "corpus": {k: v for k, v in corpus.items() if k not in ("path", "tokenizer")},
        "tokens_per_trial": tokens, "wall_s": round(time.perf_counter() - t0, 1),
    }


def study_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options :func:`study` reads (bench/llama_proxy.py runs the same study per block)."""
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--lrs", default="1e-3,2e-3,4e-3,8e-3,1.6e-2")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per trial (the horizon)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--corpora", default="packages,stdlib", help=f"held-out corpora: {', '.join(heldout.SOURCES)}")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="")
    return ap


def main() -> None:
    ap = study_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--preset", default="tiny", help="depth, heads and context of every width (default tiny: "
                                                     "2 layers, 2 heads, context 64)")
    args = ap.parse_args()
    if args.quick:
        args.widths, args.lrs, args.steps, args.seeds, args.corpora = "32,64", "2e-3,8e-3,3.2e-2", 20, "0,1", "packages"

    start_ray(worker_nice=0)  # Ray starts workers at nice 15: on a shared machine they would only get leftovers
    load0 = loadavg()
    per = {c: study(args, c) for c in args.corpora.split(",")}
    figures = {
        "mup_lr_drift_octaves": {c: r["drift"].get("mup") for c, r in per.items()} | {"seeds": len(args.seeds.split(","))},
        "sp_lr_drift_octaves": {c: r["drift"].get("sp") for c, r in per.items()},
        "mup_vs_sp_at_base_width": {c: {"gap": r["gap_at_base_width"], "noise": r["noise"]} for c, r in per.items()},
        "mup_wider_is_better": {c: r["wider_is_better"] for c, r in per.items()},
    }
    record(figures, {"per_corpus": per, "steps": args.steps, "widths": args.widths, "lrs": args.lrs,
                     "preset": args.preset, "batch": args.batch, "loadavg_start": load0},
           quick=args.quick, tag=args.tag)


if __name__ == "__main__":
    main()
