"""Token ids: parallel encoding with either tokenizer, token files written as they stream, and .bin shards."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainables.corpus.formats import _LLMC_MAGIC, _LLMC_MAGIC_U32, TOKEN_DTYPES
from trainables.corpus.text import _CHUNK_CHARS, _cut_runs, _split_for_parallel
from trainables.corpus.tokenizer import GPT2, GPT2_EOT_ID, GPT2_VOCAB_SIZE, Tokenizer, load_tokenizer
from trainables.errors import DataError, first_line

TOKENIZER = GPT2
EOT_ID = GPT2_EOT_ID
VOCAB_SIZE = GPT2_VOCAB_SIZE
CACHE_FORMAT = 3  # bump when the cache layout, the key or the document joining changes (3: long runs cut)


# -- tokenizing -----------------------------------------------------------------------------------

def _encode(pieces: Iterable[tuple[str, bool, object]], tok: Tokenizer | None = None, *, threads: int | None = None
            ) -> Iterator[tuple[np.ndarray, bool, object]]:
    """(ids, starts_document, tag) of each piece, in order; pieces encode in parallel batches.

    Every piece first goes through :func:`_cut_runs`, so no unbroken run longer than a few thousand
    characters reaches the tokenizer whole (the BPE's time and memory grow faster than a piece's
    length). tiktoken and ``tokenizers`` release the GIL, so threads encode side by side. A batch holds
    a few MB of text: memory stays flat whatever the corpus size, and a consumer that stops early wastes
    one batch at most.
    """
    tok = tok or load_tokenizer()
    workers = threads or min(4, os.cpu_count() or 1)
    budget = 2 * workers * _CHUNK_CHARS
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        batch: list[tuple[str, bool, object]] = []
        size = 0
        for text, starts, tag in pieces:
            for i, part in enumerate(_cut_runs(text)):
                batch.append((part, starts and i == 0, tag))
                size += len(part)
                if size >= budget or len(batch) >= 4096:
                    yield from _encode_batch(batch, tok.encode, pool)
                    batch, size = [], 0
        yield from _encode_batch(batch, tok.encode, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _encode_batch(batch, encode, pool):
    texts = [t for t, _, _ in batch]
    arrays = list(pool.map(encode, texts)) if pool is not None and len(texts) > 1 else [encode(t) for t in texts]
    for arr, (_, starts, tag) in zip(arrays, batch):
        yield arr, starts, tag


def eot_array(tok: Tokenizer) -> np.ndarray:
    """The one-token array that separates documents."""
    return np.array([tok.eot_id], dtype=tok.dtype)


_EOT = np.array([EOT_ID], dtype=np.uint16)


def tokenize_documents(docs: list[tuple[str, str]], *, tokenizer: Tokenizer | None = None,
                       threads: int | None = None) -> np.ndarray:
    """Token ids of the documents joined by the tokenizer's end-of-text token (GPT-2 BPE by default).

    Long documents are cut into ~1 MB pieces just before an ASCII whitespace that follows a
    non-space character: GPT-2's pre-tokenizer never joins such a pair into one piece, so the ids
    equal those of encoding the whole text, and the pieces encode in parallel.
    """
    tok = tokenizer or load_tokenizer()
    pieces = ((p, i == 0, None) for _, text in docs for i, p in enumerate(_split_for_parallel(text)))
    parts: list[np.ndarray] = []
    for arr, starts, _ in _encode(pieces, tok, threads=threads):
        if starts and parts:
            parts.append(eot_array(tok))
        parts.append(arr)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=tok.dtype)


class CacheWriteError(Exception):
    """The token cache could not be written (full disk, read-only directory); its temporary file is gone."""

    def __init__(self, path: Path, exc: OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self.path, self.reason = path, "no space left on the device" if full else first_line(exc)
        super().__init__(f"{path}: {self.reason}")


class _TokenFile:
    """A ``.npy`` token file (uint16 or uint32) written incrementally and renamed into place by ``commit``.

    The 128-byte header is written last (it holds the length), so tokens stream straight to disk. Any
    OSError while writing raises :class:`CacheWriteError` after the temporary file is removed (also
    when closing the file fails again). ``memory=True`` keeps the tokens in memory instead (no cache).
    """

    HEADER = 128

    def __init__(self, path: Path, dtype=np.uint16, *, memory: bool = False):
        self.path, self.dtype, self.memory = path, np.dtype(dtype).newbyteorder("<"), memory
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.n, self.sha, self.parts, self.fh = 0, hashlib.sha256(), [], None
        self.array: np.ndarray | None = None
        if not memory:
            self._io(self._open)

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.tmp, "wb", buffering=1 << 20)
        self.fh.write(b"\0" * self.HEADER)

    def _io(self, action):
        try:
            return action()
        except OSError as exc:
            self._discard()
            raise CacheWriteError(self.tmp.parent, exc) from None

    def write(self, ids: np.ndarray) -> None:
        data = ids.astype(self.dtype, copy=False)
        self.sha.update(data.tobytes())
        self.n += len(ids)
        if self.memory:
            self.parts.append(np.array(data, copy=True))
        else:
            self._io(lambda: self.fh.write(data.tobytes()))

    def commit(self) -> None:
        if self.memory:
            self.array = np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)
            self.parts = []
            return
        body = f"{{'descr': '{self.dtype.str}', 'fortran_order': False, 'shape': ({self.n},), }}"
        body = body.ljust(self.HEADER - 11) + "\n"

        def finish():
            self.fh.seek(0)
            self.fh.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1"))
            self.fh.close()
            os.replace(self.tmp, self.path)

        self._io(finish)

    def held(self) -> dict:
        """What a cache entry needs beyond its file: the tokens themselves when they are kept in memory."""
        return {"array": self.array} if self.memory else {}

    def _discard(self) -> None:
        """Close (a close that raises again is ignored) and remove the temporary file, whatever happens."""
        try:
            if self.fh is not None and not self.fh.closed:
                self.fh.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._discard()


# -- pre-tokenized shards ---------------------------------------------------------------------------

def _shard(f: Path, token_dtype: str = "uint16") -> np.memmap:
    """A .bin shard's ids, memory-mapped: raw ids of ``token_dtype`` (nanoGPT's prepare.py writes uint16),
    or llm.c's shards, whose 1 KiB header decides: magic 20240520 (version 1) holds uint16 ids,
    magic 20240801 (Llama 3) uint32 ids."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(1024)
    offset, dtype = 0, np.dtype(TOKEN_DTYPES.get(token_dtype, "<u2"))
    magic = int.from_bytes(head[:4], "little") if len(head) == 1024 else None
    if magic in (_LLMC_MAGIC, _LLMC_MAGIC_U32):
        version, count = int.from_bytes(head[4:8], "little"), int.from_bytes(head[8:12], "little")
        if magic == _LLMC_MAGIC and version != 1:
            raise DataError(f"{f} is an llm.c GPT-2 shard of version {version}, and only version 1 (uint16 ids) "
                            "is known; re-create it with llm.c's data_common.write_datafile")
        dtype = np.dtype("<u2" if magic == _LLMC_MAGIC else "<u4")
        if size != 1024 + dtype.itemsize * count:
            raise DataError(f"{f}: its llm.c header promises {count:,} tokens but the file holds "
                            f"{(size - 1024) // dtype.itemsize:,}; the shard is truncated: re-create it")
        offset = 1024
    if (size - offset) % dtype.itemsize:
        raise DataError(f"{f} holds {size - offset:,} bytes, not a whole number of {dtype.name} token ids; "
                        f"set data.token_dtype to the width it was written with, re-create it, or set data.format "
                        "if it is not a token shard")
    if size == offset:
        raise DataError(f"{f} holds no tokens; remove it from the corpus")
    return np.memmap(f, dtype=dtype, mode="r", offset=offset)


