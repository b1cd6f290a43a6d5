"""The sweep report: what `hpsearch report NAME [--reruns N]` writes.

It reads a finished sweep directory (trials.parquet, curves.parquet, sweep.json) and writes
``report/`` beside them: PNG plots and an ``index.html`` that shows them under a short summary.

    curves.png         train and val loss against tokens seen, for the best k trials
    lr_schedule.png    the best trial's learning rate per step (warmup, then cosine)
    axis_<name>.png    best_val_loss against each hyperparameter, one point per trial
    importance.png     hyperparameter importance (Optuna's default evaluator)
    reruns.csv         with --reruns N: the best two configs retrained over N new seeds each

The checks follow the tuning playbook: warn when the best value sits on the edge of its range,
count infeasible trials, and (with ``reruns``) rerun the best two configs over seeds before trusting
the ranking. The best trial is the first of `hpsearch.results.ranked`.

    data.py        the sweep directory read into typed objects (Space, PretrainConfig)
    checks.py      the playbook's checks, pure functions of tables and numbers
    importance.py  hyperparameter importance through an in-memory Optuna study
    plots.py       the PNGs
    reruns.py      seed reruns of the best two configs (real training)
    page.py        index.html
    writer.py      write_report, which ties them together
"""

from hpsearch.report.checks import (
    Check,
    edge_check,
    failures_check,
    lead_exceeds_noise,
    run_checks,
    seed_noise_check,
)
from hpsearch.report.data import Sweep, load_sweep
from hpsearch.report.importance import hparam_importance
from hpsearch.report.reruns import rerun_top
from hpsearch.report.writer import write_report

__all__ = [
    "Check", "Sweep", "edge_check", "failures_check", "hparam_importance", "lead_exceeds_noise",
    "load_sweep", "rerun_top", "run_checks", "seed_noise_check", "write_report",
]
