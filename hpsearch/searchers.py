"""Search algorithms and schedulers for each sweep mode.

    grid          every point of a grid space once (Tune's BasicVariantGenerator)
    random        seeded random sampling (BasicVariantGenerator(random_state=seed))
    quasi-random  Optuna's seeded, scrambled Sobol QMCSampler: even coverage for exploration
    optuna-asha   Optuna TPE + ASHA early stopping, fidelity measured in tokens seen

Ray 2.60's OptunaSearch tells Optuna that an ASHA-stopped trial COMPLETEd with its early loss, which
misleads TPE, and leaves a trial whose loss ended NaN RUNNING. `StatusAwareOptunaSearch` reads the
trial's own ``hp_status`` instead: completed -> COMPLETE, stopped early -> PRUNED, diverged or
skipped-invalid or errored -> FAIL. Non-finite intermediate values are never reported to Optuna.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from trainables.status import COMPLETED, DIVERGED, SKIPPED



class StatusAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna each trial's real outcome (see the module docstring).

    It relies on three private attributes of Ray 2.60's ``OptunaSearch``, because Ray offers no public
    hook for the state a finished trial is told with:

    - ``_ot_trials``: Tune trial id -> the ``optuna.Trial`` it asked for (to tell the right trial),
    - ``_ot_study``: the ``optuna.Study`` (to ``tell`` it PRUNED or FAIL instead of COMPLETE),
    - ``_completed_trials``: ids already told (Optuna raises if a trial is told twice).

    ``tests/test_searchers.py`` pins them: if Ray renames or retypes any, that test fails loudly
    instead of sweeps silently telling Optuna the wrong thing.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if value is None or not math.isfinite(value) or trial_id in self._completed_trials:
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        status = (result or {}).get("hp_status")
        value = (result or {}).get(self.metric)
        if error or status in (DIVERGED, SKIPPED) or value is None or not math.isfinite(value):
            state, value = optuna.trial.TrialState.FAIL, None
        elif status == COMPLETED:
            state = optuna.trial.TrialState.COMPLETE
        else:  # stopped by the scheduler before its run ended
            state, value = optuna.trial.TrialState.PRUNED, None
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)


def optuna_storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"


def make_search(mode: str, *, seed: int, study_name: str, sweep_dir: Path, max_t: int,
                grace_tokens: int | None, reduction_factor: float, max_concurrent: int | None = None):
    """(search_alg, scheduler) for ``mode``."""
    if mode in ("grid", "random"):
        # Tune applies max_concurrent_trials to Searchers only; the variant generator takes its own
        return BasicVariantGenerator(random_state=seed if mode == "random" else None,
                                     max_concurrent=max_concurrent or 0), FIFOScheduler()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(optuna_storage_url(sweep_dir))
    if mode == "quasi-random":
        # OptunaSearch ignores its own seed when given a sampler: the sampler carries it.
        with warnings.catch_warnings():  # "QMCSampler is experimental" on every sweep
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                                 warn_independent_sampling=False,
                                                 warn_asynchronous_seeding=False)
        scheduler = FIFOScheduler()
    elif mode == "optuna-asha":
        sampler = optuna.samplers.TPESampler(seed=seed)
        grace = grace_tokens or max(1, int(max_t / reduction_factor ** 2))
        scheduler = ASHAScheduler(time_attr="tokens_seen", max_t=max_t, grace_period=grace,
                                  reduction_factor=reduction_factor)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    search = StatusAwareOptunaSearch(sampler=sampler, study_name=study_name, storage=storage)
    return search, scheduler
