"""StatusAwareOptunaSearch against the real Ray OptunaSearch and a real Optuna study (no Ray cluster)."""

import itertools
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


# -- nothing trains that need not (issue 18) ------------------------------------------------------

from helpers import nano_config  # noqa: E402

from hpsearch.searchers import (EXCLUDED, EXHAUSTED, OPTUNA_MODES, UNTRIED,  # noqa: E402
                                BudgetedVariantGenerator, Proposals, default_grace, make_search)
from hpsearch.skips import excluded_lines  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

N_TOKENS = 20_000  # nano, context 32: 562 training windows


def discrete_search(tmp_path=None, **kw) -> StatusAwareOptunaSearch:
    cfg = nano_config(max_tokens=2048)
    space = {"peak_lr": optuna.distributions.CategoricalDistribution([1e-3, 2e-3]),
             "warmup_steps": optuna.distributions.CategoricalDistribution([2, 1000])}  # 1000 >= the run's 64 steps
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}") if tmp_path else None
    return StatusAwareOptunaSearch(space=space, metric=METRIC, mode="min", sampler=optuna.samplers.TPESampler(seed=0),
                                   proposals=Proposals(cfg.to_dict(), N_TOKENS), study_name="s", storage=storage, **kw)


def test_invalid_points_and_repeats_never_reach_a_trial_and_the_sampler_is_told(tmp_path):
    search = discrete_search(tmp_path)
    first, second = search.suggest("t0"), search.suggest("t1")
    assert {first["warmup_steps"], second["warmup_steps"]} == {2} and first != second  # the 2 valid points
    search.on_trial_result("t0", {METRIC: 7.0, "tokens_seen": 512, "training_iteration": 1, "hp_status": RUNNING})
    search.on_trial_complete("t0", {METRIC: 6.5, "hp_status": COMPLETED})
    search.on_trial_complete("t1", {METRIC: 6.9, "hp_status": RUNNING})  # stopped early by ASHA
    assert search.suggest("t2") == Searcher.FINISHED  # every untried point is invalid: nothing left to train
    trials = search._ot_study.get_trials(deepcopy=False)
    trained = [t for t in trials if EXCLUDED not in t.user_attrs]
    assert len(trained) == 2 and trained[0].intermediate_values == {512: 7.0}  # step = tokens seen
    invalid = [t for t in trials if t.user_attrs.get(EXCLUDED, "").startswith("invalid: ")]
    repeats = [t for t in trials if t.user_attrs.get(EXCLUDED, "").startswith("repeat of ")]
    assert invalid and all(t.state == State.FAIL and t.params["warmup_steps"] == 1000 for t in invalid)
    assert "must be below the run's total steps" in invalid[0].user_attrs[EXCLUDED]
    assert repeats and all(t.params["warmup_steps"] == 2 for t in repeats)
    for t in repeats:  # told the earlier trial's own outcome
        earlier = t.user_attrs[EXCLUDED].removeprefix("repeat of ")
        assert (t.state, t.value) == ((State.COMPLETE, 6.5) if earlier == "t0" else (State.PRUNED, None))
    assert search._ot_study.user_attrs[EXHAUSTED] and search._ot_study.metric_names == [METRIC]
    lines = excluded_lines(f"sqlite:///{tmp_path / 'optuna.db'}", "s", nano_config(max_tokens=2048), N_TOKENS)
    assert lines[0] == f"{len(invalid)} invalid proposals excluded before training (none took a trial slot):"
    assert lines[1].startswith(f"  {len(invalid)} x warmup_steps not below the run's total steps: ")
    assert "drop warmup_steps 1000" in lines[1]
    assert lines[2] == f"{len(repeats)} repeated proposals were told their earlier trial's outcome instead of training again"
    assert lines[3] == "the search ended before --num-samples: every valid point of the space has been tried"


