"""The front door from Python: :func:`sweep` and :func:`load` give the same :class:`Sweep`.

    import hpsearch

    s = hpsearch.sweep("demo", num_samples=8, max_tokens_per_trial=20_000, name="lr-1")
    s.trials                  # one row per trial (DataFrame), as `hpsearch results lr-1` ranks them
    s.best                    # the best trial's row (lowest best-over-training validation loss)
    s.export("best.yaml")     # the winner as a pretraining config
    s = hpsearch.load("lr-1") # later, or in another process: the same columns and rows

Like Ray Tune's ``Tuner.fit()`` / ``Tuner.restore()`` (one ResultGrid) and Optuna's ``create_study`` /
``load_study`` (one Study): a finished sweep reads back as the object that ran it. Everything here is
keyword-only past the first argument and built on the library the CLI calls (``run_sweep(SweepOptions(...))``,
``run_transfer``, ``run_scale``, ``export``, ``write_report``); this module imports none of them, nor pandas,
Ray or PyTorch, until it is called.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import SweepError, did_you_mean

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from hpsearch.scale import ScaleOutcome
    from hpsearch.transfer import TransferOutcome
    from search_spaces import Space
    from trainables.config import PretrainConfig

Log = Callable[[str], None] | None


@dataclass
class Sweep:
    """A sweep's results: what :func:`sweep` returns and :func:`load` reads back from its directory.

    ``trials`` has one row per trial (id, status, the searched hyperparameters, best and final losses,
    tokens, time); ``curves`` every evaluation of every trial; ``record`` the sweep.json written when
    it started (space, mode, base config, corpus, versions, command).
    """

    name: str
    path: Path
    """The sweep's directory (RESULTS_DIR/NAME)."""
    trials: pd.DataFrame
    curves: pd.DataFrame
    record: dict = field(repr=False)
    skips: list[str] = field(default_factory=list, repr=False)
    """Skipped trials counted per reason, each with its fix (filled when the sweep ran in this process)."""

    @classmethod
    def read(cls, path: str | os.PathLike) -> Sweep:
        from hpsearch import results

        trials, curves, record = results.load(Path(path))
        return cls(record.get("name", Path(path).name), Path(path), trials, curves, record,
                   list(record.get("skipped") or []))

    @property
    def axes(self) -> list[str]:
        """The searched hyperparameters: the trials table's columns after ``status``."""
        return list(self.record.get("space", {}).get("axes", {}))

    @property
    def best(self) -> pd.Series | None:
        """The best trial's row: lowest best-over-training validation loss among completed and
        early-stopped trials (None when none finished)."""
        from hpsearch.results import best_trial

        return best_trial(self.trials)

    @property
    def finished(self) -> bool:
        """Whether every trial ran to its end (False: interrupted or still running; :meth:`resume`)."""
        return "finished" in self.record and "interrupted" not in self.record

    def best_config(self, trial_id: str | None = None) -> PretrainConfig:
        """The pretraining config of the best trial (or of ``trial_id``): the sweep's base config with the
        trial's hyperparameters, what ``hpsearch export`` writes and ``hpsearch pretrain`` runs."""
        from hpsearch.export import trial_config
        from trainables.config import PretrainConfig

        base = PretrainConfig.from_dict(self.record["base_config"], source=f"{self.path}/sweep.json")
        return trial_config(base, self._row(trial_id), self.axes)

    def export(self, path: str | os.PathLike, *, format: str = "native", trial_id: str | None = None,
               force: bool = False, target_model: str | None = None, target_width: int | None = None,
               target_depth: int | None = None, target_tokens: int | None = None, log: Log = print) -> list[Path]:
        """Write the best (or ``trial_id``'s) config to ``path`` as ``hpsearch export`` does; the files written.

        ``format``: native (``hpsearch pretrain --config``) or litgpt. ``target_model`` / ``target_width`` /
        ``target_depth`` carry it to another shape (μP sweeps for width, a depth rule for depth),
        ``target_tokens`` to another budget (`hpsearch scale` ladders).
        """
        from hpsearch.export import export

        return export(self.path, Path(path), trial_id=trial_id, fmt=format, force=force, target_model=target_model,
                      target_width=target_width, target_depth=target_depth, target_tokens=target_tokens, log=log)

    def report(self, *, reruns: int = 0, top: int = 5, log: Log = print) -> Path:
        """Write the HTML report (plots, checks; ``reruns`` seeds of the best two) and return its index.html."""
        from hpsearch.report import write_report

        return write_report(self.path, reruns=reruns, top_k=top, log=log)

    def resume(self, *, log: Log = print, **options: Any) -> Sweep:
        """Finish an interrupted sweep: its unfinished trials run again (``options``: how it runs, e.g.
        ``max_concurrent``; what it searches comes from its record)."""
        return sweep(self.record.get("space", {}).get("name", "demo"), name=self.name,
                     results_dir=self.path.parent, resume=True, log=log, **options)

    @functools.cached_property
    def study(self) -> optuna.Study | None:
        """The sweep's Optuna study (trials, values, user attributes), loaded on first use; None for a
        sweep that kept none (grid mode)."""
        import optuna

        from hpsearch.searchers import optuna_storage_url

        if not (self.path / "optuna.db").is_file():
            return None
        return optuna.load_study(study_name=self.name, storage=optuna_storage_url(self.path))

    def _row(self, trial_id: str | None) -> pd.Series:
        if trial_id is None:
            row = self.best
            if row is None:
                raise SweepError(f"sweep {self.name} has no completed or early-stopped trial; pick one with trial_id")
            return row
        match = self.trials[self.trials["trial_id"] == trial_id]
        if match.empty:
            raise SweepError(f"no trial {trial_id!r} in sweep {self.name}; the ids are sweep.trials['trial_id']")
        return match.iloc[0]

    def __str__(self) -> str:
        from hpsearch.results import summary_line

        return f"sweep {self.name} ({self.record.get('mode')}): {summary_line(self.trials)}"


