"""The sweep's options, defined once: the Python API, the CLI and the cluster submitter share them.

Each field of :class:`SweepOptions` carries its help text, its CLI group and its allowed range in
the field's metadata. :func:`add_sweep_arguments` builds the argparse flags from those fields, so
`hpsearch sweep --help`, `hpsearch submit --help`, the range checks at parse time (exit 2, one line
naming the option, the value and the allowed range) and ``SweepOptions(...)`` in Python all read the
same definition.

    opts = SweepOptions(space="demo", mode="optuna-asha", num_samples=12)   # Python
    hpsearch sweep --space demo --mode optuna-asha --num-samples 12         # the same, CLI

This module imports nothing of the service, so every other module may import it.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from search_spaces import MODES
from trainables.config import PRECISIONS
from trainables.corpus.formats import FORMATS as DATA_FORMATS
from trainables.errors import SweepError

DEFAULT_RESULTS = Path("results")
LOGGERS = ("mlflow", "wandb")
"""Experiment trackers a sweep can also log to (--logger), each through Ray's own callback."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

SEARCH, BUDGET, RESOURCES, FAULTS = "what to search", "budget and early stopping", "resources and cluster", \
    "faults and resume"


def _opt(default: Any, help: str, *, group: str | None = SEARCH, low: float | None = None,
         low_open: bool = False, high: float | None = None, choices: tuple | None = None,
         negate: str | None = None, kind: type | None = None) -> Any:
    """A sweep option: its default, its help, where it shows in ``--help`` and what values it allows.

    ``group=None`` keeps a field out of the CLI (test hooks, settings only the API sets).
    ``negate`` names a ``--no-...`` flag for a boolean that defaults to True.
    """
    return field(default=default, metadata={"help": help, "group": group, "low": low, "low_open": low_open,
                                            "high": high, "choices": choices, "negate": negate, "kind": kind})


