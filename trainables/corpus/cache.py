"""The token cache: content keys, the stat index that makes a warm load read no text, and :func:`load_tokens`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.corpus.formats import DEFAULT_PATTERN, EMBEDDED, FORMATS, TOKEN_DTYPES, _plan, corpus_files
from trainables.corpus.sample import _load_sample, _load_shards
from trainables.corpus.text import _documents, _empty_error, _pieces, _split_for_parallel, read_documents
from trainables.corpus.tokenizer import GPT2, GPT2_VOCAB_SIZE, Tokenizer, load_tokenizer, tokenizer_key
from trainables.corpus.tokens import CACHE_FORMAT, CacheWriteError, _encode, _TokenFile, eot_array
from trainables.errors import DataError, brief
from trainables.files import atomic_write_text

def default_cache_dir() -> Path:
    return Path(os.environ.get("HPSEARCH_CACHE_DIR") or Path.home() / ".cache" / "hpsearch").expanduser()


def corpus_key(docs: list[tuple[str, str]], tok_key: str = GPT2) -> str:
    """Content hash of documents and the tokenizer (the embedded corpus; tests and benchmarks)."""
    h = hashlib.sha256(f"{tok_key}/{CACHE_FORMAT}".encode())
    for _, text in docs:
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def _files_key(plan: list[tuple[Path, str, str | None]], text_field: str, tok_key: str = GPT2) -> str:
    """Content hash of the corpus files' bytes, their formats and the tokenizer: one streamed read."""
    h = hashlib.sha256(f"{tok_key}/{CACHE_FORMAT}".encode())
    for f, fmt, _ in plan:
        h.update(f"\n{fmt}/{text_field if fmt in ('jsonl', 'parquet') else ''}/{f.stat().st_size}\n".encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 23):
                h.update(block)
    return h.hexdigest()[:32]


def stat_key(files: list[Path], source: str, pattern: str, spec: str = "") -> str:
    """Key of the corpus's file list with each file's size, mtime, ctime and inode: one stat, no reading.

    ctime and inode catch what size and mtime alone miss, e.g. ``cp -p`` of same-size text over a file.
    ``spec`` holds the reading options (format, text field, sample, the tokenizer's content key).
    """
    h = hashlib.sha256(f"{CACHE_FORMAT}/{source}/{pattern}/{spec}".encode())
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
    ok = tokens.dtype in (np.uint16, np.uint32) and tokens.ndim == 1 and len(tokens)
    return tokens if ok else None


def _open_entry(entry: dict) -> np.ndarray | None:
    """The tokens an index entry points at: a cache .npy, a single shard mapped in place, or (no cache) an array."""
    if "array" in entry:
        return entry["array"]
    if "shard" in entry:
        f = Path(entry["shard"])
        return np.memmap(f, dtype=entry.get("dtype", "<u2"), mode="r", offset=int(entry["offset"]))
    return _open_cache(Path(entry["file"]))


@dataclass(frozen=True)
class TokenCorpus:
    tokens: np.ndarray  # uint16 or uint32, memory-mapped (from the cache, or a .bin shard in place)
    key: str
    source: str
    n_documents: int
    cache_file: Path | None  # None: the cache could not be written, the tokens are in memory
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
    tokenizer: str = GPT2,
    eot_token: str | None = None,
    token_dtype: str = "uint16",
    vocab_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> TokenCorpus:
    """The corpus's token ids, tokenized on first use and memory-mapped from the cache after.

    A warm load reads no text: an index maps the corpus files' paths and stat data (size, mtime,
    ctime, inode), the reading options and the tokenizer's content key to the content key of their
    tokens. Any change to a file's stat data sends the load down the cold path, which hashes the files'
    bytes and, for new content, tokenizes. ``sample_tokens`` tokenizes a seeded sample of about that many
    tokens instead (see :func:`sample_units`); a single .bin shard is mapped in place, never copied.
    ``tokenizer`` is "gpt2" or a Hugging Face tokenizer.json; ``vocab_size`` (model.vocab_size) is what
    every id must stay below. A cache that cannot be written (full disk, read-only) costs a warning, and
    the tokens are kept in memory.
    """
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    source = EMBEDDED if path is None else str(Path(path).expanduser().resolve())
    if sample_tokens is not None and (isinstance(sample_tokens, bool) or not isinstance(sample_tokens, int)
                                      or sample_tokens < 1):
        raise DataError(f"data.sample_tokens must be a positive integer or null, got {brief(sample_tokens)}")
    if format not in FORMATS:
        raise DataError(f"unknown data.format '{str(format)[:40]}'; choose one of: {', '.join(FORMATS)}")
    if token_dtype not in TOKEN_DTYPES:
        raise DataError(f"data.token_dtype must be one of {', '.join(TOKEN_DTYPES)}, got {brief(token_dtype)}")
    files = corpus_files(path, pattern, format)
    tok_key = tokenizer_key(tokenizer, eot_token)
    spec = f"{format}/{text_field}/{sample_tokens}/{sample_seed}/{tok_key}/{token_dtype}"
    index = cache / "index" / f"{stat_key(files, source, pattern, spec)}.json"
    try:
        entry = json.loads(index.read_text())
        hit = _open_entry(entry)
        if hit is not None and not (vocab_size and entry.get("max_id", -1) >= vocab_size):
            return TokenCorpus(hit, entry["key"], source, entry["n_documents"], Path(entry.get("shard") or entry["file"]),
                               True, time.perf_counter() - t0, entry.get("format", "text"), entry.get("sampled", False))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry yet, or a damaged one: the cold path below rewrites it (or names the id too large)

    plan = None if path is None else _plan(path, pattern, format, files)
    shards = bool(plan) and plan[0][1] == "bin"
    tok = None if shards else load_tokenizer(tokenizer, eot_token)
    if tok is not None and vocab_size and vocab_size < tok.vocab_size:
        raise DataError(f"model.vocab_size {vocab_size:,} is below the size of tokenizer {tok.name} "
                        f"({tok.vocab_size:,} ids); leave model.vocab_size out or set it to at least {tok.vocab_size:,}")

    def cold(memory: bool) -> dict:
        if shards:  # without model.vocab_size, ids are checked against the tokenizer's size
            limit = vocab_size or (GPT2_VOCAB_SIZE if tokenizer == GPT2 else load_tokenizer(tokenizer, eot_token).vocab_size)
            eot = _shard_separator(tokenizer, eot_token, limit)
            return _load_shards(plan, cache, sample_tokens, sample_seed, source, log, token_dtype, limit, eot, memory)
        if sample_tokens is not None:
            return _load_sample(plan, cache, text_field, sample_tokens, sample_seed, source, log, tok, memory)
        return _load_text(path, plan, cache, text_field, source, log, tok, memory)

    try:
        entry = cold(memory=False)
    except CacheWriteError as exc:
        if log:
            log(f"warning: the token cache in {cache} cannot be written ({exc.reason}); tokenizing again into "
                "memory, uncached. Free space there, or set HPSEARCH_CACHE_DIR to a writable disk with room")
        entry = cold(memory=True)
    tokens = _open_entry(entry)
    if tokens is None:
        raise DataError(f"token cache {entry['file']} could not be read back; check the disk and free space")
    fresh = entry.pop("fresh", False)
    memory = entry.pop("array", None) is not None
    if tok is not None:
        entry["max_id"] = tok.vocab_size - 1  # shards: the scan's largest id
    if not memory:
        try:
            index.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(index, json.dumps({**entry, "source": source}))
        except OSError as exc:  # the index only saves the next load a hash of the corpus
            if log:
                log(f"warning: the token cache index in {index.parent} cannot be written ({exc}); the next load "
                    "hashes the corpus again. Free space there, or set HPSEARCH_CACHE_DIR")
    seconds = time.perf_counter() - t0
    where = None if memory else Path(entry.get("shard") or entry["file"])
    if log and fresh:
        log(f"{len(tokens):,} tokens {'in memory' if memory else f'cached in {where}'} ({seconds:.1f} s)")
    return TokenCorpus(tokens, entry["key"], source, entry["n_documents"], where,
                       not fresh, seconds, entry.get("format", "text"), entry.get("sampled", False))


def _shard_separator(tokenizer: str, eot_token: str | None, vocab_size: int | None) -> np.ndarray | None:
    """What separates a sample's shard blocks: the tokenizer's end-of-text id, if the model has a row for it."""
    tok = load_tokenizer(tokenizer, eot_token)
    return eot_array(tok) if vocab_size is None or tok.eot_id < vocab_size else None


def load_data(data, *, vocab_size: int | None = None, cache_dir: str | os.PathLike | None = None,
              log: Callable[[str], None] | None = print) -> TokenCorpus:
    """:func:`load_tokens` with the reading options of a config's ``data`` section (DataArgs)."""
    return load_tokens(data.path, pattern=data.pattern, format=data.format, text_field=data.text_field,
                       sample_tokens=data.sample_tokens, sample_seed=data.sample_seed, tokenizer=data.tokenizer,
                       eot_token=data.eot_token, token_dtype=data.token_dtype, vocab_size=vocab_size,
                       cache_dir=cache_dir, log=log)


def _load_text(path, plan, cache: Path, text_field: str, source: str, log, tok: Tokenizer, memory: bool) -> dict:
    """Tokenize the whole corpus (documents -> pieces -> ids) straight into the cache file."""
    if plan is None:
        docs = read_documents(None)
        key = corpus_key(docs, tok.key)
        documents: Iterable[Iterable[str]] = (iter(_split_for_parallel(t)) for _, t in docs)
    else:
        key = _files_key(plan, text_field, tok.key)
        documents = (doc for f, fmt, comp in plan for doc in _documents(f, fmt, comp, text_field))
    cache_file = cache / "tokens" / f"{key}.npy"
    tokens = None if memory else _open_cache(cache_file)
    if tokens is not None:
        return {"key": key, "file": str(cache_file), "n_documents": int((tokens == tok.eot_id).sum()) + 1}
    if log:
        size = sum(f.stat().st_size for f, _, _ in plan) if plan else sum(len(t) for _, t in docs)
        log(f"tokenizing {source} with {tok.name}: {len(plan) if plan else 1} file(s), {size / 1e6:.1f} MB ...")
    n_docs, eot = 0, eot_array(tok)
    with _TokenFile(cache_file, tok.dtype, memory=memory) as out:
        for ids, starts, _ in _encode(((p, s, None) for p, s in _pieces(documents)), tok):
            if starts:
                if n_docs:
                    out.write(eot)
                n_docs += 1
            out.write(ids)
        if out.n == 0:
            raise _empty_error(path, len(plan))
        out.commit()
    return {"key": key, "file": str(cache_file), "n_documents": n_docs, "fresh": True, **out.held()}
