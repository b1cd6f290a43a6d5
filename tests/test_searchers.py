"""StatusAwareOptunaSearch against the real Ray OptunaSearch and a real Optuna study (no Ray cluster)."""

import math

import optuna
import pytest
from hpsearch.searchers import StatusAwareOptunaSearch
from trainables.status import COMPLETED, DIVERGED, METRIC, RUNNING, SKIPPED

State = optuna.trial.TrialState


@pytest.fixture()
def search():
    return StatusAwareOptunaSearch(space={"peak_lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}, metric=METRIC, mode="min",
                                   sampler=optuna.samplers.TPESampler(seed=0))


def test_ray_still_has_the_private_attributes_the_search_relies_on(search):
    # if this fails, Ray changed OptunaSearch's internals: re-read ray/tune/search/optuna/optuna_search.py
    # and adapt StatusAwareOptunaSearch before trusting any Optuna-mode sweep
    search.suggest("t0")
    assert isinstance(search._ot_study, optuna.Study)
    assert isinstance(search._ot_trials, dict) and isinstance(search._ot_trials["t0"], optuna.Trial)
    assert isinstance(search._completed_trials, set)


def test_each_outcome_is_told_to_optuna_with_its_own_state(search):
    for i in range(5):
        search.suggest(f"t{i}")
    search.on_trial_result("t0", {METRIC: 5.0, "training_iteration": 1, "hp_status": RUNNING})
    search.on_trial_result("t0", {METRIC: math.nan, "training_iteration": 2, "hp_status": RUNNING})  # never reported
    search.on_trial_complete("t0", {METRIC: 4.0, "hp_status": COMPLETED})
    search.on_trial_complete("t1", {METRIC: 6.0, "hp_status": RUNNING})  # stopped by the scheduler
    search.on_trial_complete("t2", {METRIC: 3.0, "hp_status": DIVERGED})
    search.on_trial_complete("t3", {METRIC: math.inf, "hp_status": SKIPPED})
    search.on_trial_complete("t4", None, error=True)
    search.on_trial_complete("t0", {METRIC: 1.0, "hp_status": COMPLETED})  # a second tell is ignored
    trials = search._ot_study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [State.COMPLETE, State.PRUNED, State.FAIL, State.FAIL, State.FAIL]
    assert trials[0].value == 4.0 and trials[1].value is None and trials[2].value is None
    assert trials[0].intermediate_values == {1: 5.0}  # the NaN report never reached Optuna
