"""Issue 19: the trial engine against the serial script it replaces, on the same cores.

The reference is a plain serial loop written here after LLMs-from-scratch's hparam_search.py (ch05):
one process using every core's threads, the configurations one after another, the text tokenized
again for each, the book's GPTModel (its own attention with a mask buffer, LayerNorm, GELU; PyTorch's
default init) in fp32, torch's default AdamW, its 1-based warmup + cosine schedule with clipping after
warmup, no checkpoints, one evaluation batch at the end. The engine is the product's `pretrain()`
with issue 19's settings: `train.precision: auto` (bf16-mixed on a CPU with avx512_bf16/amx_bf16),
fused AdamW, SDPA attention, the token cache, a checkpoint at the end of each run (as a trial writes),
evaluation on one batch at the end only (the same work as the reference). Same model shape (a preset
at context 256, dropout 0.1), same text, same token split (the product's 90/10 of the tokens), same
windows, batch size, epochs and schedule constants, four peak LRs as in the issue.

Sides, each in its own child process (so its peak RSS is its own):
    reference      the serial script, all cores' threads
    engine-fp32    pretrain(), precision fp32, all cores' threads (what the engine gains besides bf16)
    engine         pretrain(), precision auto, all cores' threads
    engine-2x1     pretrain(), precision auto, 2 processes x 1 thread splitting the configs (a sweep's layout)
Throughput of a side = training tokens of its configs / the wall time of its configs (tokenization or
cache load, model build, training, evaluation and checkpoint included). Figures: each engine side's
throughput / the reference's, and achieved model FLOP/s (6 x matmul parameters + attention, per token)
against the machine's peak measured here with a large matmul, fp32 and bf16.

    python bench/engine_vs_reference.py [--quick] [--preset small|gpt2-124m] [--repeats N]
    python bench/engine_vs_reference.py --settings     # each setting alone: precision, AdamW, compile
    python bench/engine_vs_reference.py --memory       # where one run's memory goes, RSS by phase
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import torch
from torch import nn

from common import RUNS_DIR, record, spread, stamp

WORK = RUNS_DIR / "engine_vs_reference"
LRS = (1e-4, 5e-4, 1e-3, 5e-3)
SCHEDULE = {"initial_lr": 1e-5, "min_lr": 1e-5, "warmup_steps": 10, "weight_decay": 0.1, "max_norm": 1.0}
SIDES = ("reference", "engine-fp32", "engine", "engine-2x1")
QUICK = False  # --quick: no waiting for quiet cores (it only checks the script works)


def quiet(max_wait: float = 180.0) -> float | None:
    """common.wait_quiet before a timed run; None (not measured) under --quick."""
    return None if QUICK else common.wait_quiet(max_wait=max_wait)


# -- the corpus and the configurations -----------------------------------------------------------

def write_corpus(chars: int) -> Path:
    """The first ``chars`` characters of the embedded corpus (pydoc topics) as one text file."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))[:chars]
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"corpus-{chars}.txt"
    path.write_text(text, encoding="utf-8")
    return path


def product_config(args, lr: float, precision: str, corpus: Path):
    from trainables.config import PretrainConfig

    return PretrainConfig.from_dict({
        "model": {"preset": args.preset, "context_len": args.context, "dropout": 0.1},
        "data": {"path": str(corpus), "train_ratio": 0.9},
        "train": {"batch_size": args.batch_size, "num_epochs": args.epochs, "peak_lr": lr, "seed": 123,
                  "precision": precision, **SCHEDULE},
        "eval": {"eval_freq": 10**9, "eval_iter": 1},  # one batch at the end, as the reference
    })


def flops_per_token(cfg) -> float:
    """6 x parameters in matmuls (all but the embeddings) + 12 x layers x emb_dim x context (attention)."""
    from trainables.model import count_params

    matmul = count_params(cfg) - cfg.vocab_size * cfg.emb_dim - cfg.context_len * cfg.emb_dim
    return 6 * matmul + 12 * cfg.n_layers * cfg.emb_dim * cfg.context_len


