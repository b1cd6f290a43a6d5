"""File helpers: atomic writes and safe YAML reads.

Atomic writes go to a temporary file beside the target, then rename it over the target: a kill at
any moment leaves either the old file or the new one, never a truncated file that loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trainables.errors import first_line


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path``; the temp file never outlives a failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_yaml(path: str | os.PathLike, *, error: type[Exception], missing: str) -> Any:
    """``yaml.safe_load`` of a file; a missing file or bad YAML raises ``error`` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p} does not exist; {missing}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{p}: not valid YAML ({first_line(exc)}); fix the syntax") from None
