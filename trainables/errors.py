"""The project's error family.

Every error raised for bad input derives from :class:`HPSearchError`; its message is one line that
names the culprit (file, key, value) and the fix. The CLI prints exactly that line and exits non-zero,
so callers can catch the whole family with one ``except``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class HPSearchError(Exception):
    """Base class of every error hpsearch raises for bad input or an impossible request."""


class ConfigError(HPSearchError, ValueError):
    """A pretraining config (file or in-memory) is invalid."""


class DataError(HPSearchError, ValueError):
    """The corpus cannot be read, tokenized or windowed as asked."""


class CheckpointError(HPSearchError):
    """A checkpoint is corrupt, or does not belong to this model."""


class SpaceError(HPSearchError, ValueError):
    """A search space (built-in or YAML file) is invalid."""


class SweepError(HPSearchError):
    """A sweep cannot be started, resumed, read or exported as asked."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep or study before its answer: the message says how to finish it (exit 130)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` if none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def first_line(text: Any, *, limit: int = 300) -> str:
    """The first non-empty line of ``text`` (an exception or a string), at most ``limit`` characters.

    For an exception without a message, its type name. Never format an unbounded user value into an
    error message: pass it through here.
    """
    if isinstance(text, BaseException):
        body = str(text).strip()
        return (body.splitlines()[0] if body else type(text).__name__)[:limit]
    body = str(text).strip()
    return body.splitlines()[0][:limit] if body else ""


def word(value: Any, limit: int = 40) -> str:
    """A user value as a short string for :func:`did_you_mean`: the start of a string, else ''."""
    return value[:limit] if isinstance(value, str) else ""


def brief(value: Any, *, limit: int = 80) -> str:
    """A bounded ``repr`` of a user value for an error message: at most ``limit`` characters.

    Built with :mod:`reprlib`, so even a huge or deeply nested value costs little to describe.
    """
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset, r.maxlong = 3, 4, 6, 6, 6, 40
    r.maxstring = r.maxother = limit
    text = r.repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DiskFullError(HPSearchError, OSError):
    """A file could not be written for lack of space; the previous version of the file is intact."""


def shell_command(*words) -> str:
    """A command to paste into a shell, every word quoted (a path with spaces or `$(...)` stays one word)."""
    import shlex

    return shlex.join(str(w) for w in words)
