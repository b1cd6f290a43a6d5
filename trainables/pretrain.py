"""One pretraining run: tokens -> GPT -> AdamW with warmup + cosine LR and clipping after warmup.

The schedule gives one base LR per step; each AdamW parameter group runs at that LR times its
``lr_scale`` (1 everywhere under SP; 1/width_mult on μP's hidden matrices, see model.param_groups).

Never imports Ray. Progress leaves through two plain callables, so the same function runs in a
unit test, inside a Tune trial (which turns each evaluation into ``tune.report``) and as the full
run of an exported config:

    on_eval(metrics: dict, save_checkpoint: Callable[[Path], None]) -> None
    log(line: str) -> None
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from trainables.files import atomic_write, atomic_write_text
from trainables.config import PretrainConfig, TrainArgs, warmup_steps_of
from trainables.corpus import WindowLoader, load_data, split_tokens
from trainables.errors import CheckpointError, ConfigError, DataError, DiskFullError, first_line
from trainables.model import GPT, GPTConfig, param_groups
from trainables.status import COMPLETED, DIVERGED

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
SHAPE_KEYS = ("vocab_size", "pad_vocab", "context_len", "emb_dim", "n_layers", "n_heads", "qkv_bias",
              "tie_embeddings", "parametrization", "base_width", "depth_rule", "base_depth", "linear_bias", "norm", "mlp",
              "mlp_hidden", "positions", "rope_base")
"""Model fields a checkpoint must share with the config it resumes under (shapes, tying, μP's scaling)."""

EvalCallback = Callable[[dict, Callable[[Path], None]], None]


def lr_at(step: int, *, warmup_steps: int, total_steps: int, initial_lr: float, peak_lr: float,
          min_lr: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    ``step`` counts the optimizer steps already taken, the number a checkpoint stores, so a resumed
    run needs no offset. Step 0 runs at ``initial_lr``, step ``warmup_steps`` (the first clipped one)
    at ``peak_lr``; the last step, ``total_steps - 1``, stops one cosine step short of ``min_lr``.
    LLMs-from-scratch counts from 1 and its last step lands on ``min_lr``: the same curve shifted by
    one step (its LR at step s + 1 is this one's at step s).
    """
    if step < warmup_steps:
        return initial_lr + step * (peak_lr - initial_lr) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    assert 0.0 <= progress <= 1.0, f"progress {progress} out of [0, 1] at step {step}/{total_steps}"
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_gradients(params, *, step: int, warmup_steps: int, max_norm: float) -> bool:
    """Clip gradients to global L2 norm ``max_norm`` on every step after warmup; True if it ran.

    The source document writes ``step > warmup_steps``, which skips the first post-warmup step;
    its upstream corrected it to ``>=``, as here.
    """
    if step < warmup_steps:
        return False
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return True


@dataclass(frozen=True)
class RunPlan:
    """Quantities derived once from the config and the corpus, printed at the start of a run."""

    n_tokens: int
    train_tokens: int
    val_tokens: int
    train_windows: int
    val_windows: int
    batches_per_epoch: int
    tokens_per_step: int
    total_steps: int
    epochs: float  # < num_epochs when max_tokens cuts the run short
    warmup_steps: int  # train.warmup_steps, or train.warmup_fraction of total_steps

    def describe(self) -> str:
        return (f"corpus {self.n_tokens:,} tokens (train {self.train_tokens:,} / val {self.val_tokens:,}); "
                f"{self.train_windows:,} train windows, {self.val_windows:,} val windows; "
                f"{self.batches_per_epoch} steps/epoch x {self.epochs:g} epochs = {self.total_steps} steps "
                f"of {self.tokens_per_step:,} tokens = {self.total_steps * self.tokens_per_step:,} tokens")


def plan_run(config: PretrainConfig, n_tokens: int, *, source: str = "corpus") -> RunPlan:
    """Check the config against a corpus of ``n_tokens`` and derive the run's size; DataError/ConfigError if it cannot run."""
    ctx, t = config.model.context_len, config.train
    train_n = int(n_tokens * config.data.train_ratio)
    val_n = n_tokens - train_n
    stride = config.stride
    train_windows = len(range(0, max(train_n - ctx, 0), stride))
    val_windows = len(range(0, max(val_n - ctx, 0), stride))
    need = ctx + 1
    for split, n, windows in (("train", train_n, train_windows), ("val", val_n, val_windows)):
        if windows == 0:
            raise DataError(
                f"{source}: {n_tokens:,} tokens give a {split} split of {n:,} tokens, but one window needs {need:,} "
                f"(context_len {ctx} + 1); use a larger corpus, a smaller model.context_len, "
                f"or adjust data.train_ratio ({config.data.train_ratio})")
    if t.batch_size > train_windows:
        raise DataError(
            f"{source}: train.batch_size {t.batch_size} exceeds the {train_windows} training windows "
            f"(train batches drop the last partial batch, so no step could run); "
            f"use batch_size <= {train_windows} or a larger corpus")
    batches = train_windows // t.batch_size
    tokens_per_step = t.batch_size * ctx
    total = batches * t.num_epochs
    if t.max_tokens is not None:
        total = min(total, max(1, t.max_tokens // tokens_per_step))
    warmup = warmup_steps_of(t, total)
    if warmup >= total:
        what = (f"train.warmup_fraction {t.warmup_fraction:g} ({warmup} steps)" if t.warmup_fraction is not None
                else f"train.warmup_steps ({warmup})")
        raise ConfigError(
            f"{what} must be below the run's total steps ({total} = "
            f"{batches} steps/epoch x {t.num_epochs} epochs"
            + (f", capped by max_tokens {t.max_tokens:,}" if t.max_tokens else "")
            + "); lower warmup_steps or train longer")
    return RunPlan(n_tokens, train_n, val_n, train_windows, val_windows, batches, tokens_per_step,
                   total, round(total / batches, 3), warmup)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(name)


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of CPUs with bf16 dot-product instructions (oneDNN's bf16 matmul kernels)."""


@functools.lru_cache(maxsize=None)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 instruction flags this CPU reports in /proc/cpuinfo (empty off Linux or without them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(fp32 | bf16-mixed, why) for ``train.precision`` on ``device``; auto is detected, never assumed."""
    if precision != "auto":
        return precision, "set"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"auto: {name} has bf16"
        return "fp32", f"auto: {name} has no fast bf16"
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        if not flags:
            return "fp32", "auto: CPU has no avx512_bf16/amx_bf16"
        if not torch.backends.mkldnn.is_available():
            return "fp32", "auto: torch built without oneDNN"
        return "bf16-mixed", f"auto: CPU has {'+'.join(flags)}"
    return "fp32", f"auto: no bf16 rule for {device.type}"


@functools.lru_cache(maxsize=None)
def fused_adamw_supported(device_type: str) -> bool:
    """Whether this torch has the fused AdamW (one kernel over all tensors) on ``device_type``.

    torch 2.13 has it on CPU too; on 2 EPYC cores it steps 4-8x faster than the per-tensor loop
    torch picks on CPU by default (bench/RESULTS.md, issue 19).
    """
    try:
        p = torch.zeros(1, device=device_type, requires_grad=True)
        torch.optim.AdamW([p], fused=True)
        return True
    except (RuntimeError, ValueError):
        return False


@dataclass(frozen=True)
class Engine:
    """How a run computes, resolved once from train.device, train.precision and train.compile."""

    device: torch.device
    precision: str  # fp32 | bf16-mixed, never auto
    why: str  # "set", or what auto found
    compile: bool
    fused_adamw: bool

    @classmethod
    def resolve(cls, train: TrainArgs) -> Engine:
        device = resolve_device(train.device)
        precision, why = resolve_precision(train.precision, device)
        return cls(device, precision, why, train.compile, fused_adamw_supported(device.type))

    def autocast(self):
        """The forward pass's context: bf16 autocast (weights stay fp32, matmuls run in bf16) or none."""
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def adamw_options(self) -> dict:
        return {"fused": True, "foreach": None} if self.fused_adamw else {"fused": None, "foreach": True}

    def describe(self) -> str:
        why = "" if self.why == "set" else f" ({self.why})"
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        return (f"engine: {self.device}{threads}, precision {self.precision}{why}, "
                f"compile {'on' if self.compile else 'off'}, AdamW {'fused' if self.fused_adamw else 'foreach'}")


@dataclass
class RunSummary:
    status: str  # completed | diverged
    steps: int
    tokens_seen: int
    best_val_loss: float
    best_val_step: int
    best_val_tokens: int
    final_val_loss: float
    final_train_loss: float
    train_seconds: float
    tokens_per_second: float
    num_params: int
    plan: dict
    evals: list[dict] = field(default_factory=list)
    message: str = ""
    precision: str = "fp32"
    checkpoint_seconds: float = 0.0
    """Wall time this process spent writing checkpoints (torch.save and the atomic rename)."""

    def to_dict(self) -> dict:
        return asdict(self)


def calc_loss_batch(model: GPT, x: torch.Tensor, y: torch.Tensor, device: torch.device, autocast) -> torch.Tensor:
    """Mean next-token cross-entropy of the batch; ``autocast`` is the forward's context (Engine.autocast)."""
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    with autocast():
        return model(x, y)  # fp32 scalar: the softmax runs in fp32 under bf16-mixed too (trainables/loss.py)


@torch.no_grad()
def evaluate(model: GPT, loader: WindowLoader, num_batches: int, device: torch.device, autocast) -> float:
    """Mean loss over the first ``num_batches`` batches (in order) of ``loader``."""
    if len(loader) == 0:
        raise DataError("cannot evaluate on an empty loader (no complete window); use a larger corpus "
                        "or a smaller context_len")
    was_training = model.training
    model.eval()
    losses = []
    for i, (x, y) in enumerate(loader.batches(0)):
        if i >= num_batches:
            break
        losses.append(calc_loss_batch(model, x, y, device, autocast).item())
    model.train(was_training)
    return sum(losses) / len(losses)


class Run:
    """The state of one run: model, optimizer, loaders and progress counters. Checkpointable."""

    def __init__(self, config: PretrainConfig, tokens: np.ndarray, *, source: str = "corpus"):
        self.config = config
        self.plan = plan_run(config, len(tokens), source=source)
        top = int(tokens.max()) if len(tokens) else 0
        if top >= config.model.vocab_size:  # an id the embedding has no row for: say so, never an IndexError
            raise DataError(f"{source}: token id {top} is not below model.vocab_size {config.model.vocab_size:,}, so "
                            "the ids came from a larger vocabulary; set model.vocab_size to your tokenizer's size")
        self.engine = Engine.resolve(config.train)
        self.device = self.engine.device
        cuda = self.device.type == "cuda"
        t = config.train
        _seed_everything(t.seed)
        train_tok, val_tok = split_tokens(tokens, config.data.train_ratio)
        common = dict(context_len=config.model.context_len, stride=config.stride,
                      batch_size=t.batch_size, pin_memory=cuda)
        self.train_loader = WindowLoader(train_tok, shuffle=True, drop_last=True, seed=t.seed, **common)
        self.train_eval_loader = WindowLoader(train_tok, shuffle=False, drop_last=True, **common)
        self.val_loader = WindowLoader(val_tok, shuffle=False, drop_last=False, **common)
        self.model = GPT(config.model).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.weight_decay), lr=t.initial_lr,
                                           **self.engine.adamw_options())
        self.autocast = self.engine.autocast
        if self.engine.compile:
            self.model.compile()  # compiles __call__ in place: parameter names and checkpoints unchanged
        self.checkpoint_seconds = 0.0
        self.last_checkpoint = time.monotonic()  # the clock of eval.checkpoint_minutes
        self.step = 0
        self.tokens_seen = 0
        self.best_val_loss = math.inf
        self.best_val_step = 0
        self.best_val_tokens = 0
        self.evals: list[dict] = []

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": 1,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "best": [self.best_val_loss, self.best_val_step, self.best_val_tokens],
            "evals": self.evals,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def save(self, directory: Path) -> Path:
        """Write the checkpoint into ``directory`` atomically; its time adds to ``checkpoint_seconds``."""
        t0 = time.perf_counter()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        path = atomic_write(directory / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))
        self.checkpoint_seconds += time.perf_counter() - t0
        self.last_checkpoint = time.monotonic()
        return path

    def checkpoint_due(self) -> bool:
        """Whether eval.checkpoint_minutes have passed since the last checkpoint (or since the start)."""
        minutes = self.config.eval.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self.last_checkpoint >= 60.0 * minutes

    def load(self, path: Path) -> None:
        """Restore from a checkpoint file or a directory holding one; CheckpointError if it does not fit."""
        path = Path(path)
        file = path / CHECKPOINT_FILE if path.is_dir() else path
        try:  # mmap: the file's pages back the tensors until copied, instead of a second copy in memory
            state = torch.load(file, map_location=self.device, weights_only=True, mmap=True)
            if not isinstance(state, dict) or "model" not in state:
                raise ValueError("not an hpsearch checkpoint")
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {file} does not exist; check the path or run without --resume") from None
        except Exception as exc:  # torch raises many types for damaged files
            raise CheckpointError(f"checkpoint {file} is corrupt or not an hpsearch checkpoint "
                                  f"({type(exc).__name__}); delete it or resume from another") from None
        saved_model = {**asdict(GPTConfig()), **state.get("config", {}).get("model", {})}  # older: defaults
        mine = self.config.to_dict()["model"]
        diff = [f"{k}: checkpoint {saved_model[k]!r} vs config {mine[k]!r}"
                for k in SHAPE_KEYS if saved_model[k] != mine[k]]
        if diff:
            raise CheckpointError(f"checkpoint {file} is from another model shape ({'; '.join(diff)}); "
                                  "resume with the config it was written with")
        lr_scales = [g["lr_scale"] for g in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {file} does not fit this model ({first_line(exc)})") from None
        for group, lr_scale in zip(self.optimizer.param_groups, lr_scales):
            group["lr_scale"] = lr_scale  # from the config (checkpoints before μP saved none)
            group.update(self.engine.adamw_options())  # this machine's kernels, not the saver's
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.best_val_loss, self.best_val_step, self.best_val_tokens = state["best"]
        self.evals = list(state["evals"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])

    # -- training ------------------------------------------------------------------------------
    def lr(self, step: int) -> float:
        """The schedule's base LR at ``step``; a parameter group runs at this times its lr_scale."""
        t = self.config.train
        return lr_at(step, warmup_steps=self.plan.warmup_steps, total_steps=self.plan.total_steps,
                     initial_lr=t.initial_lr, peak_lr=t.peak_lr, min_lr=t.min_lr)

    def set_lr(self, step: int) -> float:
        """Set every group's LR for ``step`` (base LR x the group's lr_scale); returns the base LR."""
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        return lr

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(step, x, y) from the current step to the end of the plan, across epochs.

        Epoch e's batches come from ``train_loader.batches(e)``, whose order depends on e only, so a
        resumed run sees the same batches at the same steps as a straight one.
        """
        step, total = self.step, self.plan.total_steps
        while step < total:
            epoch, offset = divmod(step, self.plan.batches_per_epoch)
            for x, y in self.train_loader.batches(epoch, offset):
                yield step, x, y
                step += 1
                if step >= total:
                    return

    def train_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the batch (x, y) at the LRs already set; returns its loss."""
        t = self.config.train
        loss = calc_loss_batch(self.model, x, y, self.device, self.autocast)
        loss.backward()
        clip_gradients(self.model.parameters(), step=step, warmup_steps=self.plan.warmup_steps, max_norm=t.max_norm)
        self.optimizer.step()
        # free the gradients now, not at the next step: the next forward's activations, evaluations
        # and checkpoints then never coexist with a model-sized gradient buffer
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def cooldown_loss(self, steps: int) -> float:
        """Validation loss after ``steps`` more optimizer steps whose LR falls linearly from the schedule's
        current LR to ``train.min_lr``: what the run would score if it were ended now with a short
        cooldown. An early score that is fairer than the raw loss, which favours high learning rates
        while they are still high. The steps take the batches that come next; afterwards the run is
        exactly as it was (model, optimizer, RNG), so training goes on as if nothing happened."""
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        rng = torch.get_rng_state()
        lr0, min_lr = self.lr(self.step), self.config.train.min_lr
        try:
            self.model.train()
            for i, (step, x, y) in zip(range(steps), self.steps()):
                lr = lr0 + (min_lr - lr0) * (i + 1) / steps
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                self.train_step(step, x, y)
            return evaluate(self.model, self.val_loader, self.config.eval.eval_iter, self.device, self.autocast)
        finally:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            torch.set_rng_state(rng)

    def train(self, *, on_eval: EvalCallback | None = None, log: Callable[[str], None] | None = print,
              checkpoint_dir: Path | None = None, final_checkpoint: bool = True) -> RunSummary:
        """Train from the current step to the end of the plan; returns the run's summary.

        Per step: set the LRs, take the step, stop if the loss is not finite; every eval_freq steps
        and after the last: evaluate (stop if val loss is not finite), log, checkpoint into
        ``checkpoint_dir`` (at the end, every eval.checkpoint_freq steps, and when
        eval.checkpoint_minutes have passed since the last one), report. ``final_checkpoint=False``
        leaves the end's checkpoint to the caller (who saves the metrics first).
        """
        e = self.config.eval
        self.model.train()
        diverged = ""  # why training stopped early; empty when it completed
        t_start = time.perf_counter()
        tokens_start = self.tokens_seen
        for step, x, y in self.steps():
            lr = self.set_lr(step)
            train_loss = self.train_step(step, x, y)
            self.step, self.tokens_seen = step + 1, self.tokens_seen + x.numel()
            if not math.isfinite(train_loss):
                diverged = f"training loss became {train_loss} at step {self.step} (lr {lr:.3g})"
                break
            final = self.step >= self.plan.total_steps
            if not (self.step % e.eval_freq == 0 or final):
                continue
            metrics = self._evaluate(lr, train_loss, t_start, tokens_start)
            if not math.isfinite(metrics["val_loss"]):
                diverged = f"validation loss became {metrics['val_loss']} at step {self.step}"
                break
            if log:
                log(_progress_line(metrics, self.plan))
            due = final or (e.checkpoint_freq and self.step % e.checkpoint_freq == 0) or self.checkpoint_due()
            if checkpoint_dir is not None and due and (final_checkpoint or not final):
                self.save(checkpoint_dir)
            if on_eval is not None:
                on_eval({**metrics, "training_complete": final}, self.save)
        summary = self._summary(DIVERGED if diverged else COMPLETED, diverged,
                                seconds=time.perf_counter() - t_start, tokens=self.tokens_seen - tokens_start)
        if log and diverged:
            log(f"diverged: {diverged}; kept the last finite metrics (best val loss {self.best_val_loss:.4f})")
        return summary

    def _summary(self, status: str, message: str, *, seconds: float, tokens: int) -> RunSummary:
        last = self.evals[-1] if self.evals else {}
        return RunSummary(
            status=status, steps=self.step, tokens_seen=self.tokens_seen,
            best_val_loss=self.best_val_loss, best_val_step=self.best_val_step,
            best_val_tokens=self.best_val_tokens,
            final_val_loss=last.get("val_loss", math.nan), final_train_loss=last.get("train_loss", math.nan),
            train_seconds=seconds, tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
            num_params=self.model.num_params(), plan=asdict(self.plan), evals=list(self.evals), message=message,
            precision=self.engine.precision, checkpoint_seconds=self.checkpoint_seconds,
        )

    def _evaluate(self, lr: float, last_train_loss: float, t_start: float, tokens_start: int) -> dict:
        e = self.config.eval
        train_loss = evaluate(self.model, self.train_eval_loader, e.eval_iter, self.device, self.autocast)
        val_loss = evaluate(self.model, self.val_loader, e.eval_iter, self.device, self.autocast)
        if math.isfinite(val_loss) and val_loss < self.best_val_loss:
            self.best_val_loss, self.best_val_step, self.best_val_tokens = val_loss, self.step, self.tokens_seen
        elapsed = time.perf_counter() - t_start
        metrics = {
            "step": self.step,
            "epoch": self.step / self.plan.batches_per_epoch,
            "tokens_seen": self.tokens_seen,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": self.best_val_loss,
            "last_batch_loss": last_train_loss,
            "tokens_per_second": (self.tokens_seen - tokens_start) / elapsed if elapsed > 0 else 0.0,
        }
        if math.isfinite(val_loss):
            self.evals.append({k: metrics[k] for k in ("step", "epoch", "tokens_seen", "lr", "train_loss", "val_loss")})
        return metrics


def _progress_line(m: dict, plan: RunPlan) -> str:
    tps = m["tokens_per_second"]
    remaining = (plan.total_steps - m["step"]) * plan.tokens_per_step / tps if tps > 0 else 0
    eta = time.strftime("%H:%M:%S", time.gmtime(remaining))
    return (f"step {m['step']:>6}/{plan.total_steps} | epoch {m['epoch']:.2f} | train {m['train_loss']:.4f} "
            f"| val {m['val_loss']:.4f} | lr {m['lr']:.2e} | {tps:,.0f} tok/s | ETA {eta}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pretrain(
    config: PretrainConfig,
    *,
    tokens: np.ndarray | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    on_eval: EvalCallback | None = None,
    log: Callable[[str], None] | None = print,
) -> RunSummary:
    """Run one pretraining run. ``tokens`` skips reading the corpus (a sweep passes the cached array).

    With ``out_dir`` the run checkpoints there (at the end, every ``eval.checkpoint_freq`` steps and
    every ``eval.checkpoint_minutes``), writes ``config.yaml`` and ``metrics.json``, and
    ``resume=True`` continues from its checkpoint. The first log line is the engine (device,
    precision and what ``auto`` chose, compile, AdamW kernel).
    """
    source = config.data.path or "embedded corpus"
    if log:
        log(Engine.resolve(config.train).describe())  # first: what auto chose, before any work
    if tokens is None:
        tokens = load_data(config.data, log=log).tokens
    run = Run(config, tokens, source=source)
    out = Path(out_dir).resolve() if out_dir is not None else None
    if out is not None:
        if resume:
            if not (out / CHECKPOINT_FILE).is_file():
                raise CheckpointError(f"--resume: no {CHECKPOINT_FILE} in {out}; run once without --resume first")
            run.load(out)
        elif (out / CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{out} already holds a run's checkpoint; pass --resume to continue it "
                                  "or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", config.to_yaml())
    if log:
        log(f"model {config.preset}: {run.model.num_params():,} parameters on {run.device}")
        log(run.plan.describe())
        if resume:
            log(f"resumed at step {run.step} ({run.tokens_seen:,} tokens seen)")
    board = event_writer(out / "tensorboard") if out is not None else None
    if board is not None:
        user_on_eval = on_eval

        def on_eval(metrics: dict, save) -> None:  # noqa: F811  (the user's callback, plus TensorBoard)
            for key in ("train_loss", "val_loss", "lr", "tokens_per_second"):
                board.add_scalar(key, metrics[key], global_step=metrics["tokens_seen"])
            board.flush()
            if user_on_eval is not None:
                user_on_eval(metrics, save)
    try:
        summary = run.train(on_eval=on_eval, log=log, checkpoint_dir=out, final_checkpoint=False)
    finally:
        if board is not None:
            board.close()
    if out is not None:  # the metrics first: a full disk may cost the checkpoint, never the run's result
        atomic_write_text(out / METRICS_FILE, json.dumps(finite_or_none(summary.to_dict()), indent=2))
        if summary.status == COMPLETED:
            try:
                run.save(out)
            except DiskFullError as exc:
                raise DiskFullError(f"the run finished and its metrics are in {out / METRICS_FILE}, but its final "
                                    f"checkpoint was not written: {exc}") from None
            summary = replace(summary, checkpoint_seconds=run.checkpoint_seconds)  # the final one counted too
            atomic_write_text(out / METRICS_FILE, json.dumps(finite_or_none(summary.to_dict()), indent=2))
        if log:
            log(f"wrote {out / METRICS_FILE}" + (f" and {out / CHECKPOINT_FILE}" if summary.status == COMPLETED else ""))
    return summary


def event_writer(directory: Path):
    """A TensorBoard event writer (tensorboardX, which Ray Tune brings) whose steps are tokens seen;
    None where tensorboardX is not installed (the run's metrics.json has the same curves)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))


def finite_or_none(obj):
    """The same structure with NaN/inf floats as None, so the JSON is strict and loads anywhere."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
