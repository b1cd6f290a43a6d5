"""What a sweep will do, decided before Ray starts or anything is written: the options, the space, the
base config every trial starts from, the corpus, ASHA's arguments, the trackers' packages."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from hpsearch.lock import held_by, in_use
from hpsearch.options import SweepOptions, flag, smoke_options, smoke_overrides, sweep_dir_of, sweep_name
from hpsearch.record import read_record, resumable_sweeps, tune_started
from search_spaces import Space, get_space, parse_space
from trainables.budget import max_trial_tokens, plan_run
from trainables.config import EvalArgs, PretrainConfig, load_config
from trainables.corpus import load_data
from trainables.errors import SweepError
from trainables.model_config import preset_config


RESUMABLE_OPTIONS = frozenset({"address", "max_concurrent", "dashboard", "dashboard_host", "verbose",
                               "results_dir", "storage"})
"""What ``--resume`` may change: how a sweep runs, never what it searches (that comes from sweep.json)."""


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, decided before Ray starts or anything is written."""

    opts: SweepOptions
    name: str
    sweep_dir: Path
    tune_dir: str
    space: Space
    base: PretrainConfig
    tokens: np.ndarray
    corpus_source: str
    corpus_key: str
    max_t: int
    num_samples: int
    rerun: bool = False
    """The name's earlier sweep never started a trial: its leftovers are replaced."""
    warm: list = field(default_factory=list)
    """--warm-start: (values, loss) of the earlier sweep's completed trials inside this space."""

    @property
    def axes(self) -> list[str]:
        return list(self.space.axes)


def base_config(opts: SweepOptions, space: Space) -> PretrainConfig:
    """The config every trial starts from: --config or the model preset, the corpus, the space's fixed values."""
    if opts.config:
        cfg = load_config(opts.config)
    else:
        model = preset_config(opts.model)
        cfg = PretrainConfig(model=model, preset=opts.model, eval=EvalArgs(eval_freq=10, eval_iter=3))
    data = opts.data if opts.data is not None else cfg.data.path
    reading = {k: v for k, v in (("format", opts.data_format), ("text_field", opts.text_field),
                                 ("token_dtype", opts.token_dtype),
                                 ("sample_tokens", opts.sample_tokens), ("sample_seed", opts.sample_seed))
               if v is not None}
    cfg = replace(cfg, data=replace(cfg.data, path=str(Path(data).expanduser().resolve()) if data else None,
                                    pattern=opts.data_pattern if opts.data else cfg.data.pattern, **reading))
    tokenizer = opts.tokenizer or cfg.data.tokenizer
    if tokenizer != "gpt2":  # absolute, as trials and exports need it; model.vocab_size follows it unless set
        tokenizer = str(Path(tokenizer).expanduser().resolve())
    if tokenizer != cfg.data.tokenizer:
        cfg = cfg.with_overrides({"data.tokenizer": tokenizer}, source="--tokenizer")
    engine = {k: v for k, v in (("precision", opts.precision), ("compile", opts.compile or None)) if v is not None}
    if engine:
        cfg = replace(cfg, train=replace(cfg.train, **engine))
    if opts.checkpoint_minutes is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, checkpoint_minutes=opts.checkpoint_minutes))
    overrides = dict(space.fixed)
    if opts.max_tokens_per_trial is not None:
        overrides["max_tokens"] = opts.max_tokens_per_trial
    cfg = cfg.with_hparams(overrides, source=f"space '{space.name}' fixed values")
    ev = {k: v for k, v in (("eval_freq", opts.eval_freq), ("eval_iter", opts.eval_iter)) if v is not None}
    batch = space.axes.get("batch_size")
    if batch is not None and cfg.eval.eval_batch_size is None:  # score every trial on the same windows
        ev["eval_batch_size"] = int(max(batch.values) if hasattr(batch, "values") else batch.high)
    return replace(cfg, eval=replace(cfg.eval, **ev)) if ev else cfg


