"""A seeded sample of whole corpus units (documents, ~1 MB chunks, row groups, token blocks), tokenized."""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.corpus.text import (Piece, _documents, _jsonl_text, _parquet, _pieces, _row_group_texts,
                                    _split_for_parallel, sniff_encoding)
from trainables.corpus.tokenizer import Tokenizer
from trainables.corpus.tokens import CACHE_FORMAT, _check_ids, _encode, _scan_shard, _shard, _TokenFile, eot_array
from trainables.errors import DataError, first_line

_UNIT_BYTES = 1 << 20  # sampling: a large text or JSONL file is split into units of about this size
_BIN_BLOCK = 1 << 16  # sampling: a token shard is split into blocks of this many tokens


@dataclass(frozen=True)
class Unit:
    """A piece of the corpus a sample takes whole: a file, a byte range, a Parquet row group, a token block."""

    file: Path
    fmt: str
    compression: str | None
    kind: str  # file | text | lines | rowgroup | tokens
    start: int = 0
    stop: int = 0


def sample_units(plan: list[tuple[Path, str, str | None]], token_dtype: str = "uint16") -> list[Unit]:
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
            n = len(_shard(f, token_dtype))
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


def _load_sample(plan, cache: Path, text_field: str, target: int, seed: int, source: str, log, tok: Tokenizer,
                 memory: bool = False) -> dict:
    """Tokenize units in a seeded order until ``target`` tokens; keep them in corpus order.

    Units taken stay whole (the last one may overshoot by one unit's pieces); adjacent units join as
    in the whole corpus, others are separated by the end-of-text token. Only the units taken are read.
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

    eot = eot_array(tok)
    stream = _encode(pieces(), tok)
    try:
        for ids, starts, pos in stream:
            parts = taken.setdefault(pos, [[], starts, True])
            if starts and parts[0]:
                parts[0].append(eot)
                total += 1
            parts[0].append(ids)
            total += len(ids)
            if total >= target:
                parts[2] = False  # cut short (or maybe not, but it cannot be told): never joined as adjacent
                break
    finally:
        stream.close()
    return _write_units(taken, cache, f"{tok.key}/sample/{target}/{seed}/{text_field}", source, len(units), eot, memory)


def _write_units(taken: dict[int, list], cache: Path, spec: str, source: str, n_units: int, eot: np.ndarray,
                 memory: bool) -> dict:
    """Write the taken units in corpus order to a temporary file; content-keyed into the cache."""
    if not taken:
        raise DataError(f"corpus {source}: the sample found no text; the files are empty or whitespace only")
    h = hashlib.sha256(f"{CACHE_FORMAT}/{spec}".encode())
    staging = cache / "tokens" / f"sample-{os.getpid()}.npy"
    n_docs, prev = 0, None
    with _TokenFile(staging, eot.dtype, memory=memory) as out:
        for pos in sorted(taken):
            arrays, starts, whole = taken[pos]
            if not arrays:
                continue
            joined = prev is not None and pos == prev[0] + 1 and prev[1] and not starts
            if prev is not None and not joined:
                out.write(eot)
            n_docs += (not joined) + sum(a is eot for a in arrays)
            for a in arrays:
                out.write(a)
            prev = (pos, whole)
        h.update(out.sha.digest())
        key = h.hexdigest()[:32]
        out.path = cache / "tokens" / f"{key}.npy"
        out.commit()
    return {"key": key, "file": str(out.path), "n_documents": n_docs, "fresh": True, "sampled": True,
            "units": f"{len(taken)} of {n_units}", **out.held()}


def _load_shards(plan, cache: Path, target: int | None, seed: int, source: str, log, token_dtype: str = "uint16",
                 vocab_size: int | None = None, eot: np.ndarray | None = None, memory: bool = False) -> dict:
    """Pre-tokenized shards: one shard is mapped in place; several (or a sample) are joined into the cache.

    Every id is checked against ``vocab_size`` (model.vocab_size): one line names the shard, the id and the
    fix. A sample's blocks that were not adjacent are separated by ``eot`` (none if empty)."""
    shards = [(f, _shard(f, token_dtype)) for f, _, _ in plan]
    dtype = max((ids.dtype for _, ids in shards), key=lambda d: d.itemsize)
    vocab = {"vocab_size": vocab_size} if vocab_size else {}
    n_total = sum(len(ids) for _, ids in shards)
    if target is not None and target < n_total:
        units = sample_units(plan, token_dtype)
        order = np.random.default_rng([seed, 0x5A3]).permutation(len(units))
        taken: dict[int, list] = {}
        total = top = 0
        maps = {f: ids for f, ids in shards}
        for pos in order:
            u = units[pos]
            block = np.asarray(maps[u.file][u.start:min(u.stop, u.start + target - total)])
            _check_ids(block, u.file, u.start, **vocab)
            top = max(top, int(block.max()) if len(block) else 0)
            taken[int(pos)] = [[block], False, len(block) == u.stop - u.start]
            total += len(block)
            if total >= target:
                break
        sep = np.zeros(0, dtype) if eot is None else eot.astype(dtype)
        entry = _write_units(taken, cache, f"shards/{token_dtype}/{sep.tolist()}/{target}/{seed}", source, len(units),
                             sep, memory)
        entry["format"] = "bin"
        entry["n_documents"] = len(taken)
        entry["max_id"] = max(top, int(sep.max()) if len(sep) else 0)
        return entry
    if log:
        log(f"checking {len(shards)} token shard(s) of {source}: {n_total:,} tokens ...")
    h = hashlib.sha256(f"{CACHE_FORMAT}/bin/{dtype.str}".encode())
    if len(shards) == 1:
        f, ids = shards[0]
        top = _scan_shard(f, ids, h, **vocab)
        return {"key": h.hexdigest()[:32], "shard": str(f), "offset": int(ids.offset), "dtype": ids.dtype.str,
                "n_documents": 1, "format": "bin", "fresh": True, "max_id": top}
    staging = cache / "tokens" / f"shards-{os.getpid()}.npy"
    with _TokenFile(staging, dtype, memory=memory) as out:
        top = max(_scan_shard(f, ids, h, out, **vocab) for f, ids in shards)
        key = h.hexdigest()[:32]
        out.path = cache / "tokens" / f"{key}.npy"
        out.commit()
    return {"key": key, "file": str(out.path), "n_documents": len(shards), "format": "bin", "fresh": True,
            "max_id": top, **out.held()}
