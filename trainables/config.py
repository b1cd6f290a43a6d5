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

from trainables.budget import DECAY_SHAPES, SCHEDULES, cooldown_problems
from trainables.errors import ConfigError, brief, did_you_mean, word
from trainables.files import plain, read_yaml
from trainables.model_config import MODEL_FIELDS, PRESETS, GPTConfig, preset_config


@dataclass(frozen=True)
class DataArgs:
    path: str | None = None
    """A corpus file or a directory of them (text, JSONL, Parquet, .bin token shards; text and JSONL
    may be .gz/.zst); null trains on the embedded corpus."""
    pattern: str = "**/*.txt"
    """Which files of a directory are read (a glob, recursive with **). Left at this default, a
    directory without .txt files is read by its one other format (.jsonl, .parquet or .bin)."""
    format: str = "auto"
    """auto (from each file's magic bytes and extension), text, jsonl, parquet or bin (token ids, as
    nanoGPT's prepare.py or llm.c write them; memory-mapped, never copied)."""
    tokenizer: str = "gpt2"
    """What text is tokenized with: gpt2 (tiktoken), or the path of a Hugging Face tokenizer.json (your
    team's tokenizer). The token cache keys on the file's content; model.vocab_size defaults to its size."""
    eot_token: str | None = None
    """The token that separates documents; null finds the tokenizer's own (<|endoftext|>, </s>, <eos>, ...)."""
    token_dtype: str = "uint16"
    """Width of the ids in raw .bin shards: uint16 (up to 65,536 ids) or uint32; llm.c shards say their own."""
    text_field: str = "text"
    """JSONL: the key holding each line's text; Parquet: the string column."""
    sample_tokens: int | None = None
    """Tokenize a seeded sample of about this many tokens instead of the whole corpus (whole
    documents, ~1 MB chunks, Parquet row groups or 64k-token shard blocks); null reads it all."""
    sample_seed: int = 0
    """Which sample sample_tokens takes; kept apart from train.seed so seed reruns see the same data."""
    train_ratio: float = 0.9
    """Fraction of the tokens used for training; the rest is the validation split."""
    stride: int | None = None
    """Step between window starts; null means context_len (windows do not overlap)."""


PRECISIONS = ("auto", "fp32", "bf16-mixed")


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
    """LR the decay ends at (cosine, or WSD's final decay)."""
    schedule: str = "cosine"
    """After warmup: cosine (to min_lr over the rest of the run, the source documents' schedule), wsd
    (warmup-stable-decay: peak_lr, then decay_shape to min_lr over the last decay_fraction of the run)
    or constant (peak_lr to the end)."""
    decay_fraction: float = 0.2
    """wsd: the share of the run's steps spent decaying (Hägele et al. 2024: 20 % matches cosine)."""
    decay_shape: str = "1-sqrt"
    """wsd: the decay's shape: 1-sqrt (Hägele et al. 2024's best), linear or cosine."""
    cooldowns: list[int] | None = None
    """wsd: budgets below max_tokens each scored by a cooldown branch, the loss of a WSD run of that budget
    taken from this one (trainables/cooldown.py; `hpsearch scale --schedule wsd` fits its laws from them)."""
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
    precision: str = "auto"
    """fp32; bf16-mixed (matmuls in bf16 under autocast, weights, gradients and AdamW state in fp32);
    or auto: bf16-mixed where the device computes bf16 fast (a CUDA GPU with bf16, a CPU whose flags
    include avx512_bf16 or amx_bf16), fp32 elsewhere. The run's first log line says what auto chose.
    On an AMD EPYC (Zen 4, avx512_bf16) core bf16-mixed trains the tiny preset 1.65x and the small
    preset 1.95x as fast as fp32, validation losses within 0.003 nats (bench/RESULTS.md, issue 19)."""
    compile: bool = False
    """torch.compile the model (inductor; checkpoints keep plain parameter names). It compiles once
    per process and mode (train, eval): on 2 CPU cores the demo sweep's tiny trial takes 3.5x longer
    compiled, so it is off unless a run is long (or on a GPU: bench/gpu_mfu.py)."""