def measure_peak(threads: int) -> dict:
    """Best FLOP/s of a 4096^3 matmul in fp32 and bf16 with ``threads`` threads (the machine's ceiling)."""
    torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
        a @ b
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        out[str(dtype).removeprefix("torch.")] = 2 * 4096**3 / best
    return out


# -- the reference: LLMs-from-scratch's GPTModel and training loop ------------------------------

class RefAttention(nn.Module):
    def __init__(self, d, ctx, dropout, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.W_query, self.W_key, self.W_value = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx), diagonal=1))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (w(x).view(b, t, self.heads, self.hd).transpose(1, 2) for w in (self.W_query, self.W_key, self.W_value))
        scores = q @ k.transpose(2, 3)
        scores.masked_fill_(self.mask.bool()[:t, :t], -torch.inf)
        weights = self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1))
        return self.out_proj((weights @ v).transpose(1, 2).contiguous().view(b, t, d))


class RefLayerNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x):
        mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + 1e-5) + self.shift


class RefGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * x**3)))


class RefBlock(nn.Module):
    def __init__(self, d, ctx, dropout, heads):
        super().__init__()
        self.att = RefAttention(d, ctx, dropout, heads)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), RefGELU(), nn.Linear(4 * d, d))
        self.norm1, self.norm2, self.drop = RefLayerNorm(d), RefLayerNorm(d), nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.att(self.norm1(x)))
        return x + self.drop(self.ff(self.norm2(x)))


class RefGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, ctx = cfg.emb_dim, cfg.context_len
        self.tok_emb, self.pos_emb = nn.Embedding(cfg.vocab_size, d), nn.Embedding(ctx, d)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.trf_blocks = nn.Sequential(*(RefBlock(d, ctx, cfg.dropout, cfg.n_heads) for _ in range(cfg.n_layers)))
        self.final_norm = RefLayerNorm(d)
        self.out_head = nn.Linear(d, cfg.vocab_size, bias=False)

    def forward(self, idx):
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1])))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def reference_loaders(ids: list[int], ctx: int, batch_size: int, train_ratio: float):
    """GPTDatasetV1 + DataLoader over the product's token split (train shuffled, drop_last)."""
    from torch.utils.data import DataLoader, TensorDataset

    def windows(part, shuffle, drop_last):
        starts = range(0, len(part) - ctx, ctx)
        x = torch.stack([torch.tensor(part[i:i + ctx]) for i in starts])
        y = torch.stack([torch.tensor(part[i + 1:i + ctx + 1]) for i in starts])
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)

    cut = int(len(ids) * train_ratio)
    return windows(ids[:cut], True, True), windows(ids[cut:], False, False)


def reference_run(cfg, text: str, max_steps: int | None = None) -> dict:
    """One configuration the way the reference script trains it (its epochs, or ``max_steps`` optimizer
    steps over as many passes as they take); the final train and val loss."""
    from trainables.corpus import get_tokenizer

    t, m = cfg.train, cfg.model
    ids = get_tokenizer().encode(text, allowed_special={"<|endoftext|>"})  # again for every config
    torch.manual_seed(123)
    train_loader, val_loader = reference_loaders(ids, m.context_len, t.batch_size, cfg.data.train_ratio)
    model = RefGPT(m)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.peak_lr, weight_decay=t.weight_decay)
    total = max_steps or len(train_loader) * t.num_epochs
    step, lr_increment = 0, (t.peak_lr - t.initial_lr) / t.warmup_steps
    while step < total:  # one pass per epoch
        model.train()
        for x, y in train_loader:
            if step >= total:
                break
            optimizer.zero_grad()
            step += 1  # 1-based, as the reference
            if step < t.warmup_steps:
                lr = t.initial_lr + step * lr_increment
            else:
                progress = (step - t.warmup_steps) / (total - t.warmup_steps)
                lr = t.min_lr + (t.peak_lr - t.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            if step >= t.warmup_steps:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=t.max_norm)
            optimizer.step()
    model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                  for x, y in (next(iter(train_loader)), next(iter(val_loader)))]
    return {"steps": step, "tokens": step * t.batch_size * m.context_len, "train_loss": losses[0],
            "val_loss": losses[1], "checkpoint_s": 0.0, "checkpoint_bytes": 0}