@pytest.mark.parametrize("mode", OPTUNA_MODES)
def test_every_sampling_mode_proposes_each_valid_point_once_and_no_invalid_one(tmp_path, mode):
    from ray import tune

    search, _ = make_search(mode, seed=0, study_name="s", sweep_dir=tmp_path, max_t=2048, grace_tokens=None,
                            reduction_factor=3.0, proposals=Proposals(nano_config(max_tokens=2048).to_dict(), N_TOKENS))
    search.set_search_properties(METRIC, "min", {"peak_lr": tune.choice([1e-3, 2e-3, 4e-3]),
                                                 "warmup_steps": tune.choice([2, 1000])})  # 1000: no run that long
    proposed = []
    for i in range(10):
        params = search.suggest(f"t{i}")
        if params == Searcher.FINISHED:
            break
        proposed.append(params)
        search.on_trial_complete(f"t{i}", {METRIC: 6.0 + i, "hp_status": COMPLETED})
    assert sorted(p["peak_lr"] for p in proposed) == [1e-3, 2e-3, 4e-3]  # each valid point once, then done
    assert all(p["warmup_steps"] == 2 for p in proposed)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # PartialFixedSampler
def test_a_converged_sampler_is_handed_untried_points_until_every_valid_one_was_trained():
    space = {"peak_lr": optuna.distributions.CategoricalDistribution([1e-3, 2e-3, 4e-3, 8e-3]),
             "dropout": optuna.distributions.CategoricalDistribution([0.0, 0.1, 0.2])}
    stuck = optuna.samplers.PartialFixedSampler({"peak_lr": 1e-3, "dropout": 0.0}, optuna.samplers.RandomSampler(0))
    search = StatusAwareOptunaSearch(space=space, metric=METRIC, mode="min", sampler=stuck,  # one point, always
                                     proposals=Proposals(nano_config(max_tokens=2048).to_dict(), N_TOKENS))
    proposed = []
    while (params := search.suggest(f"t{len(proposed)}")) != Searcher.FINISHED and len(proposed) < 20:
        proposed.append((params["peak_lr"], params["dropout"]))
        search.on_trial_complete(f"t{len(proposed) - 1}", {METRIC: 6.0, "hp_status": COMPLETED})
    assert sorted(proposed) == sorted(itertools.product([1e-3, 2e-3, 4e-3, 8e-3], [0.0, 0.1, 0.2]))
    handed = [t for t in search._ot_study.trials if t.user_attrs.get(UNTRIED)]
    assert handed and all(EXCLUDED not in t.user_attrs for t in handed)  # they trained
    assert search._ot_study.user_attrs[EXHAUSTED] == "every valid point of the space has been tried"


