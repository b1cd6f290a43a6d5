"""hpsearch: hyperparameter search for GPT-style LLM pretraining on Ray Tune.

The service: sweeps (:mod:`hpsearch.sweep`), their results (:mod:`hpsearch.results`), export of the
best trial (:mod:`hpsearch.export`), the report (:mod:`hpsearch.report`), cluster launch
(:mod:`hpsearch.cluster`) and the ``hpsearch`` CLI (:mod:`hpsearch.cli`). Ray is imported lazily,
only by the functions that need it.
"""

from importlib.metadata import PackageNotFoundError, version

from trainables.errors import HPSearchError, SweepError

__all__ = ["HPSearchError", "SweepError", "__version__"]
try:  # one source of truth: pyproject.toml's version, as installed
    __version__ = version("hpsearch")
except PackageNotFoundError:  # a source tree on sys.path without `pip install`
    __version__ = "0+unknown"