@dataclass(frozen=True)
class SweepOptions:
    """Everything that defines a sweep and how it runs."""

    # -- what to search
    space: str = _opt("demo", "built-in space (see `hpsearch spaces`) or a YAML space file")
    mode: str = _opt("optuna-asha", "search strategy", choices=MODES)
    name: str | None = _opt(None, "sweep name: results go to RESULTS_DIR/NAME (default: SPACE-MODE-TIME)")
    data: str | None = _opt(None, "corpus: a file or a directory of text, JSONL, Parquet or .bin token shards "
                                  "(.gz/.zst too; default: the embedded corpus)")
    data_pattern: str = _opt("**/*.txt", "glob of the files read from a --data directory")
    data_format: str | None = _opt(None, "how --data is read (default auto: by magic bytes and extension)",
                                   choices=DATA_FORMATS)
    text_field: str | None = _opt(None, "JSONL key / Parquet column holding the text (default: text)")
    tokenizer: str | None = _opt(None, "tokenize --data with gpt2 (the default) or your Hugging Face tokenizer.json "
                                       "(model.vocab_size then defaults to its size)")
    token_dtype: str | None = _opt(None, "width of the ids in raw .bin shards (default uint16; llm.c shards say their own)",
                                   choices=("uint16", "uint32"))
    sample_tokens: int | None = _opt(None, "tokenize a seeded sample of about N tokens of --data instead of all "
                                           "of it (a large corpus searched on a slice)", low=1, kind=int)
    sample_seed: int | None = _opt(None, "which sample --sample-tokens takes (default 0)", low=0, kind=int)
    model: str = _opt("tiny", "model preset of every trial: nano, tiny, small, gpt2-124m, ... "
                              "(ignored when --config gives one)")
    config: str | None = _opt(None, "a pretraining config YAML every trial starts from (space values override it)")
    seed: int = _opt(0, "seed of the search algorithm", low=0, high=2**32 - 1, kind=int)
    warm_start: str | None = _opt(None, "optuna-asha/quasi-random/random: first tell the sampler sweep NAME's "
                                        "completed trials that lie inside this space (same model, data and "
                                        "budget), so a widened space trains only its new points")
    # -- budget and early stopping
    num_samples: int | None = _opt(None, "trials to sample (default 12; grid: repeats of each point, default 1; "
                                         "at most 1,000,000)", group=BUDGET, low=1, high=1_000_000, kind=int)
    max_tokens_per_trial: int | None = _opt(None, "token budget of each trial (caps num_epochs; the LR schedule "
                                                  "is fitted to it)", group=BUDGET, low=1, kind=int)
    grace_tokens: int | None = _opt(None, "ASHA: tokens every trial trains before it may be stopped "
                                          "(default half the trial, and never before the space's longest "
                                          "warmup ends)", group=BUDGET, low=1, kind=int)
    reduction_factor: float = _opt(3.0, "ASHA: keep the best 1/rf of the trials at each rung",
                                   group=BUDGET, low=1.0, low_open=True, kind=float)
    budget_tokens: int | None = _opt(None, "the sweep's budget: no new trial starts once its trials have trained "
                                           "this many tokens in all (e.g. 5e6); the summary prints the tokens "
                                           "used against it", group=BUDGET, low=1, kind=int)
    eval_freq: int | None = _opt(None, "evaluate every N optimizer steps (default 10)", group=BUDGET, low=1, kind=int)
    eval_iter: int | None = _opt(None, "batches averaged per evaluation (default 3)", group=BUDGET, low=1, kind=int)
    precision: str | None = _opt(None, "trial arithmetic: fp32, bf16-mixed, or auto (bf16 where the device "
                                       "computes it fast; the default)", group=BUDGET, choices=PRECISIONS)
    compile: bool = _opt(False, "torch.compile every trial's model (pays off on long trials and GPUs)",
                         group=BUDGET)
    # -- resources and cluster
    cpus_per_trial: float = _opt(1.0, "CPUs reserved per trial (torch uses that many threads)", group=RESOURCES,
                                 low=0.0, low_open=True, kind=float)
    gpus_per_trial: float = _opt(0.0, "GPUs per trial: a fraction below 1 shares a GPU; 2 or more trains "
                                      "data-parallel", group=RESOURCES, low=0.0, kind=float)
    max_concurrent: int | None = _opt(None, "most trials at once (default: as resources allow)",
                                      group=RESOURCES, low=1, kind=int)
    reuse_actors: bool = _opt(True, "a fresh worker process per trial (default: reuse one; a reused worker keeps "
                                    "its node and GPU, so trials may not spread)", group=RESOURCES,
                              negate="--no-reuse-actors")
    address: str | None = _opt(None, "an existing Ray cluster ('auto' or HOST:6379); default: a local Ray on "
                                     "127.0.0.1", group=RESOURCES)
    storage: str | None = _opt(None, "where Tune keeps trial checkpoints and state: a directory every node "
                                     "reaches or an fsspec URI (default: RESULTS_DIR/NAME/tune)", group=RESOURCES)
    logger: str | None = _opt(None, "also log every trial to mlflow and/or wandb (comma-separated), through Ray's "
                                    "callbacks: mlflow to $MLFLOW_TRACKING_URI or RESULTS_DIR/NAME/mlflow.db, wandb to "
                                    "project $WANDB_PROJECT or hpsearch (offline unless $WANDB_MODE=online); "
                                    "TensorBoard files are always written", group=RESOURCES)
    dashboard: bool = _opt(True, "do not start the Ray dashboard", group=RESOURCES, negate="--no-dashboard")
    dashboard_host: str = _opt("127.0.0.1", "Ray dashboard bind address", group=RESOURCES)
    # -- faults and resume
    max_failures: int = _opt(1, "retries of a crashed trial, from its last checkpoint", group=FAULTS, low=0, kind=int)
    checkpoint_every: int = _opt(0, "also checkpoint a trial every N evaluations (default 0: at its end and "
                                    "every --checkpoint-minutes only)", group=FAULTS, low=0, kind=int)
    checkpoint_minutes: float | None = _opt(None, "also checkpoint a trial when this many minutes passed since "
                                                  "its last checkpoint (default 5; 0: off)", group=FAULTS,
                                            low=0, kind=float)
    keep_checkpoints: int = _opt(3, "once the sweep finishes, only the best N finished trials keep their "
                                    "checkpoints (unfinished trials always keep theirs)", group=FAULTS, low=0, kind=int)
    resume: bool = _opt(False, "continue the interrupted sweep --name", group=FAULTS)
    smoke_test: bool = _opt(False, "the real loop on the nano model and a tiny budget, in seconds", group=FAULTS)
    results_dir: str = _opt(str(DEFAULT_RESULTS), "where sweeps are written", group=FAULTS)
    # -- API only
    verbose: int = _opt(1, "0: only the final summary (-q); 1: a line per trial start, end and error (default); "
                           "2-3: Ray Tune's own tables (-v)", group=None, low=0, high=3, kind=int)
    fault_at_step: int = _opt(0, "tests only: crash each trial once at this step", group=None, low=0, kind=int)

    def __post_init__(self):
        problems = [p for f in fields(self) if (p := range_problem(f, getattr(self, f.name)))]
        if self.name is not None and (not NAME_RE.match(self.name) or ".." in self.name):
            problems.append(name_problem(self.name))
        if isinstance(self.gpus_per_trial, (int, float)) and self.gpus_per_trial > 1 \
                and self.gpus_per_trial != int(self.gpus_per_trial):
            problems.append(f"--gpus-per-trial {self.gpus_per_trial:g}: above 1 a trial trains data-parallel with "
                            "one worker per GPU, so it must be a whole number; use a fraction below 1, 1, or 2, 3, ...")
        if self.logger is not None:
            unknown = [x for x in str(self.logger).split(",") if x.strip() not in LOGGERS]
            if unknown or not str(self.logger).strip():
                problems.append(f"--logger {str(self.logger)[:60]!r}: choose from {', '.join(LOGGERS)}, "
                                "comma-separated (TensorBoard files are always written)")
        if problems:
            raise SweepError("; ".join(problems))

    @property
    def loggers(self) -> list[str]:
        return [x.strip() for x in (self.logger or "").split(",") if x.strip()]

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, **overrides) -> SweepOptions:
        """The options an argparse namespace holds (flags left out keep their defaults)."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in vars(args).items() if k in names and v is not None}
        return cls(**{**given, **overrides})

    @classmethod
    def from_record(cls, saved: dict[str, Any], **overrides) -> SweepOptions:
        """Options from a sweep.json record (keys this version does not know are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in names}, **overrides})


