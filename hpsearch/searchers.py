"""Search algorithms and schedulers for each sweep mode.

    grid          every point of a grid space once (Tune's BasicVariantGenerator)
    random        Optuna's seeded RandomSampler: plain random sampling
    quasi-random  Optuna's seeded, scrambled Sobol QMCSampler: even coverage for exploration
    optuna-asha   Optuna TPE + ASHA early stopping, fidelity measured in tokens seen

Ray 2.60's OptunaSearch tells Optuna that an ASHA-stopped trial COMPLETEd with its early loss, which
misleads TPE, and leaves a trial whose loss ended NaN RUNNING. `StatusAwareOptunaSearch` reads the
trial's own ``hp_status`` instead: completed -> COMPLETE, stopped early -> PRUNED, diverged or
skipped-invalid or errored -> FAIL. Non-finite intermediate values are never reported to Optuna, and
intermediate values are reported at the trial's tokens seen (not Tune's report count), so curves of
trials with different batch sizes line up in optuna-dashboard.

Nothing is trained that need not be (issue 18). The Optuna modes ask their sampler until it proposes a
point that would train: a statically invalid point (:class:`Proposals`: the LR order, warmup not below
the run's steps, a batch larger than the corpus) is told FAIL at once, and a point already proposed in
this sweep is told the earlier trial's outcome, so neither takes a trial slot and ``--num-samples``
counts trials that train. Both stay in the study with the user attribute ``excluded`` (why). A sampler
that keeps proposing tried or invalid points of a discrete space (TPE converges) is handed an untried
valid point, so a search ends only when every valid point was tried, or its budget is spent. A
``budget_tokens`` ends every mode's search once its trials have trained that many tokens in all.
"""

from __future__ import annotations

import inspect
import itertools
import math
import random
import warnings
from pathlib import Path

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.util import unflatten_dict

from trainables.budget import TokenBudget, default_grace, plan_run
from trainables.config import PretrainConfig
from trainables.errors import ConfigError, DataError, first_line
from trainables.status import COMPLETED, DIVERGED, SKIPPED

EXCLUDED = "excluded"
"""User attribute of a study trial that never trained: 'invalid: <why>' or 'repeat of <trial>'."""
EXHAUSTED = "exhausted"
"""Study user attribute: why the sampler stopped proposing (every new proposal was invalid or a repeat)."""
MAX_ASKS = 100
"""Proposals asked in a row before a search is taken to have no new valid point left."""
MISSES_BEFORE_UNTRIED = 10
"""Invalid or repeated proposals in a row after which a discrete space's search is handed an untried
valid point (picked at random) instead: a sampler that has converged keeps proposing what it has tried."""
MAX_ENUMERATED = 100_000
"""Largest discrete space whose points are enumerated to find an untried one."""
UNTRIED = "untried"
"""User attribute of a study trial that was handed to the sampler because it kept repeating itself."""
OPTUNA_MODES = ("optuna-asha", "quasi-random", "random")
"""Modes that propose through :class:`StatusAwareOptunaSearch` (no invalid point, no repeat, a study as they run)."""
TPE_OPTIONS: dict = {}
"""optuna-asha's TPESampler settings beyond the seed (Optuna 5's defaults: 10 random start-up trials,
multivariate TPE, constant liar), chosen on the problems of bench/search_gap.py; see bench/RESULTS.md
(4d measured start-up trials scaled to the budget and Optuna's GP sampler: neither is adopted)."""


def tpe_startup_trials() -> int:
    """How many trials optuna-asha's TPE samples at random before it models (TPE_OPTIONS or Optuna's default)."""
    default = inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"].default
    return int(TPE_OPTIONS.get("n_startup_trials", default))


class Proposals:
    """Whether a proposed point would train: the same checks a trial runs before training, without Ray.

    Holds the sweep's base config (as a dict) and the corpus size, never the tokens: it is pickled
    with the searcher into Tune's state.
    """

    def __init__(self, base: dict, n_tokens: int):
        self.base, self.n_tokens = base, n_tokens
        self._cfg: PretrainConfig | None = None

    def problem(self, params: dict) -> str | None:
        """None when the point would train; else the trial's own one-line reason."""
        if self._cfg is None:
            self._cfg = PretrainConfig.from_dict(self.base, source="sweep base config")
        try:
            plan_run(self._cfg.with_hparams(params, source="proposal"), self.n_tokens)
        except (ConfigError, DataError) as exc:
            return first_line(exc, limit=300)
        return None


