"""A search space: named axes (hyperparameter -> distribution) plus fixed values, from YAML.

    name: my-space
    description: one line
    axes:
      peak_lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {grid: [4, 8]}
    fixed:
      num_epochs: 2

`parse_space` reports every problem of a file in one single-line SpaceError that starts with the
source and names each culprit with its fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.checks import coerce, parse_axis, unknown_name
from search_spaces.dists import DISTS, MODES, Choice, Dist, Grid, IntRange, LogUniform, Uniform, plain
from trainables.config import AXES
from trainables.errors import SpaceError, brief, did_you_mean
from trainables.files import dump_yaml, read_yaml

BUILTIN = "built-in"
TOP_KEYS = ("name", "description", "axes", "fixed")
MAX_PROBLEMS = 12
"""Problems listed in one error; the rest are counted (a message stays one readable line)."""


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    axes: dict[str, Dist] = field(hash=False)
    """Hyperparameter -> distribution, in file order."""
    fixed: dict[str, Any] = field(default_factory=dict, hash=False)
    """Constant hyperparameters applied to every trial."""
    source: str = BUILTIN
    """The YAML file it was read from, or "built-in"."""

    def is_discrete(self) -> bool:
        return all(d.discrete for d in self.axes.values())

    def grid_size(self) -> int | None:
        """Configurations a grid enumerates (None if any axis is continuous)."""
        return math.prod(len(d.values) for d in self.axes.values()) if self.is_discrete() else None

    def to_tune(self, mode: str) -> dict[str, Any]:
        """The axes as a Ray Tune param_space (``fixed`` is not included).

        grid: every axis a ``tune.grid_search``; other modes sample, so grids become ``tune.choice``
        (Optuna rejects grid_search) and int ranges ``tune.randint(low, high + 1)``.
        """
        if mode not in MODES:
            raise SpaceError(f"space '{self.name}': unknown mode '{mode}'{did_you_mean(str(mode), MODES)}; "
                             f"modes: {', '.join(MODES)}")
        if mode == "grid":
            continuous = [f"axis '{a}' is {d.kind}" for a, d in self.axes.items() if not d.discrete]
            if continuous:
                raise SpaceError(f"space '{self.name}': {', '.join(continuous)}; grid mode needs grid/choice "
                                 "axes — use --mode optuna-asha, random or quasi-random")
        return {axis: dist.to_tune(mode) for axis, dist in self.axes.items()}

    def describe(self, width: int = 0) -> str:
        """One line for `hpsearch spaces`; ``width`` pads the name so a listing aligns."""
        n = len(self.axes)
        if self.is_discrete():
            kind = "grid" if all(isinstance(d, Grid) for d in self.axes.values()) else "discrete"
            size = self.grid_size()
            summary = f"{kind}, {size:,} configuration{_s(size)}, {n} ax{'is' if n == 1 else 'es'}"
        else:
            kinds = [d.kind for d in self.axes.values()]
            counts = ", ".join(f"{kinds.count(k)} {k}" for k in DISTS_ORDER if k in kinds)
            summary = f"{n} dimension{_s(n)} ({counts})"
        if self.fixed:
            summary += f", {len(self.fixed)} fixed"
        text = f"{self.name:<{width}}   {summary}"
        return f"{text} — {self.description}" if self.description else text

    def to_dict(self) -> dict[str, Any]:
        """The YAML file format (``parse_space(space.to_dict())`` gives an equal space)."""
        return {
            "name": self.name,
            "description": self.description,
            "axes": {axis: dist.to_yaml() for axis, dist in self.axes.items()},
            "fixed": {key: plain(value) for key, value in self.fixed.items()},
        }

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())


DISTS_ORDER = ("loguniform", "uniform", "int", "choice", "grid")


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def load_space(path: str | Path) -> Space:
    """Read a space from a YAML file (safe loader); ``name`` defaults to the file's stem."""
    p = Path(path)
    raw = read_yaml(p, error=SpaceError,
                    missing="pass an existing YAML space file or a built-in name (see `hpsearch spaces`)")
    if isinstance(raw, dict):
        raw = {"name": p.stem, **raw}
    return parse_space(raw, str(p))


def parse_space(raw: Any, source: str = "space") -> Space:
    """Validate a space in the YAML format; every problem goes into one SpaceError."""
    where = f"built-in space '{raw.get('name')}'" if source == BUILTIN and isinstance(raw, dict) else source
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping with keys {', '.join(TOP_KEYS)}, "
                         f"got {type(raw).__name__} {brief(raw, limit=40)}")
    problems = [f"unknown top-level key {brief(key, limit=40)}{did_you_mean(str(key)[:40], TOP_KEYS)}; "
                f"allowed: {', '.join(TOP_KEYS)}" for key in raw if key not in TOP_KEYS]
    name, description = raw.get("name"), raw.get("description") or ""
    if not isinstance(name, str) or not name.strip():
        problems.append(f"'name' must be a non-empty string, got {brief(name)}")
    if not isinstance(description, str):
        problems.append(f"'description' must be a string, got {brief(description)}")
    axes = _parse_axes(raw.get("axes"), problems)
    fixed = _parse_fixed(raw.get("fixed"), raw.get("axes"), problems)
    if problems:
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise SpaceError(f"{where}: " + "; ".join(problems[:MAX_PROBLEMS]) + more)
    return Space(name=name, description=description, axes=axes, fixed=fixed, source=source)


def _parse_axes(body: Any, problems: list[str]) -> dict[str, Dist]:
    if not isinstance(body, dict) or not body:
        problems.append(f"'axes' must be a non-empty mapping of hyperparameter -> distribution, "
                        f"e.g. axes: {{peak_lr: {{loguniform: [1.0e-4, 1.0e-2]}}}}; got {brief(body)}")
        return {}
    axes = {}
    for axis, spec in body.items():
        if axis not in AXES:
            problems.append(unknown_name("axis", axis))
            continue
        dist, found = parse_axis(axis, spec)
        problems.extend(found)
        if dist is not None:
            axes[axis] = dist
    return axes


def _parse_fixed(body: Any, axes: Any, problems: list[str]) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        problems.append(f"'fixed' must be a mapping of hyperparameter -> value, e.g. fixed: {{num_epochs: 2}}; "
                        f"got {brief(body)}")
        return {}
    fixed = {}
    for key, value in body.items():
        if key not in AXES:
            problems.append(unknown_name("fixed key", key))
        elif isinstance(axes, dict) and key in axes:
            problems.append(f"'{key}' is both an axis and fixed; keep it in one of the two")
        else:
            try:
                fixed[key] = coerce(key, value)
            except ValueError as exc:
                problems.append(f"fixed '{key}': {exc}")
    return fixed


__all__ = ["BUILTIN", "MODES", "Choice", "Dist", "Grid", "IntRange", "LogUniform", "Space", "Uniform",
           "load_space", "parse_space"]
