"""The pretraining config: what `hpsearch pretrain --config FILE` runs and what a sweep exports.

A YAML file with four sections. Every key is optional; what is left out takes the default below.

    model: {preset: tiny, dropout: 0.1}          # a preset, then any GPTConfig field overridden
    data:  {path: corpus/, train_ratio: 0.9}     # path null = the embedded corpus
    train: {batch_size: 8, num_epochs: 5, peak_lr: 5.0e-4, ...}
    eval:  {eval_freq: 20, eval_iter: 5}

Hyperparameters are addressed by their bare name (``peak_lr``, ``dropout``); `AXES` maps each name
to its section, so a search space never needs to know the file layout.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from trainables.errors import ConfigError, did_you_mean
from trainables.files import read_yaml
from trainables.model import MODEL_FIELDS, PRESETS, GPTConfig, preset_config


@dataclass(frozen=True)
class DataArgs:
    path: str | None = None
    """A text file or a directory of text files; null trains on the embedded corpus."""
    pattern: str = "**/*.txt"
    """Which files of a directory are read (a glob, recursive with **)."""
    train_ratio: float = 0.9
    """Fraction of the tokens used for training; the rest is the validation split."""
    stride: int | None = None
    """Step between window starts; null means context_len (windows do not overlap)."""


@dataclass(frozen=True)
class TrainArgs:
    batch_size: int = 8
    num_epochs: int = 1
    max_tokens: int | None = None
    """Budget: stop after this many training tokens. The LR schedule is fitted to the shorter run."""
    peak_lr: float = 5e-4
    initial_lr: float = 1e-5
    """LR at step 0; it rises linearly to peak_lr over warmup_steps."""
    min_lr: float = 1e-5
    """LR the cosine decay ends at."""
    warmup_steps: int = 10
    warmup_fraction: float | None = None
    """If set, warmup lasts this fraction of the run's steps (rounded) instead of warmup_steps: one
    schedule shape across budgets and batch sizes (the budget ladder of `hpsearch scale` uses it)."""
    weight_decay: float = 0.1
    max_norm: float = 1.0
    """Global L2 norm gradients are clipped to, on every step after warmup."""
    seed: int = 123
    device: str = "auto"
    """auto (cuda if available), cpu, cuda or cuda:N."""


@dataclass(frozen=True)
class EvalArgs:
    eval_freq: int = 20
    """Evaluate every this many optimizer steps (and after the last step)."""
    eval_iter: int = 5
    """Batches averaged per evaluation, for train and val loss alike."""
    checkpoint_freq: int = 0
    """Standalone runs: also checkpoint every this many steps (0: only at the end)."""


@dataclass(frozen=True)
class PretrainConfig:
    model: GPTConfig = field(default_factory=lambda: PRESETS["tiny"])
    preset: str = "tiny"
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every way this config is invalid (not counting the corpus), each naming key and fix."""
        out = list(self.model.problems())
        t, d, e = self.train, self.data, self.eval

        def positive_int(section: str, name: str, value, allow_none=False, allow_zero=False):
            if value is None and allow_none:
                return
            low = 0 if allow_zero else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                kind = "a non-negative" if allow_zero else "a positive"
                out.append(f"{section}.{name} must be {kind} integer, got {value!r}")

        def number(section: str, name: str, value, low: float, strict: bool):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or (strict and value == low):
                rel = ">" if strict else ">="
                out.append(f"{section}.{name} must be a number {rel} {low:g}, got {value!r}")
                return False
            return True

        positive_int("train", "batch_size", t.batch_size)
        positive_int("train", "num_epochs", t.num_epochs)
        positive_int("train", "max_tokens", t.max_tokens, allow_none=True)
        positive_int("train", "warmup_steps", t.warmup_steps, allow_zero=True)
        if t.warmup_fraction is not None and not (isinstance(t.warmup_fraction, (int, float))
                                                  and not isinstance(t.warmup_fraction, bool)
                                                  and 0.0 <= t.warmup_fraction < 1.0):
            out.append(f"train.warmup_fraction must be a number in [0, 1) or null, got {t.warmup_fraction!r}")
        positive_int("train", "seed", t.seed, allow_zero=True)
        lrs_ok = all(
            [
                number("train", "peak_lr", t.peak_lr, 0.0, strict=True),
                number("train", "initial_lr", t.initial_lr, 0.0, strict=False),
                number("train", "min_lr", t.min_lr, 0.0, strict=False),
            ]
        )
        number("train", "weight_decay", t.weight_decay, 0.0, strict=False)
        number("train", "max_norm", t.max_norm, 0.0, strict=True)
        if lrs_ok:
            out.extend(lr_order_problems(t.initial_lr, t.peak_lr, t.min_lr))
        if not (t.device in ("auto", "cpu", "cuda") or str(t.device).startswith("cuda:")):
            out.append(f"train.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")
        if not isinstance(d.train_ratio, (int, float)) or not 0.0 < d.train_ratio < 1.0:
            out.append(f"data.train_ratio must be strictly between 0 and 1, got {d.train_ratio!r}")
        positive_int("data", "stride", d.stride, allow_none=True)
        positive_int("eval", "eval_freq", e.eval_freq)
        positive_int("eval", "eval_iter", e.eval_iter)
        positive_int("eval", "checkpoint_freq", e.checkpoint_freq, allow_zero=True)
        return out

    @property
    def stride(self) -> int:
        return self.data.stride or self.model.context_len

    # -- hyperparameters by bare name -------------------------------------------------------
    def hparams(self) -> dict[str, Any]:
        """Every tunable value by its bare name (the vocabulary of search spaces)."""
        return {name: getattr(getattr(self, section), name) for name, section in AXES.items()}

    def with_hparams(self, values: dict[str, Any], *, source: str = "hyperparameters") -> PretrainConfig:
        """A copy with ``values`` (bare names, e.g. ``{"peak_lr": 1e-3, "dropout": 0.1}``) applied."""
        unknown = [k for k in values if k not in AXES]
        if unknown:
            k = unknown[0]
            raise ConfigError(
                f"{source}: unknown hyperparameter '{k}'{did_you_mean(k, AXES)}; "
                f"tunable names: {', '.join(AXES)}"
            )
        sections: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            sections.setdefault(AXES[name], {})[name] = plain(value)
        return replace(self, **{s: replace(getattr(self, s), **kv) for s, kv in sections.items()})

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"preset": self.preset, **asdict(self.model)},
            "data": asdict(self.data),
            "train": asdict(self.train),
            "eval": asdict(self.eval),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config") -> PretrainConfig:
        """Build from a nested dict; unknown keys and bad values raise one ConfigError naming them."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}, "
                              f"got {type(raw).__name__}")
        problems: list[str] = []
        for key in raw:
            if key not in SECTIONS:
                problems.append(f"unknown section '{key}'{did_you_mean(str(key), SECTIONS)}")
        parts: dict[str, dict[str, Any]] = {}
        for section, allowed in SECTIONS.items():
            body = raw.get(section) or {}
            if not isinstance(body, dict):
                problems.append(f"section '{section}' must be a mapping, got {type(body).__name__}")
                continue
            for key in body:
                if key not in allowed:
                    problems.append(f"unknown key '{section}.{key}'{did_you_mean(str(key), allowed)}")
            parts[section] = {k: plain(v) for k, v in body.items() if k in allowed}
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        model = dict(parts["model"])
        preset = model.pop("preset", "tiny")
        try:
            return cls(
                model=preset_config(preset, **model),
                preset=preset,
                data=DataArgs(**parts["data"]),
                train=TrainArgs(**parts["train"]),
                eval=EvalArgs(**parts["eval"]),
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def warmup_steps_of(train: TrainArgs, total_steps: int) -> int:
    """The run's warmup in steps: ``warmup_fraction`` of ``total_steps`` when set, else ``warmup_steps``."""
    if train.warmup_fraction is not None:
        return int(round(train.warmup_fraction * total_steps))
    return train.warmup_steps