def test_a_trial_starts_only_if_its_whole_run_fits_and_what_asha_stops_is_given_back():
    search = StatusAwareOptunaSearch(space={"peak_lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
                                     metric=METRIC, mode="min", sampler=optuna.samplers.TPESampler(seed=0),
                                     budget_tokens=1000, trial_tokens=400)
    assert search.suggest("t0") and search.suggest("t1")  # 2 x 400 charged, 800 of 1000
    assert search.suggest("t2") is None  # a third would need 1200: not started, asked again later
    search.on_trial_result("t0", {METRIC: 7.0, "tokens_seen": 200, "training_iteration": 1})
    search.on_trial_complete("t0", {METRIC: 7.0, "tokens_seen": 200, "hp_status": "early-stopped"})
    assert search.committed_tokens() == 600  # t0 gave back 200 of its 400
    assert search.suggest("t3")  # 600 + 400 = 1000 fits exactly
    assert search.suggest("t4") is None
    for t in ("t1", "t3"):
        search.on_trial_complete(t, {METRIC: 6.0, "tokens_seen": 400, "hp_status": "completed"})
    assert search.committed_tokens() == 1000 and search.suggest("t5") == Searcher.FINISHED

    grid = BudgetedVariantGenerator(budget_tokens=1000, trial_tokens=600)
    grid.on_trial_complete("a", {"tokens_seen": 500})
    assert not grid.budget_fits() and grid.budget_spent()  # 500 + 600 > 1000, nothing running
    assert grid.next_trial() is None and grid.is_finished()


@pytest.mark.parametrize("warmup, expected", [(0, 500), (300, 500), (700, 700), (5000, 999)])
def test_asha_judges_a_trial_at_half_its_run_and_never_before_the_longest_warmup_ends(warmup, expected):
    assert default_grace(1000, warmup) == expected


def test_a_grid_sweep_never_spends_more_than_its_token_budget(tmp_path, ray_session):
    from hpsearch.sweep import SweepOptions, run_sweep

    out = run_sweep(SweepOptions(space="smoke", mode="grid", model="nano", max_tokens_per_trial=1024, eval_freq=4,
                                 eval_iter=1, budget_tokens=2500, max_concurrent=2, results_dir=str(tmp_path),
                                 name="budget", dashboard=False, verbose=0), log=lambda _: None)
    # the smoke grid has 4 points of 1,024 tokens: two fit in 2,500, a third would not, whatever runs at once
    assert len(out.trials) == 2 and out.trials["tokens_seen"].sum() == 2048 <= 2500
    assert ("tokens trained: 2,048 of the --budget-tokens 2,500 (82% used; a trial starts only if its whole run of "
            "1,024 tokens fits in what is left, so the budget is never exceeded)") in out.skips


def test_an_optuna_asha_sweep_with_two_at_once_stays_within_its_budget(tmp_path, ray_session):
    from hpsearch.sweep import SweepOptions, run_sweep

    lines = []
    out = run_sweep(SweepOptions(space="smoke", mode="optuna-asha", model="nano", max_tokens_per_trial=1024,
                                 eval_freq=2, eval_iter=1, budget_tokens=3000, max_concurrent=2, num_samples=4,
                                 results_dir=str(tmp_path), name="asha-budget", dashboard=False, verbose=1),
                    log=lines.append)
    used = int(out.trials["tokens_seen"].sum())
    assert 2048 <= used <= 3000, used  # two whole runs always fit; a third only with what ASHA gave back
    # the budget buys 2.9 whole trials, all inside TPE's random start-up: the header says what that means
    assert ("TPE: the first 10 trials are sampled at random, then modelled; this sweep can pay for 2.9 whole "
            "trials, so it is close to a random search with early stopping (at that size the modes tie: "
            "bench/RESULTS.md 4b)") in lines


def test_the_header_counts_the_random_start_up_trials_a_warm_start_already_paid_for(tmp_path):
    import dataclasses

    from helpers import sweep_options
    from hpsearch.plan import plan_sweep
    from hpsearch.sweep import describe

    plan = plan_sweep(sweep_options(tmp_path, mode="optuna-asha", name="h"), log=lambda _: None)  # 12 samples
    tpe = lambda p: [line for line in describe(p) if line.startswith("TPE:")]  # noqa: E731
    assert tpe(plan) == ["TPE: the first 10 trials are sampled at random, then modelled"]
    warm = dataclasses.replace(plan, warm=[({"peak_lr": 1e-3}, 6.0)] * 3)  # an earlier sweep's 3 trials
    assert tpe(warm) == ["TPE: the first 7 trials are sampled at random, then modelled"]


def test_the_first_wave_of_trials_is_created_together_as_many_as_the_cluster_runs_at_once(ray_session, monkeypatch):
    from hpsearch.options import SweepOptions
    from hpsearch.ray_session import trial_slots
    from hpsearch.tuner import tune_env

    # the test session's Ray has 2 CPUs and no GPU
    assert [trial_slots(1, 0), trial_slots(0.5, 0), trial_slots(2, 0), trial_slots(1, 0, max_concurrent=1)] == [2, 4, 1, 1]
    assert trial_slots(1, 1) == trial_slots(1, 2) == 1  # no GPU here (a DDP trial too): never 0; check_resources refuses first
    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    pending = lambda **kw: tune_env(SweepOptions(**kw), slots=2).get("TUNE_MAX_PENDING_TRIALS_PG")  # noqa: E731
    assert pending(mode="optuna-asha") == pending(mode="grid", budget_tokens=10_000) == "2"
    assert pending(mode="grid") is None  # Tune's own (up to 200 queued): nothing to charge, no searcher to wait for
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "7")  # the user's own value is kept
    assert pending(mode="optuna-asha") is None


