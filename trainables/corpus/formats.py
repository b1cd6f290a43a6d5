"""Which files a corpus is, and in which format: the file walk, format sniffing, decompression.

Light: no numpy, no torch (the config's checks import :data:`FORMATS`).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

from trainables.errors import DataError, first_line

EMBEDDED = "embedded:pydoc_data.topics"
FORMATS = ("auto", "text", "jsonl", "parquet", "bin")
DEFAULT_PATTERN = "**/*.txt"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LLMC_MAGIC = 20240520  # llm.c's .bin shards: 256 int32 header (magic, version, count), then uint16 ids
_LLMC_MAGIC_U32 = 20240801  # llm.c's Llama 3 shards: the same header, then uint32 ids
TOKEN_DTYPES = {"uint16": "<u2", "uint32": "<u4"}
"""data.token_dtype: the width of the ids in a raw (headerless) .bin shard."""
_GLOBS = {
    "text": ("*.txt", "*.txt.gz", "*.txt.zst"),
    "jsonl": ("*.jsonl", "*.jsonl.gz", "*.jsonl.zst", "*.ndjson", "*.ndjson.gz", "*.ndjson.zst"),
    "parquet": ("*.parquet",),
    "bin": ("*.bin",),
}


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
        return [_regular(p)]
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


def _regular(p: Path) -> Path:
    """``p`` if it is a regular file; a FIFO, a device (/dev/zero) or a socket is refused before it is opened."""
    import stat

    mode = p.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise DataError(f"corpus path {p} is not a regular file ({kind}); pass a text file or a directory of "
                        "corpus files (copy a stream to a file first)")
    return p


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
    elif compression is None and len(head) >= 4 and int.from_bytes(head[:4], "little") in (_LLMC_MAGIC, _LLMC_MAGIC_U32):
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
