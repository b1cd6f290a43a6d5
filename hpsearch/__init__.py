"""hpsearch: hyperparameter search for GPT-style LLM pretraining on Ray Tune.

From Python (see :mod:`hpsearch.front`)::

    import hpsearch

    s = hpsearch.sweep("demo", num_samples=8, name="lr-1")   # -> Sweep: .trials, .curves, .best, .export(), ...
    s = hpsearch.load("lr-1")                                 # the same Sweep, read back from results/lr-1

and :func:`transfer` (width transfer, SP vs μP), :func:`scale` (the budget ladder), :class:`PretrainConfig`
and :func:`pretrain` (one run), and the error family (catch :class:`HPSearchError`). Names load on first
use: ``import hpsearch`` imports neither PyTorch nor Ray, nor pandas.

``sweep``, ``transfer`` and ``scale`` are also the modules that implement them (``from hpsearch.sweep
import run_sweep`` keeps working): each of the three modules is callable, and calling it calls the
front-door function of its name.
"""

import importlib
import inspect
import sys
import types
from importlib.metadata import PackageNotFoundError, version

from trainables.errors import (CheckpointError, ConfigError, DataError, DiskFullError, HPSearchError, SpaceError,
                               SweepError)
from trainables.lazy import lazy_getattr

_WHERE = {
    "Sweep": "hpsearch.front", "load": "hpsearch.front", "SweepOptions": "hpsearch.options",
    "PretrainConfig": "trainables.config", "load_config": "trainables.config", "pretrain": "trainables.pretrain",
}
_CALLABLE_MODULES = ("sweep", "transfer", "scale")

__all__ = ["CheckpointError", "ConfigError", "DataError", "DiskFullError", "HPSearchError", "PretrainConfig",
           "SpaceError", "Sweep", "SweepError", "SweepOptions", "__version__", "load", "load_config", "pretrain",
           "scale", "sweep", "transfer"]

try:  # one source of truth: pyproject.toml's version, as installed
    __version__ = version("hpsearch")
except PackageNotFoundError:  # a source tree on sys.path without `pip install`
    __version__ = "0+unknown"


class _FrontDoorModule(types.ModuleType):
    """hpsearch.sweep, hpsearch.transfer and hpsearch.scale: modules that are also the front-door functions."""

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module("hpsearch.front"), self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # the import system sets each submodule on its package once loaded: make these three callable
        if name in _CALLABLE_MODULES and isinstance(value, types.ModuleType):
            front = importlib.import_module("hpsearch.front")
            value.__class__ = _FrontDoorModule
            value.__signature__ = inspect.signature(getattr(front, name))
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


_lazy = lazy_getattr(__name__, _WHERE)


def __getattr__(name: str):
    if name in _CALLABLE_MODULES:  # the import sets it on the package, callable (_Package.__setattr__)
        return importlib.import_module(f"{__name__}.{name}")
    return _lazy(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