def point_key(params: dict) -> tuple:
    """A point's identity: 2 and 2.0 (a parquet column's int read back as float) are the same value."""
    def norm(v):
        return repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)
    return tuple(sorted((k, norm(v)) for k, v in params.items()))


def _as_choice(dist, value):
    """``value`` as the categorical distribution's own choice (2.0 -> 2), else unchanged."""
    for choice in getattr(dist, "choices", ()):
        if choice == value:
            return choice
    return value


class BudgetedVariantGenerator(TokenBudget, BasicVariantGenerator):
    """Tune's grid generator that starts a trial only if its whole run fits in ``budget_tokens``.
    Its state (Tune pickles ``__dict__``) carries the tokens across ``--resume``."""

    def __init__(self, *, budget_tokens: int | None = None, trial_tokens: int | None = None, **kw):
        BasicVariantGenerator.__init__(self, **kw)
        self._init_budget(budget_tokens, trial_tokens)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._note_tokens(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._note_tokens(trial_id, result or {})  # a stopped trial's last result reaches only this hook
        self._ended(trial_id)
        super().on_trial_complete(trial_id, result, error)

    def next_trial(self):
        if not self.budget_fits():
            if self.budget_spent():
                self.set_finished()
            return None  # a running trial may still give tokens back
        trial = super().next_trial()
        if trial is not None:
            self._started(trial.trial_id)
        return trial



class StatusAwareOptunaSearch(TokenBudget, OptunaSearch):
    """OptunaSearch that tells Optuna each trial's real outcome (see the module docstring).

    It relies on three private attributes of Ray 2.60's ``OptunaSearch``, because Ray offers no public
    hook for the state a finished trial is told with:

    - ``_ot_trials``: Tune trial id -> the ``optuna.Trial`` it asked for (to tell the right trial),
    - ``_ot_study``: the ``optuna.Study`` (to ``tell`` it PRUNED or FAIL instead of COMPLETE),
    - ``_completed_trials``: ids already told (Optuna raises if a trial is told twice).

    ``tests/test_searchers.py`` pins them: if Ray renames or retypes any, that test fails loudly
    instead of sweeps silently telling Optuna the wrong thing.
    """

    def __init__(self, *args, proposals: Proposals | None = None, budget_tokens: int | None = None,
                 trial_tokens: int | None = None, warm_start: list[tuple[dict, float]] = (), **kw):
        # set before OptunaSearch.__init__, which sets the study up at once when given a space
        self._proposals = proposals
        self._warm = list(warm_start)
        self._init_budget(budget_tokens, trial_tokens)
        self._by_point: dict[tuple, str] = {}  # point -> the Tune trial that trains it
        self._outcomes: dict[str, tuple] = {}  # Tune trial id -> (state, value) it was told
        self._reported: dict[str, set[int]] = {}  # Tune trial id -> steps (tokens) of its intermediate values
        super().__init__(*args, **kw)

    def _setup_study(self, mode):
        super()._setup_study(mode)
        if not self._ot_study.metric_names:
            with warnings.catch_warnings():  # "set_metric_names is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names([self._metric])  # optuna-dashboard names the objective
        for i, (params, value) in enumerate(self._warm):  # --warm-start: an earlier sweep's finished trials
            params = {k: _as_choice(self._space[k], v) for k, v in params.items()}
            self._ot_study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: self._space[k] for k in params}, value=value,
                user_attrs={"warm_start": True}))
            self._by_point[point_key(params)] = f"warm-{i}"
            self._outcomes[f"warm-{i}"] = (optuna.trial.TrialState.COMPLETE, value)
        self._warm = []  # told once; a resumed sweep's study already holds them

    def suggest(self, trial_id: str):
        if trial_id in self._ot_trials or callable(self._space) or not self._space:
            return super().suggest(trial_id)
        if not self.budget_fits():  # the next trial's whole run would not fit in what is left
            return Searcher.FINISHED if self.budget_spent() else None  # None: ask again when a trial ends
        for ask in range(1, MAX_ASKS + 1):
            ot_trial = self._ot_study.ask(fixed_distributions=self._space)
            params = unflatten_dict(ot_trial.params)
            why = self._proposals.problem(params) if self._proposals else None
            if why:
                ot_trial.set_user_attr(EXCLUDED, f"invalid: {why}")
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            elif (earlier := self._by_point.get(point_key(params))) is not None:
                # the sampler learns the earlier outcome; nothing trains again
                state, value = self._outcomes.get(earlier, (optuna.trial.TrialState.FAIL, None))
                ot_trial.set_user_attr(EXCLUDED, f"repeat of {earlier}")
                self._ot_study.tell(ot_trial, value, state=state)
            else:
                self._by_point[point_key(params)] = trial_id
                self._ot_trials[trial_id] = ot_trial
                self._started(trial_id)
                return params
            if ask % MISSES_BEFORE_UNTRIED == 0:  # the sampler is stuck: hand it an untried point, if any
                untried = self._untried_point()
                if untried is None:
                    self._ot_study.set_user_attr(EXHAUSTED, "every valid point of the space has been tried")
                    return Searcher.FINISHED
                if untried:  # the next ask returns it
                    self._ot_study.enqueue_trial(untried, user_attrs={UNTRIED: True})
        self._ot_study.set_user_attr(EXHAUSTED, f"{MAX_ASKS} proposals in a row were invalid or repeats: the "
                                                "space has no untried valid point left (or almost none)")
        return Searcher.FINISHED

    def _untried_point(self) -> dict | None:
        """A valid point of a discrete space that no trial has had, picked at random (seeded by the
        search's history); None when there is none left; {} when the space is not small and discrete."""
        choices = {}
        for name, dist in self._space.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                choices[name] = list(dist.choices)
            elif isinstance(dist, optuna.distributions.IntDistribution) and not dist.log:
                choices[name] = list(range(dist.low, dist.high + 1, dist.step))
            else:
                return {}
        if math.prod(len(c) for c in choices.values()) > MAX_ENUMERATED:
            return {}
        points = [dict(zip(choices, values)) for values in itertools.product(*choices.values())]
        random.Random(len(self._by_point)).shuffle(points)
        for point in points:
            params = unflatten_dict(point)
            if point_key(params) not in self._by_point and not (self._proposals and self._proposals.problem(params)):
                return point
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._note_tokens(trial_id, result)
        value = result.get(self.metric)
        if value is None or not math.isfinite(value) or trial_id in self._completed_trials \
                or trial_id not in self._ot_trials:
            return
        step = int(result.get("tokens_seen") or result.get("training_iteration") or 0)
        self._ot_trials[trial_id].report(value, step)  # the step is tokens seen
        self._reported.setdefault(trial_id, set()).add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._note_tokens(trial_id, result or {})
        self._ended(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        status = (result or {}).get("hp_status")
        value = (result or {}).get(self.metric)
        # the result ASHA stopped a trial on reaches only this hook: record it as the trial's last evaluation
        if value is not None and math.isfinite(value) and (result or {}).get("tokens_seen") and not error:
            step = int(result["tokens_seen"])
            if step not in self._reported.setdefault(trial_id, set()):
                self._ot_trials[trial_id].report(value, step)
        if error or status in (DIVERGED, SKIPPED) or value is None or not math.isfinite(value):
            state, value = optuna.trial.TrialState.FAIL, None
        elif status == COMPLETED:
            state = optuna.trial.TrialState.COMPLETE
        else:  # stopped by the scheduler before its run ended
            state, value = optuna.trial.TrialState.PRUNED, None
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)
        self._outcomes[trial_id] = (state, value)