def lr_order_problems(initial_lr: float, peak_lr: float, min_lr: float) -> list[str]:
    """The learning-rate orderings the schedule needs (also the sweep's 'invalid combination' rule)."""
    out = []
    if min_lr > peak_lr:
        out.append(f"train.min_lr ({min_lr:g}) must not exceed train.peak_lr ({peak_lr:g}); "
                   "lower min_lr or raise peak_lr")
    if initial_lr > peak_lr:
        out.append(f"train.initial_lr ({initial_lr:g}) must not exceed train.peak_lr ({peak_lr:g}); "
                   "lower initial_lr or raise peak_lr")
    return out


def plain(value: Any) -> Any:
    """numpy scalars (from search spaces, pandas) -> Python scalars, so configs and YAML serialize cleanly."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict, str)) else value


SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("preset", *MODEL_FIELDS),
    "data": tuple(f.name for f in fields(DataArgs)),
    "train": tuple(f.name for f in fields(TrainArgs)),
    "eval": tuple(f.name for f in fields(EvalArgs)),
}

# Tunable hyperparameters by bare name -> the section holding them. Everything a trial may vary.
AXES: dict[str, str] = {
    **{name: "train" for name in SECTIONS["train"] if name != "device"},
    **{name: "model" for name in MODEL_FIELDS if name != "vocab_size"},
    "stride": "data",
    "train_ratio": "data",
}


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Read a pretraining config from YAML (safe loader), with errors that name the file."""
    p = Path(path)
    raw = read_yaml(p, error=ConfigError, missing="pass a YAML config file (e.g. one written by `hpsearch export`)")
    return PretrainConfig.from_dict(raw, source=str(p))
