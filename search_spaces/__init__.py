"""Search spaces for hyperparameter sweeps: declarations only, no side effects on import.

A space names hyperparameters (the bare names of `trainables.config.AXES`) and a distribution for
each, plus fixed values. Built-ins ship as YAML files next to this module; users write their own in
the same format and pass the path wherever a built-in name is accepted.

    >>> space = get_space("seed-grid")
    >>> space.grid_size()
    38880
"""

from search_spaces.registry import builtin_spaces, get_space
from search_spaces.spec import (
    MODES,
    Choice,
    Dist,
    Grid,
    IntRange,
    LogUniform,
    Space,
    Uniform,
    load_space,
    parse_space,
)

__all__ = [
    "MODES",
    "Choice",
    "Dist",
    "Grid",
    "IntRange",
    "LogUniform",
    "Space",
    "Uniform",
    "builtin_spaces",
    "get_space",
    "load_space",
    "parse_space",
]