def num(value: float) -> str:
    """A number for a message: integers in full (4294967295, not 4.29497e+09), others compact."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def name_problem(name: str) -> str:
    return (f"sweep name {name[:100]!r} is not allowed: use 1-100 letters, digits, '.', '_' and '-' "
            "(no path separators or '..'), e.g. --name lr-sweep-1")


def range_problem(f, value: Any) -> str | None:
    """'--flag VALUE: must be ...' when ``value`` breaks field ``f``'s range or choices, else None."""
    m = f.metadata
    if value is None:
        return None
    if m["choices"] and value not in m["choices"]:
        return f"{flag(f.name)} {str(value)[:100]!r}: choose one of {', '.join(m['choices'])}"
    kind = m["kind"]
    if kind is None:
        return None
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value))
    if not ok_type or not math.isfinite(value):
        return f"{flag(f.name)} {str(value)[:100]!r}: must be {'an integer' if kind is int else 'a finite number'}"
    if _outside(value, m["low"], m["high"], m["low_open"]):
        return f"{flag(f.name)} {num(value)}: must be {describe_range(f)}"
    return None


def describe_range(f) -> str:
    m = f.metadata
    return _range_words(m["low"], m["high"], m["low_open"])


def _parser_type(f):
    """An argparse ``type=`` that parses the value and checks the field's range at parse time.
    Token counts (fields named ``*_tokens*``) also take 2e5, 800k, 10B."""
    m = f.metadata
    if "tokens" in f.name and m["kind"] is int:
        return parse_count
    return number(m["kind"], low=m["low"], high=m["high"], low_open=m["low_open"])


