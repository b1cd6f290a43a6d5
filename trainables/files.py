"""File helpers: atomic writes and bounded, strict YAML reads.

Atomic writes go to a temporary file beside the target, then rename it over the target: a kill at
any moment leaves either the old file or the new one, never a truncated file that loads.

Every YAML file the project reads (space files, pretraining configs, the built-in spaces) goes
through :func:`parse_yaml`: the safe constructors, but refused *before* anything is built when it
uses an alias (``*name``: the "billion laughs" bomb expands a few hundred bytes into gigabytes), is
larger than :data:`MAX_YAML_BYTES`, holds more than :data:`MAX_YAML_NODES` nodes, nests deeper than
:data:`MAX_YAML_DEPTH` or repeats a key. Memory stays bounded by the file's size, and every error is
one line naming the file and, where the YAML says where, the line and column.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from trainables.errors import DiskFullError, first_line

MAX_YAML_BYTES = 1 << 20
"""1 MiB: a space or a pretraining config is a few KB; anything larger is the wrong file."""
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, size: int | None = None) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path``; the temp file never outlives a failure.

    A full disk raises :class:`DiskFullError` (one line: the path, the space it needed, what is free)
    instead of whatever the writer raised (torch.save says only "unexpected pos"); ``size`` is the
    number of bytes to write, when known.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        if _out_of_space(exc, tmp):
            raise DiskFullError(no_space_message(path, written=_size(tmp), size=size)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    data = text.encode("utf-8")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), size=len(data))


NEARLY_FULL = 1 << 20
"""Free bytes below which a failed write that gives no errno (torch.save) is taken for a full disk."""


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full: our own
    DiskFullError, an OSError with ENOSPC/EDQUOT, or a library's message saying so (pyarrow's copies)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DiskFullError) or isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc)[:2000] or "Disk quota exceeded" in str(exc)[:2000]:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _out_of_space(exc: Exception, tmp: Path) -> bool:
    if is_out_of_space(exc):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return False
    return _size(tmp) > 0 and _free(tmp.parent) < NEARLY_FULL


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _free(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 0


def no_space_message(path: Path, *, written: int, size: int | None) -> str:
    need = f"{size:,} bytes" if size else f"more than {max(written, 1):,} bytes"
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"{path.name} was not written"
    return (f"no space left to write {path}: it needs {need}, {_free(path.parent):,} bytes are free on that "
            f"file system; {kept}. Free space there (or write elsewhere: --out, --results-dir) and run it again")


# -- YAML ---------------------------------------------------------------------------------------

class YAMLRefused(yaml.MarkedYAMLError):
    """A YAML document hpsearch will not build (alias, too many nodes, too deep, duplicate key)."""


if yaml.__with_libyaml__:  # libyaml's C parser (fast), with the composer in Python so each node is seen
    from yaml._yaml import CParser as _Parser

    class _Base(Composer, _Parser, SafeConstructor, Resolver):
        def __init__(self, stream):
            _Parser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader


class StrictLoader(_Base):
    """``yaml.SafeLoader`` that refuses aliases, oversized or over-deep documents and duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise YAMLRefused(None, None, f"alias '*{first_line(event.anchor, limit=40)}' is not allowed "
                              "(aliases can expand a small file into gigabytes); write the value out",
                              event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise YAMLRefused(None, None, f"more than {MAX_YAML_NODES:,} values; is this the right file?",
                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YAMLRefused(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen and key != "<<":
                    raise YAMLRefused(None, None, f"key '{first_line(key, limit=60)}' appears twice (first on "
                                      f"line {seen[key].line + 1}); keep one", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)



def parse_yaml(text: str, *, source: str, error: type[Exception]) -> Any:
    """The YAML document in ``text`` (see the module docstring); ``error`` naming ``source`` if refused."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{source} is {len(text):,} characters; hpsearch reads YAML files up to "
                    f"{MAX_YAML_BYTES:,} (a space or a config is a few KB): is this the right file?")
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise error(yaml_problem(source, exc)) from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML ({first_line(exc)}); fix the syntax") from None
    finally:
        loader.dispose()


def yaml_problem(source: str, exc: yaml.MarkedYAMLError) -> str:
    """'FILE, line L, column C: PROBLEM' (1-based), with the YAML's own context where it adds to it."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
    problem = first_line(exc.problem or exc.context or "not valid YAML", limit=200)
    if isinstance(exc, YAMLRefused):
        return f"{where}: {problem}"
    context = f" {first_line(exc.context, limit=80)}" if exc.context and exc.problem else ""
    return f"{where}: not valid YAML ({problem}{context}); fix the syntax"


def read_yaml(path: str | os.PathLike, *, error: type[Exception], missing: str) -> Any:
    """The YAML document in a file (:func:`parse_yaml`); a missing, unreadable or bad file raises ``error``."""
    p = Path(path)
    try:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise error(f"{p} does not exist; {missing}") from None
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{p} is a directory; {missing}")
        if not stat.S_ISREG(st.st_mode):  # /dev/zero never ends, a FIFO blocks until a writer comes
            raise error(f"{p} is not a regular file (a {file_kind(st.st_mode)}); hpsearch reads spaces and "
                        f"configs only from regular files: {missing}")
        if st.st_size > MAX_YAML_BYTES:
            raise error(f"{p} is {st.st_size:,} bytes; hpsearch reads YAML files up to {MAX_YAML_BYTES:,} "
                        "(a space or a config is a few KB): is this the right file?")
        with open(p, "rb") as f:  # bounded even if the file grew since stat
            data = f.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise error(f"{p} is over {MAX_YAML_BYTES:,} bytes; hpsearch reads YAML files up to {MAX_YAML_BYTES:,} "
                        "(a space or a config is a few KB): is this the right file?")
    except OSError as exc:
        raise error(f"{p} cannot be read ({exc.strerror or type(exc).__name__}); check its permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{p} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}); "
                    "save it as UTF-8") from None
    return parse_yaml(text, source=str(p), error=error)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for the one-line refusal)."""
    for test, kind in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """``yaml.safe_dump`` in key order that never writes aliases (so :func:`parse_yaml` reads it back)."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def plain(value: Any) -> Any:
    """numpy scalars (from search spaces, pandas) -> Python scalars, so configs and YAML serialize cleanly."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)) else value


def plain_tree(obj: Any) -> Any:
    """A structure as plain JSON and YAML values, the one sanitizer every written record goes through:
    string keys, lists for tuples, Python scalars for numpy ones, dataclasses as dicts, and NaN or
    infinity as None (strict JSON, which loads anywhere)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return plain_tree(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_tree(v) for v in obj]
    obj = plain(obj)
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj
