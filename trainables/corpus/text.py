"""Documents of a corpus as text pieces: encodings, safe cuts, and the readers of text, JSONL and Parquet."""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from trainables.corpus.formats import DEFAULT_PATTERN, _open, _plan, corpus_files
from trainables.errors import DataError, first_line

_CHUNK_CHARS = 1 << 20  # text is read and tokenized in pieces of about this many characters
_ASCII_SPACE = " \t\n\r\x0b\x0c"

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


_WS_CUT = re.compile(r"(?<=\S)[ \t\n\r\x0b\x0c]")


def _safe_cut(text: str, at: int, start: int | None = None) -> int | None:
    """First index i >= max(at, 1) where text[i] is ASCII whitespace and text[i-1] is no whitespace.

    GPT-2's pre-tokenizer never puts such a pair into one piece, so the text cut there encodes to
    the same ids as the whole. (Only ASCII whitespace: Python's isspace() also takes the separators
    \\x1c-\\x1f, which the pre-tokenizer's \\s does not.)
    """
    m = _WS_CUT.search(text, max(at, start or 0, 1))
    return m.start() if m else None


# -- long unbroken runs ----------------------------------------------------------------------------

_RUN_CHARS = 6000
"""Longest run without whitespace (or of whitespace alone) handed to a tokenizer whole. Words, URLs
and identifiers of ordinary text are far shorter; a minified file, base64 or a DNA sequence on one
line is not, and BPE over one huge piece takes time and memory growing faster than its length
(tiktoken: 50 MB of one line peaked at 2.95 GB). A multiple of 3, so a digit run cut by length
splits where a tokenizer that groups digits by threes splits it too."""
_LONG_RUN = re.compile(r"\S{%d,}|\s{%d,}" % (_RUN_CHARS + 1, _RUN_CHARS + 1))


@functools.lru_cache(maxsize=1)
def _transition():
    """The last place in a window where a letter/digit run meets another class (regex, searched backwards).

    Letters then digits, digits then letters, and a letter or digit followed by a symbol: GPT-2's
    pre-tokenizer (tiktoken's, and the ByteLevel one of Hugging Face tokenizers) and the Llama 3 /
    cl100k pattern all end a piece there, so a cut there leaves the ids unchanged.
    """
    import regex

    return regex.compile(r"(?r)(?<=\p{L})(?=\p{N})|(?<=\p{N})(?=\p{L})|(?<=[\p{L}\p{N}])(?=[^\p{L}\p{N}\s])")


def _run_cuts(text: str, start: int, end: int) -> list[int]:
    """Cuts of the run text[start:end] into parts of at most _RUN_CHARS characters, greedily from its start:
    each at the last letter/digit boundary of its window, or, where the window has none (a run of one
    class: DNA, a line of spaces), at its end (the only cuts that may change the ids around them)."""
    cuts, at, find = [], start, _transition().search
    while end - at > _RUN_CHARS:
        m = find(text, at + 1, at + _RUN_CHARS + 1) if not text[at].isspace() else None
        at = m.start() if m else at + _RUN_CHARS
        cuts.append(at)
    return cuts


def _cut_runs(text: str) -> list[str]:
    """``text`` with every unbroken run longer than _RUN_CHARS cut (see :func:`_run_cuts`); text without
    such runs comes back whole, so its ids are unchanged."""
    cuts = [c for m in _LONG_RUN.finditer(text) for c in _run_cuts(text, m.start(), m.end())]
    if not cuts:
        return [text]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


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
                if cut is None and len(buffer) > 2 * _CHUNK_CHARS:
                    cut = _bounded_cut(buffer)
                if cut is None:
                    scanned = len(buffer)
                    break
                yield buffer[:cut]
                buffer, scanned = buffer[cut:], 0
            if not block:
                break
            block = fh.read(_CHUNK_CHARS)
        yield buffer


def _bounded_cut(buffer: str) -> int:
    """Where a buffer without a whitespace cut past _CHUNK_CHARS is cut so that memory stays bounded.

    Past _CHUNK_CHARS such a buffer is whitespace then one unbroken run, one of them longer than
    _RUN_CHARS: cut at the last cut :func:`_run_cuts` puts in it; the rest starts the next buffer. Text without such a run (words joined
    by non-ASCII spaces only, over MBs) is cut at _CHUNK_CHARS.
    """
    runs = list(_LONG_RUN.finditer(buffer, _CHUNK_CHARS // 2))
    cuts = _run_cuts(buffer, runs[-1].start(), runs[-1].end()) if runs else []
    return cuts[-1] if cuts else _CHUNK_CHARS


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