@dataclass(frozen=True)
class EvalArgs:
    eval_freq: int = 20
    """Evaluate every this many optimizer steps (and after the last step)."""
    eval_iter: int = 5
    """Batches averaged per evaluation, for train and val loss alike."""
    eval_batch_size: int | None = None
    """Windows per evaluation batch (null: train.batch_size); a sweep searching batch_size sets its largest."""
    checkpoint_freq: int = 0
    """Standalone runs: also checkpoint every this many steps (0: at the end and by the clock only)."""
    checkpoint_minutes: float = 5.0
    """Also checkpoint when this many minutes passed since the last one (0: no clock). It only serves a
    resume (GPT-124M's is 2 GB), so trials write one at their end and at most one per this many minutes."""


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
                out.append(f"{section}.{name} must be {kind} integer, got {brief(value)}")

        def number(section: str, name: str, value, low: float, strict: bool):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or (strict and value == low):
                rel = ">" if strict else ">="
                out.append(f"{section}.{name} must be a number {rel} {low:g}, got {brief(value)}")
                return False
            return True

        positive_int("train", "batch_size", t.batch_size)
        positive_int("train", "num_epochs", t.num_epochs)
        positive_int("train", "max_tokens", t.max_tokens, allow_none=True)
        positive_int("train", "warmup_steps", t.warmup_steps, allow_zero=True)
        if t.warmup_fraction is not None and not (isinstance(t.warmup_fraction, (int, float))
                                                  and not isinstance(t.warmup_fraction, bool)
                                                  and 0.0 <= t.warmup_fraction < 1.0):
            out.append(f"train.warmup_fraction must be a number in [0, 1) or null, got {brief(t.warmup_fraction)}")
        positive_int("train", "seed", t.seed, allow_zero=True)
        for name, allowed in (("schedule", SCHEDULES), ("decay_shape", DECAY_SHAPES)):
            value = getattr(t, name)
            if value not in allowed:
                out.append(f"train.{name} must be one of {', '.join(allowed)}, got {brief(value)}"
                           f"{did_you_mean(word(value), allowed)}")
        if not (isinstance(t.decay_fraction, (int, float)) and not isinstance(t.decay_fraction, bool)
                and 0.0 < t.decay_fraction <= 1.0):
            out.append(f"train.decay_fraction must be a number in (0, 1], got {brief(t.decay_fraction)}")
        out.extend(cooldown_problems(t))
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
        if not (t.device in ("auto", "cpu", "cuda") or isinstance(t.device, str) and t.device.startswith("cuda:")):
            out.append(f"train.device must be auto, cpu, cuda or cuda:N, got {brief(t.device)}")
        if t.precision not in PRECISIONS:
            out.append(f"train.precision must be one of {', '.join(PRECISIONS)}, got {brief(t.precision)}"
                       f"{did_you_mean(word(t.precision), PRECISIONS)}")
        if not isinstance(t.compile, bool):
            out.append(f"train.compile must be true or false, got {brief(t.compile)}")
        if not isinstance(d.train_ratio, (int, float)) or not 0.0 < d.train_ratio < 1.0:
            out.append(f"data.train_ratio must be strictly between 0 and 1, got {brief(d.train_ratio)}")
        positive_int("data", "stride", d.stride, allow_none=True)
        out.extend(data_problems(d))
        positive_int("eval", "eval_freq", e.eval_freq)
        positive_int("eval", "eval_iter", e.eval_iter)
        positive_int("eval", "eval_batch_size", e.eval_batch_size, allow_none=True)
        positive_int("eval", "checkpoint_freq", e.checkpoint_freq, allow_zero=True)
        number("eval", "checkpoint_minutes", e.checkpoint_minutes, 0.0, strict=False)
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
                problems.append(f"unknown section {brief(key, limit=40)}{did_you_mean(str(key)[:40], SECTIONS)}")
        parts: dict[str, dict[str, Any]] = {}
        for section, allowed in SECTIONS.items():
            body = raw.get(section) or {}
            if not isinstance(body, dict):
                problems.append(f"section '{section}' must be a mapping, got {type(body).__name__}")
                continue
            for key in body:
                if key not in allowed:
                    problems.append(f"unknown key '{section}.{brief(key, limit=40).strip(chr(39))}'{did_you_mean(str(key)[:40], allowed)}")
            parts[section] = {k: plain(v) for k, v in body.items() if k in allowed}
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        model = dict(parts["model"])
        preset = model.pop("preset", "tiny")
        try:
            if "vocab_size" not in model and parts["data"].get("tokenizer", "gpt2") != "gpt2":
                model["vocab_size"] = tokenizer_vocab_size(parts["data"])
            return cls(
                model=preset_config(preset, **model),
                preset=preset,
                data=DataArgs(**parts["data"]),
                train=TrainArgs(**parts["train"]),
                eval=EvalArgs(**parts["eval"]),
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def with_overrides(self, values: dict[str, Any], *, source: str = "overrides") -> PretrainConfig:
        """A copy with dotted keys applied (``{"train.peak_lr": 3e-4, "model.preset": "small"}``), every
        value checked as a config file's would be. A new ``model.preset`` starts the model section from
        that preset (plus any ``model.*`` given alongside), not from the old model's sizes."""
        raw = self.to_dict()
        if "model.preset" in values:
            raw["model"] = {}
        elif "data.tokenizer" in values and "model.vocab_size" not in values and (
                self.model.vocab_size == preset_config(self.preset).vocab_size
                or self.model.vocab_size == tokenizer_vocab_size(raw["data"])):
            del raw["model"]["vocab_size"]  # it followed the old tokenizer (or the preset): it follows the new one
        for key, value in values.items():
            section, _, name = key.partition(".")
            if section not in SECTIONS or name not in SECTIONS[section]:
                raise ConfigError(f"{source}: unknown key '{key[:80]}'{did_you_mean(key, dotted_keys())}")
            raw[section][name] = value
        return PretrainConfig.from_dict(raw, source=source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def dotted_keys() -> list[str]:
    """Every config key as ``section.name`` (the pretrain command's override flags)."""
    return [f"{section}.{name}" for section, names in SECTIONS.items() for name in names]


def parse_scalar(text: str) -> Any:
    """A command-line value as a YAML scalar would read: null, true/false, an int, a float, else the string."""
    low = text.strip().lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def tokenizer_vocab_size(data: dict) -> int:
    """The size of the tokenizer a data section names (model.vocab_size's default); ConfigError if unreadable."""
    from trainables.corpus.tokenizer import GPT2_VOCAB_SIZE, load_tokenizer
    from trainables.errors import DataError

    spec = data.get("tokenizer", "gpt2")
    if spec == "gpt2" or not isinstance(spec, str) or not spec.strip():
        return GPT2_VOCAB_SIZE  # a bad value is named by data_problems
    eot = data.get("eot_token")
    try:
        return load_tokenizer(spec, eot if isinstance(eot, str) else None).vocab_size
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def data_problems(d: DataArgs) -> list[str]:
    """The data section's reading options that cannot work (the corpus itself is checked when read)."""
    from trainables.corpus.formats import FORMATS, TOKEN_DTYPES

    out = []
    if d.path is not None and (not isinstance(d.path, str) or not d.path.strip()):
        out.append(f"data.path must be a file or directory path, or null for the embedded corpus, got {brief(d.path)}")
    if not isinstance(d.pattern, str) or not d.pattern.strip():
        out.append(f"data.pattern must be a non-empty glob such as '**/*.txt', got {brief(d.pattern)}")
    if d.format not in FORMATS:
        out.append(f"data.format must be one of {', '.join(FORMATS)}, got {brief(d.format, limit=40)}"
                   f"{did_you_mean(word(d.format), FORMATS)}")
    if not isinstance(d.tokenizer, str) or not d.tokenizer.strip():
        out.append(f"data.tokenizer must be gpt2 or the path of a Hugging Face tokenizer.json, got {brief(d.tokenizer)}")
    if d.eot_token is not None and (not isinstance(d.eot_token, str) or not d.eot_token):
        out.append(f"data.eot_token must name a token of the tokenizer (e.g. '</s>') or be null, got {brief(d.eot_token)}")
    if d.token_dtype not in TOKEN_DTYPES:
        out.append(f"data.token_dtype must be one of {', '.join(TOKEN_DTYPES)}, got {brief(d.token_dtype, limit=40)}"
                   f"{did_you_mean(word(d.token_dtype), TOKEN_DTYPES)}")
    if not isinstance(d.text_field, str) or not d.text_field:
        out.append(f"data.text_field must name the JSONL key or Parquet column holding the text, got {brief(d.text_field)}")
    s = d.sample_tokens
    if s is not None and (not isinstance(s, int) or isinstance(s, bool) or s < 1):
        out.append(f"data.sample_tokens must be a positive integer (tokens to sample) or null, got {brief(s)}")
    if not isinstance(d.sample_seed, int) or isinstance(d.sample_seed, bool) or d.sample_seed < 0:
        out.append(f"data.sample_seed must be a non-negative integer, got {brief(d.sample_seed)}")
    return out


LR_ORDER = (("min_lr", "peak_lr"), ("initial_lr", "peak_lr"))
"""The learning-rate orderings the schedule needs, (low, high): low must not exceed high."""


def lr_order_broken(lrs: dict[str, float]) -> list[tuple[str, str]]:
    """The (low, high) pairs of :data:`LR_ORDER` that ``lrs`` breaks (also the sweep's 'invalid combination' rule)."""
    return [(low, high) for low, high in LR_ORDER if lrs[low] > lrs[high]]


def lr_order_problems(initial_lr: float, peak_lr: float, min_lr: float) -> list[str]:
    """One message per broken learning-rate ordering, naming the values and the fix."""
    lrs = {"initial_lr": initial_lr, "peak_lr": peak_lr, "min_lr": min_lr}
    return [f"train.{low} ({lrs[low]:g}) must not exceed train.{high} ({lrs[high]:g}); lower {low} or raise {high}"
            for low, high in lr_order_broken(lrs)]


SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("preset", *MODEL_FIELDS),
    "data": tuple(f.name for f in fields(DataArgs)),
    "train": tuple(f.name for f in fields(TrainArgs)),
    "eval": tuple(f.name for f in fields(EvalArgs)),
}

# Tunable hyperparameters by bare name -> their section. Engine settings (device, precision, compile, a
# padded vocabulary) change speed, not what is learned: set per sweep (--precision, --compile), never searched.
ENGINE_FIELDS = ("device", "precision", "compile", "vocab_size", "pad_vocab")
AXES: dict[str, str] = {
    **{name: "train" for name in SECTIONS["train"] if name not in ENGINE_FIELDS},
    **{name: "model" for name in MODEL_FIELDS if name not in ENGINE_FIELDS},
    "stride": "data",
    "train_ratio": "data",
    "eval_batch_size": "eval",  # a study's fixed value (scale's verification), never worth searching
}


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Read a pretraining config from YAML (safe loader), with errors that name the file."""
    p = Path(path)
    raw = read_yaml(p, error=ConfigError, missing="pass a YAML config file (e.g. one written by `hpsearch export`)")
    return PretrainConfig.from_dict(raw, source=str(p))