def engine_run(cfg, out: Path) -> dict:
    """One configuration through the product's pretrain(), with a checkpoint at the end (as a trial)."""
    from trainables.pretrain import pretrain

    summary = pretrain(cfg, out_dir=out, log=None)
    size = sum(f.stat().st_size for f in out.iterdir())
    shutil.rmtree(out, ignore_errors=True)
    return {"steps": summary.steps, "tokens": summary.tokens_seen, "train_loss": summary.final_train_loss,
            "val_loss": summary.final_val_loss, "checkpoint_s": summary.checkpoint_seconds,
            "checkpoint_bytes": size, "precision": summary.precision}


def worker(args) -> None:
    """A side in its own process: its configs one after another; JSON lines of per-config figures."""
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    text = corpus.read_text(encoding="utf-8")
    os.environ["HPSEARCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="evr-cache-", dir=WORK)  # cold cache, as a new corpus
    rows = []
    for i in args.configs:
        busy = common.wait_quiet() if args.wait else None
        precision = "fp32" if args.side == "engine-fp32" else "auto"
        cfg = product_config(args, LRS[i], precision, corpus)
        start, cpu = time.time(), time.process_time()
        if args.side == "reference":
            got = reference_run(cfg, text)
        else:
            got = engine_run(cfg, WORK / f"out-{os.getpid()}-{i}")
        rows.append({"config": i, "peak_lr": LRS[i], "start": start, "end": time.time(),
                     "wall_s": time.time() - start, "cpu_s": time.process_time() - cpu, "busy_at_start": busy, **got})
        print(f"{stamp()} {args.side} config {i} (lr {LRS[i]:g}): {rows[-1]['wall_s']:.1f} s, "
              f"val {got['val_loss']:.3f}", file=sys.stderr, flush=True)
    shutil.rmtree(os.environ["HPSEARCH_CACHE_DIR"], ignore_errors=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                          "threads": args.threads}))


def run_side(args, side: str, corpus: Path) -> dict:
    """Run a side in child processes; per-config rows, throughput, peak RSS."""
    n = len(args.configs)
    groups = [args.configs[0::2], args.configs[1::2]] if side == "engine-2x1" else [args.configs]
    threads = 1 if side == "engine-2x1" else os.cpu_count()
    base = [sys.executable, str(Path(__file__).resolve()), "--preset", args.preset, "--context", str(args.context),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--worker", side,
            "--corpus", str(corpus), "--threads", str(threads)]
    procs, outs = [], []
    for k, group in enumerate(groups):
        out = WORK / f"{side}-{k}.json"
        wait = len(groups) == 1 and not args.quick  # two at a time: each would wait on the other
        cmd = base + ["--out", str(out), "--configs", *map(str, group)] + (["--wait"] if wait else [])
        procs.append(subprocess.Popen(cmd))
        outs.append(out)
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"{side} worker failed with status {p.returncode}")
    parts = [json.loads(o.read_text()) for o in outs]
    rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: r["config"])
    assert len(rows) == n
    tokens = sum(r["tokens"] for r in rows)
    if side == "engine-2x1":  # together: first start to last end
        seconds = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    else:
        seconds = sum(r["wall_s"] for r in rows)
    return {"rows": rows, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_rss_mib": max(p["peak_rss_mib"] for p in parts), "processes": len(parts),
            "checkpoint_s": sum(r["checkpoint_s"] for r in rows), "checkpoint_bytes": sum(r["checkpoint_bytes"] for r in rows)}