def optuna_storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"


def make_search(mode: str, *, seed: int, study_name: str, sweep_dir: Path, max_t: int,
                grace_tokens: int | None, reduction_factor: float, max_concurrent: int | None = None,
                proposals: Proposals | None = None, budget_tokens: int | None = None, warmup_tokens: int = 0,
                warm_start: list[tuple[dict, float]] = (), tpe: dict | None = None):
    """(search_alg, scheduler) for ``mode``; ``tpe`` overrides TPE_OPTIONS (the benchmark's candidates)."""
    if mode == "grid":
        # Tune applies max_concurrent_trials to Searchers only; the variant generator takes its own
        return BudgetedVariantGenerator(max_concurrent=max_concurrent or 0, budget_tokens=budget_tokens,
                                        trial_tokens=max_t), \
            FIFOScheduler()
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
    elif mode == "random":
        sampler, scheduler = optuna.samplers.RandomSampler(seed=seed), FIFOScheduler()
    elif mode == "optuna-asha":
        options = {**TPE_OPTIONS, **(tpe or {})}
        # "sampler": "gp" swaps in Optuna's Gaussian-process sampler (a candidate the benchmark measures)
        kind = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}[options.pop("sampler", "tpe")]
        with warnings.catch_warnings():  # "group is experimental" (a candidate the benchmark may try)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = kind(seed=seed, **options)
        grace = grace_tokens or default_grace(max_t, warmup_tokens)
        scheduler = ASHAScheduler(time_attr="tokens_seen", max_t=max_t, grace_period=grace,
                                  reduction_factor=reduction_factor)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    search = StatusAwareOptunaSearch(sampler=sampler, study_name=study_name, storage=storage, proposals=proposals,
                                     budget_tokens=budget_tokens, trial_tokens=max_t, warm_start=warm_start)
    return search, scheduler


