"""A budget ladder's held-out verification over more seeds: is its loss gap the fit's or the noise's?

    python bench/ladder_reverify.py --name wsd-ladder-sqrt2-wsd --seeds 2,3,4,5,6,7
    python bench/ladder_reverify.py --name wsd-ladder-sqrt2-cosine --seeds 2,3,4,5,6,7
    python bench/ladder_reverify.py --name NAME --scaling /tmp/bench_runs/NAME/scaling-vertex.json --seeds 2,...,15

`scaling_law_loss_gap` compares the predicted config's seed mean with the grid's best seed mean at the
held-out budget, both over the ladder's seeds (often 2). The grid's best is a minimum over many
configurations' two-seed means, so it sits below that configuration's expected loss by about the seed
noise, and the gap inherits it. This trains, at the held-out budget of a finished `hpsearch scale`
sweep (bench/wsd_ladder.py's, under /tmp/bench_runs), both the predicted config and the grid's best
config over new seeds, with the ladder's recorded config (model, corpus) and schedule (the verification's settings),
and reports the gap over all seeds (the ladder's and the new ones) with its standard error from the
per-seed differences, next to the ladder's own figure. ``--scaling`` checks another fit of the same ladder
(a copy of scaling.json from `hpsearch scale --name NAME --resume --optimum vertex`); seeds any earlier
recheck of the same config trained are reused, not retrained.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

import common  # noqa: F401  (environment first)
import pandas as pd

from common import RUNS_DIR, record, start_ray, stamp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="a finished scale sweep under /tmp/bench_runs")
    ap.add_argument("--seeds", default="2,3,4,5,6,7",
                    help="new seed values (earlier rechecks' other seeds of the same configs are counted too)")
    ap.add_argument("--config", default=None, help="a config file to train from (default: the ladder's recorded config)")
    ap.add_argument("--scaling", default=None,
                    help="the scaling.json whose prediction is checked (default: the ladder's; a copy kept from "
                         "a fit with another --optimum checks that fit's prediction)")
    args = ap.parse_args()
    from hpsearch.options import SweepOptions
    from hpsearch.scale import ladder_config, verify_space
    from hpsearch.sweep import run_sweep
    from trainables.config import PretrainConfig

    ladder = RUNS_DIR / args.name
    if not (ladder / "scaling.json").is_file():
        raise SystemExit(f"{ladder}/scaling.json is missing: run the ladder first (python bench/wsd_ladder.py)")
    scaled = json.loads(Path(args.scaling or ladder / "scaling.json").read_text())
    held, method = scaled["holdout"], scaled.get("optimum", "near-optimal")
    predicted = "predicted" if method == "near-optimal" else f"predicted-{method}"
    meta = json.loads((ladder / "sweep.json").read_text())
    fixed = meta["space"]["fixed"]
    wsd = fixed.get("schedule") == "wsd"
    schedule = ({k: fixed[k] for k in ("schedule", "warmup_steps", "warmup_fraction")} if wsd
                else {"warmup_fraction": fixed["warmup_fraction"]})
    if meta["base_config"]["eval"].get("eval_batch_size"):  # the ladder's validation windows
        schedule["eval_batch_size"] = meta["base_config"]["eval"]["eval_batch_size"]
    config = args.config or str(ladder_config(ladder, PretrainConfig.from_dict(meta["base_config"],
                                                                              source=f"{ladder}/sweep.json")))
    largest = int(held["budget_tokens"])
    table = pd.read_csv(ladder / "scaling.csv")
    at = table[table["budget_tokens"] == largest]
    best_lr, best_batch = at.groupby(["peak_lr", "batch_size"])["loss"].mean().idxmin()
    old_verify = pd.read_parquet(RUNS_DIR / held["verify_sweep"] / "trials.parquet")
    configs = {predicted: (float(held["predicted_lr"]), int(held["predicted_batch_size"])),
               "grid_best": (float(best_lr), int(best_batch))}
    losses = {  # seed -> final loss, from the ladder's own runs
        predicted: dict(zip(old_verify["seed"].astype(int), old_verify["final_val_loss"].astype(float)))
        if "seed" in old_verify else {},
        "grid_best": dict(zip(*[at[(at["peak_lr"] == best_lr) & (at["batch_size"] == best_batch)][c]
                                for c in ("seed", "loss")]))}
    if not losses[predicted]:
        raise SystemExit(f"{held['verify_sweep']}/trials.parquet has no seed column")
    seeds = [int(s) for s in args.seeds.split(",")]
    start_ray(worker_nice=0)
    for label, (lr, batch) in configs.items():
        # earlier rechecks of the same config count too (--seeds 8,...,15 adds to 2-7's), and are not rerun
        for earlier in sorted(RUNS_DIR.glob(f"{args.name}-reverify-*/trials.parquet")):
            was = json.loads((earlier.parent / "sweep.json").read_text())["space"]["fixed"]
            if math.isclose(was["peak_lr"], lr) and was["batch_size"] == batch:
                old = pd.read_parquet(earlier)
                losses[label].update(zip(old["seed"].astype(int), old["final_val_loss"].astype(float)))
        todo = [s for s in seeds if s not in losses[label]]
        if not todo:
            continue
        opts = SweepOptions(name=f"{args.name}-reverify-{label}" + (f"-from{todo[0]}" if todo[0] != 2 else ""),
                            config=config, results_dir=str(RUNS_DIR), dashboard=False, verbose=0,
                            cpus_per_trial=1.0, checkpoint_every=1000, mode="grid", num_samples=1)
        shutil.rmtree(RUNS_DIR / opts.name, ignore_errors=True)
        out = run_sweep(opts, space=verify_space(budget=largest, lr=lr, batch_size=batch, seeds=todo,
                                                 schedule=schedule), log=lambda line: None)
        trials = out.trials
        losses[label].update(zip(trials["seed"].astype(int), trials["final_val_loss"].astype(float)))
        print(f"{stamp()} {label}: lr {lr:.4g}, batch {batch}: " + ", ".join(
            f"seed {s} {v:.4f}" for s, v in sorted(losses[label].items())), flush=True)
    common_seeds = sorted(set(losses[predicted]) & set(losses["grid_best"]))
    pred = [losses[predicted][s] for s in common_seeds]
    best = [losses["grid_best"][s] for s in common_seeds]
    diffs = [(p - b) / statistics.mean(best) for p, b in zip(pred, best)]
    gap = statistics.mean(pred) / statistics.mean(best) - 1.0
    stderr = statistics.stdev(diffs) / math.sqrt(len(diffs))
    noise = statistics.stdev(best) / statistics.mean(best)
    print(f"{args.name}: held-out budget {largest:,}; predicted ({method}) lr {configs[predicted][0]:.4g} batch "
          f"{configs[predicted][1]} vs the grid's best lr {best_lr:.4g} batch {best_batch}; over {len(common_seeds)} "
          f"seeds the gap is {gap:.4f} ± {stderr:.4f} (standard error; the ladder's own figure "
          f"{held['scaling_law_loss_gap']:.4f} over its seeds); seed noise {noise:.2%}")
    key = "wsd" if wsd else "cosine"
    suffix = "" if method == "near-optimal" else f"_{method.replace('-', '_')}"
    record({f"{key}_ladder_gap_over_{len(common_seeds)}_seeds{suffix}": round(gap, 5)},
           {"ladder": args.name, "optimum": method, "budget_tokens": largest, "configs": configs, "losses": losses,
            "seeds": common_seeds, "gap": gap, "stderr": stderr, "seed_noise_rel_std": noise,
            "ladder_gap": held["scaling_law_loss_gap"]}, tag=f" {args.name}{suffix.replace('_', '-')}")


if __name__ == "__main__":
    main()