def plan_sweep(opts: SweepOptions, *, space: Space | None = None, log=print) -> SweepPlan:
    """Validate everything that can be checked without Ray; for ``--resume`` the definition comes from sweep.json.

    ``space`` runs a space built in code (the transfer and scaling studies) instead of ``opts.space``.
    """
    if opts.resume and not opts.name:
        raise SweepError(resumable_sweeps(opts.results_dir))
    given = opts  # as the caller gave them: --resume refuses what differs from the record
    if opts.smoke_test:
        changes = smoke_overrides(opts)
        if changes:
            log(f"--smoke-test overrides: {'; '.join(changes)}")
        opts = smoke_options(opts)
    name = sweep_name(opts)
    sweep_dir = sweep_dir_of(name, opts.results_dir)
    holder = held_by(sweep_dir)
    if holder is not None:  # refused before the corpus is read; run_sweep's claim is the atomic check
        raise SweepError(in_use(name, sweep_dir, holder, resume=opts.resume))
    rerun = False
    if opts.resume:
        record = sweep_dir / "sweep.json"
        if not record.is_file():
            raise SweepError(f"--resume: no sweep named '{name}' in {sweep_dir.parent} "
                             "(nothing to resume); start it without --resume")
        meta = read_record(record)
        check_unchanged(given, meta, name)
        opts = SweepOptions.from_record(meta["options"], **{k: getattr(opts, k) for k in RESUMABLE_OPTIONS},
                                        resume=True, name=name)
        space = parse_space(meta["space"], source=str(record))
        if not tune_started(sweep_dir, tune_dir_of(opts, name, sweep_dir)):
            log(f"sweep '{name}' never started a trial; starting it from its record")
            opts, rerun = replace(opts, resume=False), True
    else:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            if tune_started(sweep_dir, tune_dir_of(opts, name, sweep_dir)):
                raise SweepError(already_exists(name, sweep_dir))
            log(f"sweep '{name}' never started a trial; starting it again")
            rerun = True
        if space is None:
            space = get_space(opts.space)
        else:  # the record names it; its axes and fixed values are in sweep.json
            opts = replace(opts, space=space.name)
    base = base_config(opts, space)  # reads --config: every file the user gave is checked before Ray is imported
    space.to_tune(opts.mode)  # a grid mode on a continuous space fails here, before anything runs
    corpus = load_data(base.data, vocab_size=base.model.vocab_size, log=log)
    tokens = np.ascontiguousarray(corpus.tokens)
    # the corpus must hold a window in each split; per-trial misfits (a batch larger than the data,
    # warmup longer than the run) are the trial's own 'skipped-invalid'
    plan_run(base.with_hparams({"batch_size": 1, "warmup_steps": 0}), len(tokens), source=corpus.source)
    max_t = max_trial_tokens(base, space, len(tokens))
    check_search(opts, max_t)
    check_trackers(opts)
    if "batch_size" in space.axes:
        log(f"batch_size is searched: every trial is scored on {base.eval.eval_iter} batches of "
            f"{base.eval.eval_batch_size} validation windows (eval.eval_batch_size), whatever its own batch size")
    warm = []
    if opts.warm_start and not opts.resume:
        from hpsearch.searchers import OPTUNA_MODES
        from hpsearch.warmstart import warm_points

        if opts.mode not in OPTUNA_MODES:
            raise SweepError(f"--warm-start seeds an Optuna sampler, which --mode {opts.mode} does not use; "
                             f"use --mode {' or '.join(OPTUNA_MODES)}")
        warm = warm_points(sweep_dir_of(opts.warm_start, opts.results_dir), base, space)
        log(f"warm start: {len(warm)} completed trial(s) of sweep {opts.warm_start} lie inside this space and "
            "are told to the sampler first; they are not trained again")
    return SweepPlan(opts=opts, name=name, sweep_dir=sweep_dir, tune_dir=tune_dir_of(opts, name, sweep_dir),
                     space=space, base=base, tokens=tokens, corpus_source=corpus.source, corpus_key=corpus.key,
                     max_t=max_t, num_samples=opts.num_samples or (1 if opts.mode == "grid" else 12), rerun=rerun,
                     warm=warm)