def test_warm_start_tells_the_earlier_trials_inside_the_new_space_and_never_retrains_them(tmp_path):
    import json

    import pandas as pd

    from hpsearch import results as res
    from hpsearch.warmstart import warm_points
    from search_spaces import parse_space
    from trainables.errors import SweepError

    base = nano_config(max_tokens=2048)
    earlier = tmp_path / "narrow"
    earlier.mkdir()
    rows = [{"trial_id": f"t{i}", "status": status, "peak_lr": lr, "warmup_steps": 2.0, "best_val_loss": loss,
             "best_val_tokens": 2048, "tokens_seen": 2048, "wall_time_s": 1.0}
            for i, (lr, loss, status) in enumerate([(1e-3, 7.0, "completed"), (2e-3, 6.5, "completed"),
                                                    (4e-3, 6.0, "early-stopped"), (9e-3, 5.0, "completed")])]
    res.save(earlier, pd.DataFrame(rows), pd.DataFrame(columns=res.CURVE_COLUMNS))
    (earlier / "sweep.json").write_text(json.dumps({"name": "narrow", "base_config": base.to_dict(), "finished": "x",
                                                    "space": {"axes": {"peak_lr": {}, "warmup_steps": {}}}}))
    wider = parse_space({"name": "wide", "axes": {"peak_lr": {"grid": [1e-3, 2e-3, 4e-3, 8e-3]},
                                                  "warmup_steps": {"grid": [2, 4]}}})
    points = warm_points(earlier, base, wider)  # 4e-3 stopped early, 9e-3 lies outside
    assert points == [({"peak_lr": 1e-3, "warmup_steps": 2.0}, 7.0), ({"peak_lr": 2e-3, "warmup_steps": 2.0}, 6.5)]

    search = StatusAwareOptunaSearch(space={"peak_lr": optuna.distributions.CategoricalDistribution([1e-3, 2e-3, 4e-3, 8e-3]),
                                            "warmup_steps": optuna.distributions.CategoricalDistribution([2, 4])},
                                     metric=METRIC, mode="min", sampler=optuna.samplers.TPESampler(seed=0),
                                     warm_start=points)
    proposed = []
    for i in range(8):
        p = search.suggest(f"t{i}")
        if p == Searcher.FINISHED:
            break
        proposed.append((p["peak_lr"], p["warmup_steps"]))
        search.on_trial_complete(f"t{i}", {METRIC: 6.0, "hp_status": COMPLETED})
    assert len(proposed) == 6 and len(set(proposed)) == 6  # the 8-point grid less the 2 warm points
    assert not {(1e-3, 2), (2e-3, 2)} & set(proposed)
    warm = [t for t in search._ot_study.get_trials(deepcopy=False) if t.user_attrs.get("warm_start")]
    assert sorted(t.value for t in warm) == [6.5, 7.0] and warm[0].params["warmup_steps"] == 2

    with pytest.raises(SweepError, match=r"--warm-start narrow: its losses are not comparable .* differs in "
                                         r"train.max_tokens \(2048 there, 4096 here\)"):
        warm_points(earlier, nano_config(max_tokens=4096), wider)


def test_the_first_rung_waits_for_the_longest_warmup_that_fits_the_budget():
    from hpsearch.sweep import max_warmup_tokens
    from search_spaces import get_space
    from trainables.config import PretrainConfig

    demo = get_space("demo")  # warmup_steps {5, 10, 20} x batch_size {4, 8, 16}, tiny model: context 64
    base = PretrainConfig()
    assert max(demo.axes["warmup_steps"].values) * max(demo.axes["batch_size"].values) * 64 == 20480
    # 20 x 16 x 64 = 20,480 tokens never fits a 16,384-token trial (such a point never trains); 20 x 8 x 64 does
    assert max_warmup_tokens(base, demo, 16384) == 10240
    assert default_grace(16384, max_warmup_tokens(base, demo, 16384)) == 10240
    assert max_warmup_tokens(base, demo, 10 ** 6) == 20480
