"""How a run computes: the device, the precision (``auto`` detected, never assumed), compile, the AdamW kernel."""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.config import TrainArgs
from trainables.errors import ConfigError


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