def sweep(space: str | os.PathLike | Space, *, data: str | os.PathLike | None = None, mode: str | None = None,
          num_samples: int | None = None, budget_tokens: int | None = None, max_tokens_per_trial: int | None = None,
          model: str | None = None, config: str | os.PathLike | None = None, name: str | None = None,
          results_dir: str | os.PathLike | None = None, smoke_test: bool = False, resume: bool = False,
          seed: int | None = None, verbose: int | None = None, log: Log = print, **options: Any) -> Sweep:
    """Run a sweep on Ray Tune and return its results; the same as ``hpsearch sweep`` with these options.

    ``space``: a built-in space name (``hpsearch spaces``), a YAML space file or a
    :class:`search_spaces.Space` built in code. ``mode``: optuna-asha (the default), grid, random,
    quasi-random, ... ``budget_tokens`` caps the tokens of all trials together, ``max_tokens_per_trial``
    each trial's. ``options``: any other field of :class:`hpsearch.options.SweepOptions`
    (``cpus_per_trial``, ``max_concurrent``, ``logger``, ...). Arguments left None take the CLI's
    defaults. Raises :class:`hpsearch.SweepError` (an :class:`hpsearch.HPSearchError`) for a request
    that cannot run, before anything is written.
    """
    from hpsearch.options import SweepOptions
    from hpsearch.sweep import run_sweep
    from search_spaces import Space

    known = {f.name for f in fields(SweepOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SweepError(f"hpsearch.sweep() got unknown option(s) {', '.join(map(repr, unknown))}"
                         f"{did_you_mean(unknown[0], known)}; the options are SweepOptions' fields")
    built = space if isinstance(space, Space) else None
    given = {"space": built.name if built else os.fspath(space), "data": data, "mode": mode,
             "num_samples": num_samples, "budget_tokens": budget_tokens, "max_tokens_per_trial": max_tokens_per_trial,
             "model": model, "config": config, "name": name, "results_dir": results_dir, "smoke_test": smoke_test,
             "resume": resume, "seed": seed, "verbose": verbose, **options}
    given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in given.items() if v is not None}
    outcome = run_sweep(SweepOptions(**given), space=built, log=log or (lambda line: None))
    record = json.loads((outcome.sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    return Sweep(outcome.name, outcome.sweep_dir, outcome.trials, outcome.curves, record, list(outcome.skips))


def load(name_or_path: str | os.PathLike, *, results_dir: str | os.PathLike = "results") -> Sweep:
    """A finished (or interrupted) sweep read back from disk: the :class:`Sweep` :func:`sweep` returned.

    ``name_or_path``: a sweep name under ``results_dir``, or the sweep's directory itself.
    """
    from hpsearch.options import sweep_dir_of

    path = Path(name_or_path).expanduser()
    if not (path / "sweep.json").is_file():
        path = sweep_dir_of(os.fspath(name_or_path), results_dir)
    return Sweep.read(path.resolve())


def transfer(*, lrs: Sequence[float], widths: Sequence[int] | None = None,
             parametrizations: Sequence[str] = ("sp", "mup"), base_width: int | None = None,
             depths: Sequence[int] | None = None, depth_rules: Sequence[str] = ("none", "completep"),
             base_depth: int | None = None, seeds: Sequence[int] = (0, 1), model: str | None = None,
             name: str | None = None, results_dir: str | os.PathLike | None = None, resume: bool = False,
             log: Log = print, **options: Any) -> TransferOutcome:
    """The transfer study, as ``hpsearch transfer``: the same LR grid at several widths (SP vs μP) and/or
    depths (no rule vs CompleteP) as one grid sweep; returns the table, each size's best LR and the drift
    in octaves. ``options``: any other SweepOptions field (``data``, ``max_tokens_per_trial``, ...)."""
    from hpsearch.transfer import run_transfer

    opts = _study_options(model=model, name=name, results_dir=results_dir, resume=resume, **options)
    return run_transfer(opts, widths=_list(widths), lrs=list(lrs), parametrizations=list(parametrizations),
                        base_width=base_width, depths=_list(depths), depth_rules=list(depth_rules),
                        base_depth=base_depth, seeds=list(seeds), log=log or (lambda line: None))


def _list(values: Sequence | None) -> list | None:
    return None if values is None else list(values)


def scale(*, budgets: Sequence[int], lrs: Sequence[float], batch_sizes: Sequence[int], seeds: Sequence[int] = (0, 1),
          warmup_fraction: float = 0.05, verify: bool = True, model: str | None = None, name: str | None = None,
          results_dir: str | os.PathLike | None = None, resume: bool = False, log: Log = print,
          **options: Any) -> ScaleOutcome:
    """The budget ladder, as ``hpsearch scale``: an LR x batch-size grid at several token budgets, the
    fitted LR and batch-size laws with bootstrap intervals, and (``verify``) the held-out largest budget's
    check. Then ``hpsearch.load(name).export(path, target_tokens=...)`` carries the best config to a budget."""
    from hpsearch.scale import run_scale

    opts = _study_options(model=model, name=name, results_dir=results_dir, resume=resume, **options)
    return run_scale(opts, budgets=list(budgets), lrs=list(lrs), batch_sizes=list(batch_sizes), seeds=list(seeds),
                     warmup_fraction=warmup_fraction, verify=verify, log=log or (lambda line: None))


def _study_options(**given: Any):
    """SweepOptions of a study (transfer, scale): a grid sweep over the space the study builds."""
    from hpsearch.options import SweepOptions

    known = {f.name for f in fields(SweepOptions)} - {"space", "mode", "num_samples"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise SweepError(f"unknown option(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], known)}; "
                         "a study takes SweepOptions' fields except space, mode and num_samples")
    given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in given.items() if v is not None}
    return SweepOptions(mode="grid", **given)
