"""`proxy_to_target_gap`: the whole recipe, proxy to target, measured where it is used.

    python bench/end_to_end.py            # CPU: proxy 16 wide x 2 deep, target 64 x 8 on 8x the tokens (~30 min)
    python bench/end_to_end.py --quick    # the same commands on toy sizes in ~2 minutes (figures go to runs only)
    python bench/end_to_end.py --width 256 --depth 4 --context 256 --budgets 2e6,4e6,8e6,1.6e7 \\
        --gpus-per-trial 1 --tag -gpu     # a GPU ladder, when an accelerator is lent

Every step is one of the product's own commands (run in-process through `hpsearch.cli.main`), on the
held-out package-text corpus with a 2,048-token BPE trained on the spot (bench/heldout.py), and nothing
is hand-tuned:

1. `hpsearch sweep --mode optuna-asha` on the proxy (μP + CompleteP) at its largest budget: LR, weight
   decay, clipping and warmup; `hpsearch export` of the winner.
2. `hpsearch scale --config winner.yaml`: the LR x batch ladder over 4 budgets, 2 seeds.
3. `hpsearch export LADDER --target-width 4W --target-depth 4D --target-tokens 8 x largest budget`:
   the predicted target config.
4. The target trained with that config, and with its LR x 1/4, 1/2, 2, 4 (same recipe otherwise),
   3 seeds each, as one `hpsearch sweep --mode grid`; where the best LR lands on the grid's edge the
   grid is extended by one more factor of 2 (at most twice), so the grid brackets the target's optimum.
5. The naive baseline: the same optuna-asha sweep under SP without a depth rule, its winner used
   unchanged (same LR, batch and schedule) at the target's shape and tokens, 3 seeds.

proxy_to_target_gap = (predicted config's loss - best grid LR's loss) / best grid LR's loss, losses
being each LR's mean over seeds of the best validation loss; "naive" is the same figure for step 5;
"noise" the relative seed std at the grid's best LR.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time

import common  # noqa: F401  (environment first)
import heldout
import numpy as np
import pandas as pd
import yaml
from common import RUNS_DIR, loadavg, record, start_ray


def cli(*argv) -> None:
    from hpsearch.cli import main

    argv = [str(a) for a in argv]
    print(f"$ hpsearch {' '.join(argv)}", flush=True)
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"hpsearch {argv[0]} exited {rc}")


def write_yaml(path, obj) -> str:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return str(path)


def seed_means(trials: pd.DataFrame) -> pd.DataFrame:
    """Per peak_lr: mean and std over seeds of best_val_loss (a non-finished trial counts as inf)."""
    t = trials.copy()
    t["loss"] = pd.to_numeric(t["best_val_loss"], errors="coerce").where(t["status"] == "completed").fillna(math.inf)
    return t.groupby("peak_lr").agg(loss=("loss", "mean"), std=("loss", "std"), runs=("loss", "size")).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--budgets", default="8000,16000,32000,64000", help="the proxy ladder's token budgets")
    ap.add_argument("--ladder-lrs", default="auto", help="the ladder's LRs (default: the proxy winner's LR x 2^k, "
                                                          "k = -3..3)")
    ap.add_argument("--batch-sizes", default="4,8,16")
    ap.add_argument("--samples", type=int, default=20, help="optuna-asha trials on the proxy")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per target point")
    ap.add_argument("--scale", type=int, default=4, help="target width and depth = this x the proxy's")
    ap.add_argument("--tokens-mult", type=int, default=8, help="target tokens = this x the largest proxy budget")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.quick:
        args.budgets, args.batch_sizes = "2000,4000,8000", "4,8"
        args.samples, args.seeds, args.scale, args.tokens_mult = 6, 2, 2, 2

    corpus = heldout.build(source="packages")
    start_ray(worker_nice=0)
    name = f"e2e{args.tag}{'-quick' if args.quick else ''}"
    runs = RUNS_DIR / name
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    where = ["--results-dir", runs, "--data", corpus["path"], "--no-dashboard", "-q",
             "--cpus-per-trial", 1, "--gpus-per-trial", args.gpus_per_trial]
    budgets = [int(float(b)) for b in args.budgets.split(",")]
    top = max(budgets)
    target_tokens = args.tokens_mult * top
    W, D = args.width * args.scale, args.depth * args.scale
    t0, load0 = time.perf_counter(), loadavg()

    def proxy_config(parametrization: str, rule: str) -> str:
        model = {"preset": "tiny", "vocab_size": corpus["vocab_size"], "emb_dim": args.width, "n_layers": args.depth,
                 "n_heads": args.heads, "context_len": args.context, "dropout": 0.0,
                 "parametrization": parametrization, "depth_rule": rule}
        if parametrization == "mup":
            model["base_width"] = args.width
        if rule != "none":
            model["base_depth"] = args.depth
        steps = top // (8 * args.context)
        return write_yaml(runs / f"proxy-{parametrization}.yaml", {
            "model": model,
            "train": {"batch_size": 8, "max_tokens": top, "warmup_fraction": 0.05, "initial_lr": 0.0,
                      "min_lr": 0.0, "num_epochs": 1000},
            "eval": {"eval_freq": max(1, steps // 5), "eval_iter": 8}})

    space = write_yaml(runs / "proxy-space.yaml", {
        "name": "e2e-proxy", "description": "the proxy's optuna-asha search",
        "axes": {"peak_lr": {"loguniform": [1e-4, 3e-2]}, "weight_decay": {"choice": [0.0, 0.1]},
                 "max_norm": {"choice": [0.5, 1.0, 2.0]}, "warmup_fraction": {"choice": [0.02, 0.05, 0.1]}}})

    # 1. the proxy's search (μP + CompleteP) and its winner
    cli("sweep", "--config", proxy_config("mup", "completep"), "--space", space, "--mode", "optuna-asha",
        "--num-samples", args.samples, "--seed", 0, "--name", "proxy", *where)
    cli("export", "proxy", "--out", runs / "proxy-best.yaml", "--results-dir", runs)
    best = yaml.safe_load((runs / "proxy-best.yaml").read_text())
    if args.ladder_lrs == "auto":
        ks = range(-1, 2) if args.quick else range(-3, 4)
        args.ladder_lrs = ",".join(f"{best['train']['peak_lr'] * 2.0 ** k:.4g}" for k in ks)
    # 2. the budget ladder from the winner (its warmup fraction, weight decay and clipping kept)
    cli("scale", "--config", runs / "proxy-best.yaml", "--budgets", args.budgets, "--lrs", args.ladder_lrs,
        "--batch-sizes", args.batch_sizes, "--seeds", "0,1", "--warmup-fraction", best["train"]["warmup_fraction"],
        "--name", "ladder", *where)
    # 3. the prediction for the target
    cli("export", "ladder", "--target-width", W, "--target-depth", D, "--target-tokens", target_tokens,
        "--out", runs / "target.yaml", "--results-dir", runs)
    target = yaml.safe_load((runs / "target.yaml").read_text())
    predicted_lr = float(target["train"]["peak_lr"])
    steps = target_tokens // (target["train"]["batch_size"] * args.context)
    target_eval = ["--eval-freq", max(1, steps // 8), "--eval-iter", 16]

    # 4. the target's own LR grid around the prediction, extended until it brackets the optimum
    seeds = list(range(args.seeds))
    factors = [0.25, 0.5, 1.0, 2.0, 4.0]
    frames = []
    for attempt in range(3):
        done = {round(f, 9) for df in frames for f in (df["peak_lr"] / predicted_lr).round(9)}
        todo = [f for f in factors if round(f, 9) not in done]
        grid = write_yaml(runs / f"target-grid-{attempt}.yaml", {
            "name": f"target-grid-{attempt}", "description": "the target's LR grid around the prediction",
            "axes": {"peak_lr": {"grid": [predicted_lr * f for f in todo]}, "seed": {"grid": seeds}}})
        cli("sweep", "--config", runs / "target.yaml", "--space", grid, "--mode", "grid", "--name", f"target-{attempt}",
            *target_eval, *where)
        frames.append(pd.read_parquet(runs / f"target-{attempt}" / "trials.parquet"))
        table = seed_means(pd.concat(frames))
        best_lr = float(table.loc[table["loss"].idxmin(), "peak_lr"])
        lo, hi = min(factors), max(factors)
        if math.isclose(best_lr, predicted_lr * lo):
            factors.append(lo / 2)
        elif math.isclose(best_lr, predicted_lr * hi):
            factors.append(hi * 2)
        else:
            break
    table = seed_means(pd.concat(frames)).sort_values("peak_lr")
    best_row = table.loc[table["loss"].idxmin()]
    pred_row = table.loc[np.isclose(table["peak_lr"], predicted_lr)].iloc[0]
    gap = (pred_row["loss"] - best_row["loss"]) / best_row["loss"]
    bracketed = best_row["peak_lr"] not in (table["peak_lr"].min(), table["peak_lr"].max())

    # 5. the naive baseline: the SP proxy's winner, unchanged, at the target's shape and tokens
    cli("sweep", "--config", proxy_config("sp", "none"), "--space", space, "--mode", "optuna-asha",
        "--num-samples", args.samples, "--seed", 0, "--name", "proxy-sp", *where)
    cli("export", "proxy-sp", "--out", runs / "proxy-sp-best.yaml", "--results-dir", runs)
    naive = yaml.safe_load((runs / "proxy-sp-best.yaml").read_text())
    naive["model"].update(emb_dim=W, n_layers=D)
    naive["train"].update(max_tokens=target_tokens)
    seeds_space = write_yaml(runs / "seeds.yaml", {"name": "seeds", "description": "seeds", "axes": {"seed": {"grid": seeds}}})
    cli("sweep", "--config", write_yaml(runs / "naive.yaml", naive), "--space", seeds_space, "--mode", "grid",
        "--name", "naive", *target_eval, *where)
    naive_trials = pd.read_parquet(runs / "naive" / "trials.parquet")
    naive_losses = pd.to_numeric(naive_trials["best_val_loss"], errors="coerce").where(naive_trials["status"] == "completed")
    naive_loss = float(naive_losses.fillna(math.inf).mean())
    naive_gap = (naive_loss - best_row["loss"]) / best_row["loss"]
    wall = time.perf_counter() - t0

    noise = float(best_row["std"] / best_row["loss"]) if pd.notna(best_row["std"]) else None
    desc = (f"proxy {args.width}w x {args.depth}d (μP + CompleteP) tuned on budgets {budgets}; target {W}w x {D}d, "
            f"{target_tokens:,} tokens ({args.tokens_mult}x the largest proxy budget), vocab {corpus['vocab_size']} BPE, "
            f"held-out package-text corpus")
    figures = {"proxy_to_target_gap": {
        "value": round(float(gap), 5), "seeds": len(seeds), "naive": round(float(naive_gap), 5),
        "noise": None if noise is None else round(noise, 5), "bracketed": bool(bracketed), "target": desc}}
    print(table.to_string(index=False))
    print(f"predicted LR {predicted_lr:.4g} (batch {target['train']['batch_size']}): loss {pred_row['loss']:.4f}; grid best "
          f"LR {best_row['peak_lr']:.4g}: {best_row['loss']:.4f}; gap {gap:+.2%} (seed noise {noise or float('nan'):.2%}); "
          f"naive SP {naive_loss:.4f}: {naive_gap:+.2%}")
    prov = yaml.safe_load((runs / "target.provenance.yaml").read_text())
    record(figures, {"target_grid": table.to_dict("records"), "predicted": {
        "peak_lr": predicted_lr, "batch_size": target["train"]["batch_size"], "loss": float(pred_row["loss"]),
        "budget_transfer": {k: prov.get("budget_transfer", {}).get(k) for k in ("peak_lr", "lr_ci", "batch_size", "notes")}},
        "proxy_winner": best["train"], "naive": {"config": naive["train"], "loss": naive_loss,
                                                "losses": naive_trials["best_val_loss"].tolist()},
        "corpus": {k: v for k, v in corpus.items() if k not in ("path", "tokenizer")},
        "wall_s": round(wall, 1), "loadavg_start": load0},
        quick=args.quick, tag=args.tag)
    (runs / "summary.json").write_text(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
