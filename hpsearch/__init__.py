"""hpsearch: hyperparameter search for GPT-style LLM pretraining on Ray Tune.

The service: sweeps (:mod:`hpsearch.sweep`), their results (:mod:`hpsearch.results`), export of the
best trial (:mod:`hpsearch.export`), the report (:mod:`hpsearch.report`), cluster launch
(:mod:`hpsearch.cluster`) and the ``hpsearch`` CLI (:mod:`hpsearch.cli`). Ray is imported lazily,
only by the functions that need it.
"""

from trainables.errors import HPSearchError, SweepError

__all__ = ["HPSearchError", "SweepError"]
__version__ = "0.1.0"