def write_study(storage_url: str, study_name: str, trials, curves, space) -> int:
    """The sweep as an Optuna study, for grid sweeps that ran without Optuna, so that
    optuna-dashboard opens every sweep alike: one trial per results row (completed -> COMPLETE,
    early-stopped -> PRUNED, the rest FAIL), its best_val_loss as the objective, its evaluations as
    intermediate values at tokens seen. Rewritten whole each time (a resumed sweep's table has grown).
    Returns the number of trials written."""
    import pandas as pd

    from search_spaces.dists import IntRange, LogUniform, Uniform
    from trainables.files import plain
    from trainables.status import EARLY_STOPPED, METRIC

    def distribution(dist):
        if isinstance(dist, IntRange):
            return optuna.distributions.IntDistribution(int(dist.low), int(dist.high))
        if isinstance(dist, (Uniform, LogUniform)):
            return optuna.distributions.FloatDistribution(float(dist.low), float(dist.high),
                                                          log=isinstance(dist, LogUniform))
        return optuna.distributions.CategoricalDistribution([plain(v) for v in dist.values])

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line in the summary
    storage = optuna.storages.RDBStorage(storage_url)
    try:
        optuna.delete_study(study_name=study_name, storage=storage)
    except KeyError:
        pass
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC])
    dists = {axis: distribution(dist) for axis, dist in space.axes.items()}
    by_trial = {k: g for k, g in curves.groupby("trial_id")} if len(curves) else {}
    made = []
    for _, row in trials.iterrows():
        params = {a: _as_choice(dists[a], plain(row[a])) for a in dists if a in row and not pd.isna(row[a])}
        if len(params) != len(dists):
            continue  # a trial without a value on some axis (never started): nothing to show
        value = float(row["best_val_loss"])
        state = (optuna.trial.TrialState.COMPLETE if row["status"] == COMPLETED and math.isfinite(value)
                 else optuna.trial.TrialState.PRUNED if row["status"] == EARLY_STOPPED
                 else optuna.trial.TrialState.FAIL)
        evals = by_trial.get(row["trial_id"])
        steps = {} if evals is None else {int(t): float(v) for t, v in zip(evals["tokens_seen"], evals["val_loss"])
                                          if math.isfinite(v)}
        made.append(optuna.trial.create_trial(
            params=params, distributions={a: dists[a] for a in params}, state=state,
            value=value if state == optuna.trial.TrialState.COMPLETE else None, intermediate_values=steps,
            user_attrs={"trial_id": str(row["trial_id"]), "status": str(row["status"])}))
    study.add_trials(made)
    return len(made)