def compare(args) -> None:
    from trainables.corpus import get_tokenizer, load_tokens
    from trainables.pretrain import plan_run, resolve_precision

    corpus = write_corpus(args.chars)
    cfg = product_config(args, LRS[0], "auto", corpus)
    with tempfile.TemporaryDirectory(dir=WORK) as cache:
        product_ids = load_tokens(str(corpus), cache_dir=cache, log=None).tokens
    assert list(product_ids) == get_tokenizer().encode(corpus.read_text(encoding="utf-8"),
                                                      allowed_special={"<|endoftext|>"}), "token ids differ"
    plan = plan_run(cfg, len(product_ids))
    fpt = flops_per_token(cfg.model)
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"{stamp()} {args.preset} at context {args.context}: {plan.describe()}; {fpt / 1e6:.1f} MFLOP/token; "
          f"precision auto -> {auto[0]} ({auto[1]})", flush=True)
    sides = [s for s in SIDES if s in args.sides]
    results = {s: [] for s in sides}
    peaks = []
    for r in range(args.repeats):
        print(f"{stamp()} peak matmul FLOP/s (busy {quiet()})", flush=True)
        peaks.append(measure_peak(os.cpu_count()))
        print(f"{stamp()}   fp32 {peaks[-1]['float32'] / 1e9:.0f} GFLOP/s, bf16 {peaks[-1]['bfloat16'] / 1e9:.0f} GFLOP/s",
              flush=True)
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # rotate the order each repeat
            if side == "engine-2x1":
                quiet()
            got = run_side(args, side, corpus)
            results[side].append(got)
            print(f"{stamp()} {side}: {got['tokens_per_s']:,.0f} tokens/s, peak RSS {got['peak_rss_mib']:,.0f} MiB, "
                  f"checkpoints {got['checkpoint_s']:.1f} s / {got['checkpoint_bytes'] / 1e6:,.0f} MB", flush=True)
    peak = {k: max(p[k] for p in peaks) for k in peaks[0]}
    ref = [g["tokens_per_s"] for g in results["reference"]]
    summary = {}
    for side in sides:
        tps = [g["tokens_per_s"] for g in results[side]]
        ratios = [a / b for a, b in zip(tps, ref)]
        summary[side] = {"tokens_per_s": tps, "ratio_to_reference": ratios,
                         "achieved_flops": [v * fpt for v in tps],
                         "fraction_of_fp32_peak": [v * fpt / peak["float32"] for v in tps],
                         "fraction_of_bf16_peak": [v * fpt / peak["bfloat16"] for v in tps],
                         "peak_rss_mib": [g["peak_rss_mib"] for g in results[side]],
                         "checkpoint_s_per_config": [g["checkpoint_s"] / len(args.configs) for g in results[side]],
                         "checkpoint_mb_per_config": [g["checkpoint_bytes"] / 1e6 / len(args.configs) for g in results[side]],
                         "final_val_loss": [[r["val_loss"] for r in g["rows"]] for g in results[side]]}
        s = summary[side]
        print(f"{side:12s} {spread(tps)} tokens/s | x{spread(ratios)} of reference | "
              f"{spread([v / 1e9 for v in s['achieved_flops']])} GFLOP/s = {spread(s['fraction_of_fp32_peak'])} of fp32 peak, "
              f"{spread(s['fraction_of_bf16_peak'])} of bf16 peak | peak RSS {spread(s['peak_rss_mib'])} MiB")
    figures = {}
    key = args.preset.replace("-", "_")
    for side, name in (("engine", "engine_vs_reference"), ("engine-fp32", "engine_fp32_vs_reference"),
                       ("engine-2x1", "engine_2x1_vs_reference")):
        if side in summary and "reference" in summary:
            figures[f"{name}_{key}"] = round(common.median(summary[side]["ratio_to_reference"]), 3)
    record(figures, {"preset": args.preset, "context_len": args.context, "batch_size": args.batch_size,
                     "epochs": args.epochs, "configs": [LRS[i] for i in args.configs], "plan": plan.describe(),
                     "flops_per_token": fpt, "precision_auto": auto, "peak_flops": peak, "peaks": peaks,
                     "summary": summary, "raw": results}, quick=args.quick)


# -- each setting alone -------------------------------------------------------------------------