def _check_ids(ids: np.ndarray, f: Path, base: int = 0, vocab_size: int = GPT2_VOCAB_SIZE) -> None:
    """DataError naming the first id >= vocab_size in ``ids`` (``base``: the position of ids[0] in the shard)."""
    if len(ids) and int(ids.max()) >= vocab_size:
        i = int(np.argmax(ids >= vocab_size))
        raise DataError(f"{f}: token id {int(ids[i])} at position {base + i:,} is not below model.vocab_size "
                        f"{vocab_size:,}; set model.vocab_size to the size of the tokenizer that wrote the shard "
                        f"(at least {int(ids.max()) + 1:,}), or check data.token_dtype")


def _scan_shard(f: Path, ids: np.memmap, sha, out: _TokenFile | None = None, vocab_size: int = GPT2_VOCAB_SIZE) -> int:
    """Check every id of a shard, hash it and optionally copy it, through one reused 16 MB buffer; its largest id.

    Plain reads, not the mapping: a scan leaves no shard pages in the process's memory.
    """
    buf = bytearray(1 << 24)
    pos = top = 0
    with open(f, "rb") as fh:
        fh.seek(ids.offset)
        while n := fh.readinto(buf):
            block = np.frombuffer(memoryview(buf)[:n], dtype=ids.dtype)
            _check_ids(block, f, pos, vocab_size)
            top = max(top, int(block.max()))
            sha.update(memoryview(buf)[:n])
            if out is not None:
                out.write(block)
            pos += len(block)
    return top
