"""The distribution of one search axis: what a YAML file declares and what Ray Tune samples.

Each is a small frozen dataclass whose ``kind`` is its YAML key (``{loguniform: [1.0e-4, 1.0e-2]}``).
Ray is imported only when a space is converted, so declaring spaces stays cheap and side-effect free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Union

from trainables.files import plain

MODES = ("grid", "random", "optuna-asha", "quasi-random")
"""Search modes a space converts for: grid enumerates; the others sample."""


@dataclass(frozen=True)
class _Values:
    values: tuple
    kind: ClassVar[str]
    discrete: ClassVar[bool] = True

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: [plain(v) for v in self.values]}

    def contains(self, value) -> bool:
        return any(value == plain(v) for v in self.values)

    def to_tune(self, mode: str) -> Any:
        from ray import tune

        values = [plain(v) for v in self.values]
        return tune.grid_search(values) if mode == "grid" else tune.choice(values)


@dataclass(frozen=True)
class Grid(_Values):
    """An exhaustive axis: grid mode tries every value; sampling modes pick one at random."""

    kind: ClassVar[str] = "grid"


@dataclass(frozen=True)
class Choice(_Values):
    """A categorical axis, sampled uniformly (enumerated like Grid in grid mode)."""

    kind: ClassVar[str] = "choice"


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    kind: ClassVar[str]
    discrete: ClassVar[bool] = False

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: [plain(self.low), plain(self.high)]}

    def contains(self, value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high \
            and (not self.discrete_values or float(value).is_integer())

    discrete_values: ClassVar[bool] = False


@dataclass(frozen=True)
class Uniform(_Range):
    kind: ClassVar[str] = "uniform"

    def to_tune(self, mode: str) -> Any:
        from ray import tune

        return tune.uniform(plain(self.low), plain(self.high))


@dataclass(frozen=True)
class LogUniform(_Range):
    kind: ClassVar[str] = "loguniform"

    def to_tune(self, mode: str) -> Any:
        from ray import tune

        return tune.loguniform(plain(self.low), plain(self.high))


@dataclass(frozen=True)
class IntRange(_Range):
    """Integers from low to high, both inclusive."""

    low: int
    high: int
    kind: ClassVar[str] = "int"
    discrete_values: ClassVar[bool] = True

    def to_tune(self, mode: str) -> Any:
        from ray import tune

        return tune.randint(plain(self.low), plain(self.high) + 1)  # Tune's upper bound is exclusive


Dist = Union[Grid, Choice, Uniform, LogUniform, IntRange]
DISTS: dict[str, type] = {cls.kind: cls for cls in (Grid, Choice, Uniform, LogUniform, IntRange)}
