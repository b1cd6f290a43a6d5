"""Validation of one axis or fixed value against the hyperparameter vocabulary.

An axis's type is its default's type in `PretrainConfig` (int, float or bool; a default of None,
as for max_tokens and stride, means an optional int). Functions return problems as one-line strings
naming the culprit and the fix, so a whole file's mistakes can be reported at once.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from search_spaces.dists import DISTS, Dist, IntRange, LogUniform
from trainables.config import AXES, PretrainConfig
from trainables.errors import brief, did_you_mean

TYPE_WORDS = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
              list: "a list of integers"}


@cache
def _defaults() -> dict[str, Any]:
    return PretrainConfig().hparams()


def axis_type(axis: str) -> type:
    """int, float, bool or str (e.g. parametrization): the type values of ``axis`` must have."""
    default = _defaults()[axis]
    return _optional_type(axis) if default is None else type(default)


@cache
def _optional_type(axis: str) -> type:
    """The type of an axis whose default is None, from its field's annotation ("float | None")."""
    from dataclasses import fields

    from trainables.config import DataArgs, TrainArgs
    from trainables.model_config import GPTConfig

    for cls in (TrainArgs, GPTConfig, DataArgs):
        for f in fields(cls):
            if f.name == axis:
                kind = str(f.type)
                return list if kind.startswith("list") else float if "float" in kind else int
    return int


def unknown_name(what: str, name: Any) -> str:
    hint = did_you_mean(str(name), AXES)
    return f"unknown {what} '{name}'{hint}" + ("" if hint else f"; tunable names: {', '.join(AXES)}")


def coerce(axis: str, value: Any) -> Any:
    """``value`` as the axis's type: ints widen to float, numeric strings ("1e-4") parse for float
    axes, null is kept for optional axes. Raises ValueError naming the value and the type wanted."""
    want = axis_type(axis)
    if value is None and _defaults()[axis] is None:
        return None
    if isinstance(value, bool):
        if want is bool:
            return value
    elif want is int and isinstance(value, int):
        return value
    elif want is float:
        number = _float(value)
        if number is not None:
            return number
    elif want is str and isinstance(value, str):
        return value
    elif want is list and isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ValueError(f"{brief(value)} is not {TYPE_WORDS[want]}; {axis} takes {_plural(want)}")


def _float(value: Any) -> float | None:
    """A finite float from an int, float or numeric string; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# Names a space may fix but not search, and why.
FIXED_ONLY = {"eval_batch_size": "sets the validation windows every trial is scored on, so trials that differ in "
                                 "it cannot be compared"}


def _plural(want: type) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings", list: "lists of integers"}[want]


def parse_axis(axis: str, spec: Any) -> tuple[Dist | None, list[str]]:
    """The distribution ``spec`` (a one-key mapping such as ``{grid: [4, 8]}``) declares for ``axis``."""
    where = f"axis '{axis}'"
    if not (isinstance(spec, dict) and len(spec) == 1):
        return None, [f"{where} must be a one-key mapping like {{grid: [4, 8]}} or "
                      f"{{loguniform: [1.0e-4, 1.0e-2]}}, got {brief(spec)}"]
    if axis_type(axis) is list:
        return None, [f"{where}: {axis} takes a list, which is set under fixed:, not searched"]
    if axis in FIXED_ONLY:
        return None, [f"{where}: {axis} {FIXED_ONLY[axis]}; set it under fixed:, not as an axis"]
    ((kind, args),) = spec.items()
    cls = DISTS.get(kind)
    if cls is None:
        return None, [f"{where}: unknown distribution '{kind}'{did_you_mean(str(kind), DISTS)}; "
                      f"use one of {', '.join(DISTS)}"]
    if cls.discrete:
        return _parse_values(axis, cls, args)
    return _parse_range(axis, cls, args)


def _parse_values(axis: str, cls: type, args: Any) -> tuple[Dist | None, list[str]]:
    where = f"axis '{axis}': {cls.kind}"
    if not isinstance(args, list) or not args:
        return None, [f"{where} needs a non-empty list of values, got {brief(args)}"]
    values, problems = [], []
    for value in args:
        try:
            values.append(coerce(axis, value))
        except ValueError as exc:
            problems.append(f"{where} value {exc}")
    for value in values:  # each value as a config would check it on its own (fixed values get the same)
        problems += [f"{where} value {brief(value)}: {p}" for p in value_problems(axis, value)]
    dupes = [v for i, v in enumerate(values) if v in values[:i]]
    if dupes:
        problems.append(f"{where} has duplicate values {', '.join(map(repr, dict.fromkeys(dupes)))}; "
                        "list each value once")
    return (None if problems else cls(tuple(values))), problems


def _parse_range(axis: str, cls: type, args: Any) -> tuple[Dist | None, list[str]]:
    where, want = f"axis '{axis}': {cls.kind}", axis_type(axis)
    if want is bool:
        return None, [f"{where} cannot vary a boolean; use {{grid: [false, true]}} or {{choice: [false, true]}}"]
    if want is str:
        return None, [f"{where} cannot draw from a range of strings; list the values: {{grid: [...]}} or {{choice: [...]}}"]
    if want is int and cls is not IntRange:
        return None, [f"{where} draws floats but {axis} takes integers; use {{int: [low, high]}}"]
    if not (isinstance(args, list) and len(args) == 2):
        return None, [f"{where} needs two numbers [low, high], got {brief(args)}"]
    if cls is IntRange:
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in args):
            return None, [f"{where} needs two integers [low, high], got {brief(args)}"]
        low, high = args
    else:
        low, high = (_float(b) for b in args)
        if low is None or high is None:
            return None, [f"{where} needs two numbers [low, high], got {brief(args)}"]
    if low >= high:
        return None, [f"{where}: `low < high` must hold, but got (low={brief(low)}, high={brief(high)})"]
    if cls is LogUniform and low <= 0:
        return None, [f"{where} bounds must be > 0 (log scale), but got (low={brief(low)}, high={brief(high)}); "
                      "raise low, or use uniform or choice to include 0"]
    bounds = [f"{where} bound {brief(b)}: {p}" for b in (low, high) for p in value_problems(axis, b)]
    return (None, bounds) if bounds else (cls(low, high), [])


def value_problems(axis: str, value: Any) -> list[str]:
    """What the config says of ``axis = value`` on its own (its range: batch_size >= 1, dropout in [0, 1),
    ...); rules between fields (min_lr <= peak_lr, emb_dim divisible by n_heads) are left to the trial."""
    from trainables.errors import ConfigError

    try:
        PretrainConfig().with_hparams({axis: value}, source=f"axis '{axis}'")
    except ConfigError as exc:
        own = f"{AXES[axis]}.{axis} must"
        return [p for p in str(exc).split("; ") if p.startswith(own)]
    return []

