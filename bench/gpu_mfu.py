"""Issues 6 and 19: GPU tokens/s and model-FLOPs utilisation (MFU) of gpt2-124m; GPU sharing.

gpu_mfu = achieved model FLOP/s / the GPU's peak dense bf16 FLOP/s, for the product's training
loop (`Run.train`) on gpt2-124m at context 1024 with every engine setting of issue 19 on:
`train.precision: bf16-mixed` (autocast, fp32 master weights), `train.compile` (eager is measured
too), fused AdamW (the engine picks it where torch has it), `model.pad_vocab` (head and embedding
50,304 rows; loss over the real 50,257), attention forced onto SDPA's flash kernel (fails loudly if
flash cannot run), TF32 for what stays fp32. Dropout 0, as in nanoGPT's pretraining (and CPU's flash
kernel has no dropout). FLOPs per token = 6 x (parameters in matmuls: all but the two embedding
tables, unpadded) + 12 x layers x emb_dim x context (attention scores), as in nanoGPT / PaLM. Timed
after warm-up steps (compilation, autotuning), evaluation excluded.

GPU sharing: aggregate tokens/s of 4 tiny trials at 0.25 GPU each (one sweep) / one tiny trial alone.

On a machine without CUDA it prints why, records gpu_mfu = null and exits 0. `--cpu-check` runs the
same code path on CPU (nano, a few steps, every setting above on, bf16 emulated where the CPU lacks
it) and records nothing; tests/test_engine.py runs it in CI.

    python bench/gpu_mfu.py [--quick] [--no-compile] [--peak-tflops 989]
    python bench/gpu_mfu.py --cpu-check
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time

import common
import torch
import yaml

from common import RUNS_DIR, record, stamp

PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12}  # dense bf16 tensor-core FLOP/s


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_token(cfg) -> float:
    """Model FLOPs per trained token (the real vocabulary: padding rows are no model work)."""
    from trainables.model import count_params

    real = dataclasses.replace(cfg, pad_vocab=False)
    matmul = count_params(real) - real.vocab_size * real.emb_dim - real.context_len * real.emb_dim
    return 6 * matmul + 12 * cfg.n_layers * cfg.emb_dim * cfg.context_len


def measure_gpt2(*, device: str, preset: str, batch_size: int, warmup: int, steps: int, compile: bool,
                 tokens=None) -> dict:
    """tokens/s of Run.train over `steps` steps after `warmup` steps, every issue-19 setting on.

    The time is the second `Run.train` call's own: evaluation (at its end) excluded, warm-up
    (compilation, autotuning, allocator growth) done by the first call.
    """
    from trainables.config import EvalArgs, PretrainConfig, TrainArgs
    from trainables.corpus import load_tokens
    from trainables.model import preset_config
    from trainables.pretrain import Run

    from torch.nn.attention import SDPBackend, sdpa_kernel

    model_cfg = preset_config(preset, pad_vocab=True, dropout=0.0)
    cfg = PretrainConfig(model=model_cfg, preset=preset,
                         train=TrainArgs(batch_size=batch_size, num_epochs=10_000, warmup_steps=2, device=device,
                                         max_tokens=(warmup + steps) * batch_size * model_cfg.context_len,
                                         precision="bf16-mixed", compile=compile),
                         eval=EvalArgs(eval_freq=10**9, eval_iter=1, checkpoint_minutes=0))
    torch.backends.cuda.matmul.allow_tf32 = True  # what stays fp32 (the loss's softmax is no matmul)
    torch.backends.cudnn.allow_tf32 = True
    run = Run(cfg, load_tokens(None, log=None).tokens if tokens is None else tokens)
    full_plan = run.plan
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # fails loudly if flash cannot run
        run.plan = dataclasses.replace(full_plan, total_steps=warmup)  # warm-up: compile, autotune, allocator
        run.train(log=None)
        run.plan = full_plan
        summary = run.train(log=None)
    e = run.engine
    return {"tokens_per_s": summary.tokens_per_second, "flops_per_token": flops_per_token(model_cfg),
            "steps": steps, "batch_size": batch_size, "context_len": model_cfg.context_len,
            "params": run.model.num_params(), "padded_vocab": model_cfg.padded_vocab,
            "precision": e.precision, "compile": e.compile, "fused_adamw": e.fused_adamw,
            "tf32": torch.backends.cuda.matmul.allow_tf32, "sdpa": "flash",
            "state_keys_plain": not any(k.startswith("_orig_mod") for k in run.model.state_dict()),
            "final_val_loss": summary.final_val_loss}


def cpu_check(tokens=None) -> dict:
    """The GPU path on CPU: nano, 2 warm-up steps (compilation) and 3 timed ones, every setting on."""
    return measure_gpt2(device="cpu", preset="nano", batch_size=2, warmup=2, steps=3, compile=True, tokens=tokens)


def measure_sharing(quick: bool) -> dict:
    """4 tiny trials at 0.25 GPU each vs one alone: aggregate tokens/s over the sweep's span."""
    import os

    from hpsearch.sweep import SweepOptions, run_sweep
    from probe import events, per_trial, start_probed_ray

    log = RUNS_DIR / "probe-gpu.jsonl"
    start_probed_ray(log, num_cpus=min(8, os.cpu_count() or 1))
    space = RUNS_DIR / "gpu-share-space.yaml"
    space.write_text(yaml.safe_dump({"name": "gpu-share", "axes": {"peak_lr": {"grid": [1.0e-3]}},
                                     "fixed": {"warmup_steps": 10, "batch_size": 8, "num_epochs": 100}}))
    out = {}
    for n, gpus in ((1, 1.0), (4, 0.25)):
        opts = SweepOptions(space=str(space), mode="grid", name=f"gpu-share-{n}-{time.time_ns()}", num_samples=n,
                            model="tiny", max_tokens_per_trial=(1 << 18) if quick else (1 << 20),
                            eval_freq=200, eval_iter=3, cpus_per_trial=1.0, gpus_per_trial=gpus, max_concurrent=n,
                            results_dir=str(RUNS_DIR), dashboard=False, verbose=0)
        t0 = time.time()
        run_sweep(opts, log=lambda line: None)
        shutil.rmtree(RUNS_DIR / opts.name, ignore_errors=True)
        recs = list(per_trial(events(log, since=t0)).values())
        span = max(r["exit"] for r in recs) - min(r["first_step"] for r in recs)
        out[n] = sum(r["tokens"] for r in recs) / span
        print(f"{stamp()} {n} tiny trial(s) at {gpus:g} GPU: {out[n]:,.0f} tokens/s together", flush=True)
    return {"alone_tps": out[1], "four_tps": out[4], "sharing_ratio": out[4] / out[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, shorter sharing trials")
    ap.add_argument("--no-compile", action="store_true", help="measure eager only (default: eager and compiled)")
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)  # issue 6's flag: now the default
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak (default: by name)")
    ap.add_argument("--cpu-check", action="store_true", help="run the code path on CPU with nano; record nothing")
    args = ap.parse_args()
    if args.cpu_check:
        got = cpu_check()
        print(f"cpu-check: nano {got['tokens_per_s']:,.0f} tokens/s, {got['flops_per_token'] / 1e6:.1f} MFLOP/token; "
              f"precision {got['precision']}, compile {got['compile']}, fused AdamW {got['fused_adamw']}, "
              f"vocab rows {got['padded_vocab']:,}, SDPA {got['sdpa']}, TF32 {got['tf32']}")
        return
    if not torch.cuda.is_available():
        print("no CUDA device here: gpu_mfu not measured; run `python bench/gpu_mfu.py` on a GPU machine")
        record({"gpu_mfu": None}, {"reason": "no CUDA device"})
        return
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
    warmup, steps = (5, 20) if args.quick else (10, 50)
    results = {}
    for compiled in ((False,) if args.no_compile else (False, True)):
        got = measure_gpt2(device="cuda", preset="gpt2-124m", batch_size=args.batch_size, warmup=warmup,
                           steps=steps, compile=compiled)
        got["mfu"] = got["tokens_per_s"] * got["flops_per_token"] / peak if peak else None
        results["compiled" if compiled else "eager"] = got
        mfu = f"{got['mfu']:.3f}" if got["mfu"] is not None else "n/a (unknown peak: pass --peak-tflops)"
        print(f"{stamp()} gpt2-124m ({'compiled' if compiled else 'eager'}) on {name}: "
              f"{got['tokens_per_s']:,.0f} tokens/s, MFU {mfu}", flush=True)
    share = measure_sharing(args.quick)
    print(f"4 tiny trials at 0.25 GPU / 1 alone: {share['sharing_ratio']:.2f}x aggregate tokens/s")
    best = max(results.values(), key=lambda r: r["tokens_per_s"])
    record({"gpu_mfu": None if best["mfu"] is None else round(best["mfu"], 4),
            "gpu_tokens_per_s_gpt2_124m": round(best["tokens_per_s"]), "gpu_sharing_ratio_4x0.25": round(share["sharing_ratio"], 3)},
           {"quick": args.quick, "device": name, "peak_flops": peak, **results, "sharing": share}, quick=args.quick)


if __name__ == "__main__":
    main()