def step_rate(cfg, tokens, steps: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of `steps` training steps after one warm-up step."""
    from trainables.pretrain import Run

    run = Run(cfg, tokens)
    batches = run.steps()
    step, x, y = next(batches)
    run.train_step(step, x, y)
    wall, cpu, n = time.perf_counter(), time.process_time(), 0
    for step, x, y in batches:
        run.train_step(step, x, y)
        n += x.numel()
        if step >= steps:
            break
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def measure_settings(args) -> None:
    """bf16 vs fp32 per preset, AdamW kernels, compile against its compile time (1 thread each)."""
    from trainables.config import PretrainConfig
    from trainables.corpus import load_tokens
    from trainables.model import GPT, param_groups, preset_config

    torch.set_num_threads(1)
    tokens = load_tokens(None, log=None).tokens
    out = {"precision": {}, "adamw": {}, "compile": {}}
    presets = {"tiny": (8, 6), "small": (8, 2)} if not args.quick else {"tiny": (8, 2)}
    for preset, (batch, steps) in presets.items():
        rates = {"fp32": [], "bf16-mixed": []}
        for _ in range(1 if args.quick else 3):
            for precision in rates:
                busy = quiet(max_wait=30)  # the figure is per CPU-second: blind to neighbours
                cfg = PretrainConfig.from_dict({"model": {"preset": preset}, "train": {
                    "batch_size": batch, "num_epochs": 1, "precision": precision, "warmup_steps": 2}})
                rates[precision].append((*step_rate(cfg, tokens, steps), busy))
        ratio_cpu = [b[1] / a[1] for a, b in zip(rates["fp32"], rates["bf16-mixed"])]
        ratio_wall = [b[0] / a[0] for a, b in zip(rates["fp32"], rates["bf16-mixed"])]
        out["precision"][preset] = {"rates": rates, "bf16_over_fp32_cpu": ratio_cpu, "bf16_over_fp32_wall": ratio_wall}
        print(f"{stamp()} {preset}: bf16-mixed / fp32 tokens per CPU-s x{spread(ratio_cpu)}, per wall-s x{spread(ratio_wall)}; "
              f"fp32 {spread([r[1] for r in rates['fp32']])} tok/CPU-s", flush=True)
    for preset in ("tiny", "small") if args.quick else ("tiny", "small", "gpt2-124m"):
        model = GPT(preset_config(preset))
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        times = {}
        for kind, kw in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
            opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, **kw)
            opt.step()
            quiet(max_wait=30)
            cpu = time.process_time()
            for _ in range(3):
                opt.step()
            times[kind] = (time.process_time() - cpu) / 3
            del opt
        out["adamw"][preset] = times
        print(f"{stamp()} AdamW step, {preset} ({model.num_params() / 1e6:.1f}M params), CPU-s: "
              + ", ".join(f"{k} {v:.3f}" for k, v in times.items()), flush=True)
        del model
    out["compile"] = measure_compile(args)
    record({}, {"settings": out}, quick=args.quick, tag=" --settings")


def measure_compile(args) -> dict:
    """The demo sweep's trial (tiny, 16,384 tokens, eval every 10 steps x 3 batches) eager vs compiled,
    each in a fresh process with an empty inductor cache: whole-run wall time and in-loop speed."""
    tokens = 4096 if args.quick else 16384
    out = {}
    for compiled in (False, True):
        busy = quiet()
        code = ("import sys, time, json, torch; torch.set_num_threads(1); sys.path.insert(0, %r)\n"
                "t = time.perf_counter()\n"
                "from trainables.config import PretrainConfig\nfrom trainables.pretrain import pretrain\n"
                "cfg = PretrainConfig.from_dict({'model': {'preset': 'tiny'}, 'train': {'batch_size': 8, "
                "'max_tokens': %d, 'warmup_steps': 10, 'compile': %r}, 'eval': {'eval_freq': 10, 'eval_iter': 3}})\n"
                "s = pretrain(cfg, log=None)\n"
                "print(json.dumps({'run_s': time.perf_counter() - t, 'in_loop_tps': s.tokens_per_second}))"
                % (str(common.REPO), tokens, compiled))
        with tempfile.TemporaryDirectory(dir=WORK) as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
            t = time.perf_counter()
            got = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
        got.update(process_s=time.perf_counter() - t, busy_at_start=busy)
        out["compiled" if compiled else "eager"] = got
        print(f"{stamp()} tiny trial of {tokens:,} tokens {'compiled' if compiled else 'eager'}: "
              f"{got['process_s']:.1f} s in all, {got['in_loop_tps']:,.0f} tokens/s in the loop", flush=True)
    return out


# -- memory -------------------------------------------------------------------------------------

def rss_mib() -> tuple[float, float, float]:
    """(RSS, anonymous RSS, peak RSS) of this process in MiB, from /proc/self/status.

    Anonymous memory is what the process itself holds; the rest of RSS is file pages (libraries,
    memory-mapped tokens and checkpoints) that the kernel can drop and read again."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "VmHWM"))


def memory_phases(args) -> list:
    """RSS after each phase of one run (this process, 1 thread, precision ``args.precision``)."""
    torch.set_num_threads(1)
    phases = [("torch imported", *rss_mib())]
    from trainables.corpus import load_tokens
    from trainables.pretrain import Run

    corpus = write_corpus(args.chars)
    tokens = load_tokens(str(corpus), log=None).tokens
    phases.append(("tokens loaded", *rss_mib()))
    run = Run(product_config(args, 5e-4, args.precision, corpus), tokens)
    params = sum(p.numel() for p in run.model.parameters()) * 4 / 2**20
    phases.append((f"model + optimizer built (weights {params:,.0f} MiB)", *rss_mib()))
    batches = run.steps()
    for _ in range(2):
        step, x, y = next(batches)
        run.train_step(step, x, y)
    phases.append((f"2 steps (+ AdamW moments {2 * params:,.0f} MiB; grads {params:,.0f} MiB freed)", *rss_mib()))
    run._evaluate(0.0, 0.0, time.perf_counter(), 0)
    phases.append(("an evaluation", *rss_mib()))
    with tempfile.TemporaryDirectory(dir=WORK) as d:
        run.save(Path(d))
        size = (Path(d) / "checkpoint.pt").stat().st_size / 2**20
        phases.append((f"a checkpoint ({size:,.0f} MiB in {run.checkpoint_seconds:.2f} s)", *rss_mib()))
        run.load(Path(d))
        phases.append(("loading it back", *rss_mib()))
    step, x, y = next(batches)
    run.train_step(step, x, y)
    phases.append(("one more step", *rss_mib()))
    return [[name, *(round(v) for v in values)] for name, *values in phases]


def measure_memory(args) -> None:
    """memory_phases of the preset in fp32 and in auto precision, each in a fresh process."""
    out = {}
    for precision in ("fp32", "auto"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory", "--preset", args.preset, "--context",
               str(args.context), "--batch-size", str(args.batch_size), "--chars", str(args.chars),
               "--precision", precision, "--out", str(WORK / f"memory-{precision}.json")]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out[precision] = json.loads((WORK / f"memory-{precision}.json").read_text())
        print(f"{args.preset}, precision {precision}:{'':30s} RSS (anon)   peak  MiB")
        for name, now, anon, peak in out[precision]:
            print(f"  {name:58s} {now:6,} ({anon:6,}) {peak:6,}")
    record({}, {"preset": args.preset, "phases": out}, quick=args.quick, tag=" --memory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 configs, 1 epoch: checks the script works")
    ap.add_argument("--preset", default="small", help="small (default; ~20 s a config) or gpt2-124m (~130 s)")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--chars", type=int, default=22_000, help="characters of the corpus (~5.3k tokens)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    ap.add_argument("--settings", action="store_true", help="measure each engine setting alone")
    ap.add_argument("--memory", action="store_true", help="RSS by phase of one run")
    ap.add_argument("--precision", default=None, help=argparse.SUPPRESS)  # --memory's child process
    # internal: one side's worker process
    ap.add_argument("--worker", choices=SIDES, dest="side", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--configs", type=int, nargs="+", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    if args.quick and not args.side:
        args.preset, args.context, args.epochs, args.chars = "tiny", 64, 1, 6_000
    if args.configs is None:
        args.configs = [0, 3] if args.quick else list(range(len(LRS)))
    WORK.mkdir(parents=True, exist_ok=True)
    if args.side:
        worker(args)
    elif args.settings:
        measure_settings(args)
    elif args.memory and args.precision:
        Path(args.out).write_text(json.dumps(memory_phases(args)))
    elif args.memory:
        measure_memory(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
