"""What trains: the corpus and its tokens, the GPT model, the pretraining run, the Tune trainable.

Everything here except :mod:`trainables.tune_trainable` runs without Ray.
"""

from trainables.config import AXES, PretrainConfig, load_config
from trainables.corpus import get_tokenizer, load_tokens
from trainables.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    HPSearchError,
    SpaceError,
    SweepError,
)
from trainables.model import GPT, PRESETS, GPTConfig
from trainables.pretrain import RunSummary, lr_at, plan_run, pretrain

__all__ = [
    "AXES", "GPT", "GPTConfig", "PRESETS", "PretrainConfig", "RunSummary",
    "CheckpointError", "ConfigError", "DataError", "HPSearchError", "SpaceError", "SweepError",
    "get_tokenizer", "load_config", "load_tokens", "lr_at", "plan_run", "pretrain",
]
