"""`llama_vs_gpt2_proxy`: the Llama-style tiny proxy beside the GPT-2 one, on the same corpus and budget.

    python bench/llama_proxy.py            # 2 held-out corpora, 3 blocks, widths 32-128, 5 LRs, 2 seeds (~25 min)
    python bench/llama_proxy.py --quick    # the same code path in a couple of minutes (figures go to runs only)

Per held-out corpus (bench/heldout.py: the installed packages' READMEs and licenses, the standard
library's source; each with a 2,048-token BPE trained on it) and per block:

- gpt2:          the tiny preset (LayerNorm, GELU MLP, learned positions, biases);
- llama:         llama-tiny (RMSNorm, SwiGLU, RoPE, no biases), trainable norm gains;
- llama-nogains: llama-tiny with parameter-free RMSNorm (model.norm_gains: false);

it records the engine's training speed (tokens/s of `trainables.pretrain` alone, one thread, width 64,
median of 3 runs, no Ray) and the product's `hpsearch transfer` study of μP against SP across width
(bench/mup_transfer.py's `study`: same widths, LRs, horizon and seeds for every block). The figure of
each block is μP's best-LR drift in octaves (null where an optimum sits on the grid's edge), its gap to
SP at the base width, and whether its best loss improves with width.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common  # noqa: F401  (environment first)
import heldout
import mup_transfer
from common import loadavg, record, start_ray

BLOCKS = {"gpt2": ("tiny", ""), "llama": ("llama-tiny", ""), "llama-nogains": ("llama-tiny", ", norm_gains: false")}


def tokens_per_second(preset: str, extra: str, corpus: dict, steps: int, batch: int, repeats: int) -> dict:
    """The engine alone: median tokens/s of `repeats` runs of `steps` steps at the preset's width."""
    import numpy as np
    import torch
    import yaml

    from trainables.config import PretrainConfig
    from trainables.pretrain import pretrain

    torch.set_num_threads(1)
    tokens = np.fromfile(corpus["path"], dtype=np.uint16)
    model = yaml.safe_load(f"{{preset: {preset}, vocab_size: {corpus['vocab_size']}, dropout: 0.0{extra}}}")
    cfg = PretrainConfig.from_dict({
        "model": model, "train": {"batch_size": batch, "max_tokens": steps * batch * 64, "num_epochs": 1000,
                                  "warmup_fraction": 0.1, "initial_lr": 0.0, "min_lr": 0.0, "peak_lr": 4e-3},
        "eval": {"eval_freq": steps, "eval_iter": 1}}, source="bench")
    runs = [pretrain(cfg, tokens=tokens, log=None) for _ in range(repeats)]
    tps = [r.tokens_per_second for r in runs]
    return {"tokens_per_s": round(statistics.median(tps), 1), "all": [round(t, 1) for t in tps],
            "params": runs[0].num_params}


def main() -> None:
    ap = mup_transfer.study_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--blocks", default=",".join(BLOCKS))
    ap.add_argument("--speed-steps", type=int, default=200)
    args = ap.parse_args()
    if args.quick:
        args.widths, args.lrs, args.steps, args.seeds, args.corpora = "32,64", "2e-3,4e-3,8e-3", 10, "0", "packages"
        args.speed_steps = 10

    load0 = loadavg()
    speed = {}
    for corpus_name in args.corpora.split(",")[:1]:  # speed on the first corpus: the engine, not the text
        corpus = heldout.build(source=corpus_name)
        for block in args.blocks.split(","):
            preset, extra = BLOCKS[block]
            t0 = time.perf_counter()
            speed[block] = tokens_per_second(preset, extra, corpus, args.speed_steps, args.batch, 1 if args.quick else 3)
            print(f"{block}: {speed[block]['tokens_per_s']:.0f} tokens/s, {speed[block]['params']:,} parameters "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    start_ray(worker_nice=0)
    per = {}
    for block in args.blocks.split(","):
        preset, extra = BLOCKS[block]
        study_args = argparse.Namespace(**{**vars(args), "preset": preset, "model_extra": extra,
                                           "tag": f"-{block}{args.tag}"})
        per[block] = {c: mup_transfer.study(study_args, c) for c in args.corpora.split(",")}
        for c, r in per[block].items():
            print(f"{block} on {c}: μP drift {r['drift'].get('mup')}, SP drift {r['drift'].get('sp')}, "
                  f"μP best loss by width {r['mup_best_loss_by_width']}", flush=True)

    figures = {"llama_vs_gpt2_proxy": {
        block: {"tokens_per_s": speed.get(block, {}).get("tokens_per_s"),
                "mup_lr_drift_octaves": {c: r["drift"].get("mup") for c, r in rows.items()},
                "sp_lr_drift_octaves": {c: r["drift"].get("sp") for c, r in rows.items()},
                "mup_best_loss_by_width": {c: r["mup_best_loss_by_width"] for c, r in rows.items()},
                "mup_wider_is_better": {c: r["wider_is_better"] for c, r in rows.items()},
                "undetermined": {c: r["undetermined"] for c, r in rows.items() if r["undetermined"]}}
        for block, rows in per.items()} | {"seeds": len(args.seeds.split(","))}}
    record(figures, {"speed": speed, "per_block": per, "steps": args.steps, "widths": args.widths,
                     "lrs": args.lrs, "batch": args.batch, "loadavg_start": load0},
           quick=args.quick, tag=args.tag)


if __name__ == "__main__":
    main()