def add_sweep_arguments(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """Add one flag per CLI field of :class:`SweepOptions`, grouped as in ``--help``, defaults shown.

    ``exclude`` leaves fields out (a study command that sets them itself, e.g. mode).
    Every flag defaults to None (or leaves a boolean unset), so an omitted flag keeps the dataclass
    default and a forwarded command line (cluster submit) carries only what the user typed.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(SweepOptions):
        m = f.metadata
        if m["group"] is None or f.name in exclude:
            continue
        g = groups.get(m["group"]) or groups.setdefault(m["group"], parser.add_argument_group(m["group"]))
        default = f.default if f.default is not MISSING else None
        shown = "" if default in (None, False, True) else f" (default: {default})"
        if m["negate"]:
            g.add_argument(m["negate"], dest=f.name, action="store_false", default=None, help=m["help"])
        elif f.type in ("bool", bool):
            g.add_argument(flag(f.name), dest=f.name, action="store_true", default=None, help=m["help"])
        else:
            kw: dict[str, Any] = {"dest": f.name, "default": None, "help": m["help"] + shown}
            if m["choices"]:
                kw["choices"] = m["choices"]
            if m["kind"] is not None:
                kw["type"] = _parser_type(f)
                kw["metavar"] = "N" if m["kind"] is int else "X"
            g.add_argument(flag(f.name), **kw)
    if "verbose" not in exclude:
        g = parser.add_argument_group("output")
        g.add_argument("-v", "--verbose", dest="verbose", action="store_const", const=2, default=None,
                       help="Ray Tune's trial tables instead of one line per trial event")
        g.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=0,
                       help="print only the final summary")


def number(kind: type, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False):
    """argparse type for a numeric flag outside :class:`SweepOptions`: parsed and range-checked at parse time.

    ``number(int, low=1)`` refuses ``0`` with "must be >= 1, got 0" (argparse adds the flag's name).
    """
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text[:100]!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text[:100]}")
        if _outside(value, low, high, low_open, high_open):
            raise argparse.ArgumentTypeError(f"must be {_range_words(low, high, low_open, high_open)}, "
                                             f"got {num(value)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _outside(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool = False) -> bool:
    return not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) \
        or (high is not None and (value > high or (high_open and value == high)))


def _range_words(low: float | None, high: float | None, low_open: bool, high_open: bool = False) -> str:
    lower = f"{'>' if low_open else '>='} {num(low)}" if low is not None else ""
    upper = f"{'<' if high_open else '<='} {num(high)}" if high is not None else ""
    if lower and upper:
        return f"between {num(low)} and {num(high)}" if not (low_open or high_open) else f"{lower} and {upper}"
    return lower or upper or "a finite number"


def smoke_options(opts: SweepOptions) -> SweepOptions:
    """--smoke-test: the real loop on the smallest model and budget, in well under a minute."""
    return replace(opts, space="smoke" if opts.space == "demo" else opts.space,
                   mode="grid" if opts.space == "demo" else opts.mode, model="nano",
                   max_tokens_per_trial=opts.max_tokens_per_trial or 2048,
                   num_samples=opts.num_samples or (1 if opts.mode == "grid" or opts.space == "demo" else 4),
                   eval_freq=opts.eval_freq or 4, eval_iter=opts.eval_iter or 1)


def smoke_overrides(opts: SweepOptions) -> list[str]:
    """What --smoke-test changes, as 'flag: before -> after' (printed, so no explicit value is replaced silently)."""
    smoke = smoke_options(opts)
    return [f"{flag(f.name)} {_shown(getattr(opts, f.name))} -> {_shown(getattr(smoke, f.name))}"
            for f in fields(SweepOptions) if getattr(opts, f.name) != getattr(smoke, f.name)]


def _shown(value: Any) -> str:
    return "(default)" if value is None else str(value)


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or ".." in name:
        raise SweepError(name_problem(name))
    return name


def sweep_name(opts: SweepOptions) -> str:
    """The sweep's name: ``--name``, else SPACE-MODE-TIME (after --smoke-test's substitutions)."""
    if opts.smoke_test:
        opts = smoke_options(opts)
    if opts.name:
        return validate_name(opts.name)
    if opts.resume:  # a made-up name would name no sweep
        raise SweepError("--resume needs --name NAME, the sweep to continue (see the directories under --results-dir)")
    is_path = opts.space.endswith((".yaml", ".yml")) or "/" in opts.space  # /dev/zero: the file is judged later
    stem = Path(opts.space).stem if is_path else opts.space
    return validate_name(f"{stem}-{opts.mode}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def sweep_dir_of(name: str, results_dir: str | Path = DEFAULT_RESULTS) -> Path:
    return (Path(results_dir) / validate_name(name)).resolve()


_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str) -> int:
    """'10B', '2.5M', '3e9', '200000' -> an int; argparse type for token counts."""
    t = str(text).strip().lower().replace("_", "").replace(",", "")
    try:
        value = float(t[:-1]) * _SUFFIX[t[-1]] if t and t[-1] in _SUFFIX else float(t)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text[:50]!r} is not a positive token count (e.g. 2e5, 800k, 10B)")
    return int(value)


def parse_list(kind, *, low: float | None = None, high: float | None = None, low_open: bool = False):
    """argparse type for comma-separated lists: '1e-3,3e-3' -> [0.001, 0.003]; numbers range-checked."""
    def parse(text: str) -> list:
        try:
            items = [kind(part) for part in text.split(",") if part.strip()]
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"{text[:100]!r} is not a comma-separated list of "
                                             f"{'integers' if kind is int else 'numbers' if kind is float else 'values'}") from None
        if not items:
            raise argparse.ArgumentTypeError("the list is empty")
        if kind in (int, float):
            bad = [v for v in items if _outside(v, low, high, low_open)]
            if bad:
                raise argparse.ArgumentTypeError(f"every value must be {_range_words(low, high, low_open)}, "
                                                 f"got {num(bad[0])}")
        return items

    parse.__name__ = "list"
    return parse
