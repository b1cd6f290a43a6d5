"""What trains: the corpus and its tokens, the GPT model, the pretraining run, the Tune trainable.

Everything here except :mod:`trainables.tune_trainable` runs without Ray. The names below load on
first use, so importing a light submodule (``trainables.errors``, as the CLI does before it parses its
arguments) does not import PyTorch.
"""

from trainables.lazy import lazy_getattr

_WHERE = {
    "AXES": ".config", "PretrainConfig": ".config", "load_config": ".config",
    "get_tokenizer": ".corpus", "load_tokens": ".corpus",
    "CheckpointError": ".errors", "ConfigError": ".errors", "DataError": ".errors", "HPSearchError": ".errors",
    "SpaceError": ".errors", "SweepError": ".errors",
    "GPT": ".model", "PRESETS": ".model_config", "GPTConfig": ".model_config",
    "RunSummary": ".run", "lr_at": ".budget", "plan_run": ".budget",
}
# Not ``pretrain``: the name is the module trainables.pretrain (``from trainables.pretrain import pretrain``,
# or ``hpsearch.pretrain``); a function of the same name here would hide the module once loaded.

__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
