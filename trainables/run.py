"""The state of one run: model, optimizer, loaders and progress counters; a step, an evaluation, a checkpoint.

The schedule gives one base LR per step; each AdamW parameter group runs at that LR times its
``lr_scale`` (1 everywhere under SP; 1/width_mult on μP's hidden matrices, see model.param_groups).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainables.budget import Branch, RunPlan, lr_at, plan_run
from trainables.config import PretrainConfig
from trainables.cooldown import branch_loss, linear_cooldown_lrs, wsd_branch_lrs
from trainables.corpus import WindowLoader, split_tokens
from trainables.engine import Engine
from trainables.errors import CheckpointError, DataError, first_line
from trainables.files import atomic_write
from trainables.model import GPT, GPTConfig, param_groups
from trainables.status import COMPLETED, DIVERGED

CHECKPOINT_FILE = "checkpoint.pt"
SHAPE_KEYS = ("vocab_size", "pad_vocab", "context_len", "emb_dim", "n_layers", "n_heads", "qkv_bias",
              "tie_embeddings", "parametrization", "base_width", "depth_rule", "base_depth", "linear_bias", "norm", "mlp",
              "mlp_hidden", "positions", "rope_base")
"""Model fields a checkpoint must share with the config it resumes under (shapes, tying, μP's scaling)."""

EvalCallback = Callable[[dict, Callable[[Path], None]], None]


def clip_gradients(params, *, step: int, warmup_steps: int, max_norm: float) -> bool:
    """Clip gradients to global L2 norm ``max_norm`` on every step after warmup; True if it ran.

    The source document writes ``step > warmup_steps``, which skips the first post-warmup step;
    its upstream corrected it to ``>=``, as here.
    """
    if step < warmup_steps:
        return False
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return True



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
        # evaluation batches hold eval.eval_batch_size windows, so trials of different batch sizes can be
        # scored on the same windows (a sweep that searches batch_size sets it)
        scored = {**common, "batch_size": config.eval.eval_batch_size or t.batch_size}
        self.train_eval_loader = WindowLoader(train_tok, shuffle=False, drop_last=False, **scored)
        self.val_loader = WindowLoader(val_tok, shuffle=False, drop_last=False, **scored)
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
        self.branches_done: dict[int, float] = {}  # cooldown branch tokens -> its validation loss

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
            "branches": self.branches_done,
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
        self.branches_done = {int(k): float(v) for k, v in state.get("branches", {}).items()}
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])

    # -- training ------------------------------------------------------------------------------
    def lr(self, step: int) -> float:
        """The schedule's base LR at ``step``; a parameter group runs at this times its lr_scale."""
        t = self.config.train
        return lr_at(step, warmup_steps=self.plan.warmup_steps, total_steps=self.plan.total_steps,
                     initial_lr=t.initial_lr, peak_lr=t.peak_lr, min_lr=t.min_lr, schedule=t.schedule,
                     decay_steps=self.plan.decay_steps, decay_shape=t.decay_shape)

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
        while they are still high. The run is left exactly as it was (:func:`branch_loss`)."""
        return branch_loss(self, linear_cooldown_lrs(self.lr(self.step), self.config.train.min_lr, steps))

    def val_loss(self) -> float:
        """The validation loss of the model as it is now (eval.eval_iter batches)."""
        return evaluate(self.model, self.val_loader, self.config.eval.eval_iter, self.device, self.autocast)

    def due_branches(self) -> list[Branch]:
        """The cooldown branches that start at the current step and have not been scored yet."""
        return [b for b in self.plan.branches if b.start == self.step and b.tokens not in self.branches_done]

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
            branches = self.due_branches()
            if not (self.step % e.eval_freq == 0 or final or branches):
                continue
            for b in branches:  # scored before this step's evaluation, which then reports them
                self.branches_done[b.tokens] = branch_loss(self, wsd_branch_lrs(self, b))
            metrics = self._evaluate(lr, train_loss, t_start, tokens_start)
            if not math.isfinite(metrics["val_loss"]):
                diverged = f"validation loss became {metrics['val_loss']} at step {self.step}"
                break
            if log:
                log(_progress_line(metrics, self.plan))
                for b in branches:
                    log(f"cooldown branch: a {b.tokens:,}-token run ({b.total_steps} steps, decay from step {b.start}) "
                        f"ends at val {self.branches_done[b.tokens]:.4f}")
            due = final or (e.checkpoint_freq and self.step % e.checkpoint_freq == 0) or self.checkpoint_due()
            if checkpoint_dir is not None and due and (final_checkpoint or not final):
                self.save(checkpoint_dir)
            if on_eval is not None:
                # one report per branch (each row of curves.parquet carries one); the first also counts
                # as the evaluation, the others repeat its metrics at the same step
                rows = [{"cooldown_tokens": b.tokens, "cooldown_val_loss": self.branches_done[b.tokens]}
                        for b in branches] or [{}]
                for extra in rows:
                    on_eval({**metrics, **extra, "training_complete": final}, self.save)
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
        val_loss = self.val_loss()
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