def already_exists(name: str, sweep_dir: Path) -> str:
    return f"sweep '{name}' already exists in {sweep_dir}; pass --resume to continue it, or choose another --name"


PATH_OPTIONS = ("space", "data", "config")


def check_unchanged(given: SweepOptions, meta: dict, name: str) -> None:
    """--resume continues the sweep as recorded: an option given now with another value than the record's
    is refused (naming each), never silently ignored. Options left at their defaults are not compared."""
    saved = meta["options"]
    changed = []
    for f in fields(SweepOptions):
        if f.name in RESUMABLE_OPTIONS or f.name in ("resume", "name") or f.name not in saved:
            continue
        new, old = getattr(given, f.name), saved[f.name]
        if new == f.default or new == old:
            continue
        if f.name in PATH_OPTIONS and old is not None and _same_path(new, old):
            continue
        if f.name == "space" and new == meta.get("space", {}).get("name"):
            continue
        changed.append(f"{flag(f.name)} {_shown(old)} (recorded) vs {_shown(new)} (given)")
    if changed:
        raise SweepError(f"--resume continues sweep '{name}' as it was recorded, but this command changes "
                         f"{'; '.join(changed)}; drop {'these options' if len(changed) > 1 else 'this option'} to "
                         "resume, or start a new sweep under another --name")


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def _shown(value) -> str:
    text = "(default)" if value is None else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def check_search(opts: SweepOptions, max_t: int) -> None:
    """The scheduler's and searcher's arguments, checked before anything is written (Ray only asserts)."""
    asha = {"grace_tokens": None, "reduction_factor": SweepOptions.__dataclass_fields__["reduction_factor"].default}
    if opts.mode != "optuna-asha":
        given = [flag(k) for k, default in asha.items() if getattr(opts, k) != default]
        if given:
            raise SweepError(f"{' and '.join(given)} set ASHA early stopping, which only --mode optuna-asha uses "
                             f"(this sweep is --mode {opts.mode}); drop {'them' if len(given) > 1 else 'it'} or use "
                             "--mode optuna-asha")
    elif opts.grace_tokens is not None and opts.grace_tokens > max_t:
        raise SweepError(f"--grace-tokens {opts.grace_tokens:,} exceeds the per-trial budget of {max_t:,} tokens "
                         f"(ASHA's max_t); use --grace-tokens <= {max_t:,} or raise --max-tokens-per-trial")


def tune_dir_of(opts: SweepOptions, name: str, sweep_dir: Path) -> str:
    return f"{opts.storage.rstrip('/')}/{name}" if opts.storage else str(sweep_dir / "tune")


TRACKER_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def check_trackers(opts: SweepOptions) -> None:
    """Each --logger's package is installed (checked before anything is written)."""
    import importlib.util

    for name in opts.loggers:
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise SweepError(f"--logger {name} needs the {name} package: pip install -e '.[trackers]' "
                             f"(or pip install {'mlflow-skinny' if name == 'mlflow' else name})")


def planned_trials(plan: SweepPlan) -> int:
    """Trials the sweep will run at most: every grid point num_samples times, or num_samples samples."""
    size = plan.space.grid_size() if plan.opts.mode == "grid" else None
    return size * plan.num_samples if size else plan.num_samples


def whole_trials(plan: SweepPlan) -> float:
    """Whole trials the sweep can pay for: planned_trials, or --budget-tokens / tokens per trial where that
    is fewer (ASHA's early stops give tokens back, so a budgeted sweep may run more trials than this)."""
    n = planned_trials(plan)
    return float(min(n, plan.opts.budget_tokens / plan.max_t) if plan.opts.budget_tokens else n)
