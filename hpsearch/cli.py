"""The `hpsearch` command line. Each subcommand is a thin layer over a library function."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from hpsearch import __version__
from hpsearch.cluster import register_cluster_commands
from hpsearch.options import (DEFAULT_RESULTS, SweepOptions, add_sweep_arguments, number, parse_count, parse_list,
                              sweep_dir_of)
from trainables.errors import HPSearchError, SweepError, shell_command
from trainables.status import COMPLETED, ERRORED

MAX_ERROR_CHARS = 2000
"""The longest error line printed: a message never carries an unbounded user value, and this makes sure."""
INTERRUPTED_EXIT = 130
NO_WINNER_EXIT = 1
"""A sweep that ran, but no trial completed or was stopped early with a finite loss."""
ERRORED_EXIT = 3
"""A sweep that finished with a winner, but some trials errored (crashed past --max-failures): the
winner is written, and the status says that not every point was measured."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the option, the value, the allowed range, and where help is (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(message: object) -> str:
    """A message as one bounded line (the CLI's last guard for what reaches the terminal)."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + f"... ({len(text):,} characters)"


def cmd_pretrain(args: argparse.Namespace) -> int:
    from trainables.config import PretrainConfig, load_config, parse_scalar

    config = load_config(args.config) if args.config else PretrainConfig()
    if args.max_tokens is not None:
        config = config.with_hparams({"max_tokens": args.max_tokens}, source="--max-tokens")
    if args.overrides:
        config = config.with_overrides({k: parse_scalar(v) for k, v in args.overrides.items()},
                                       source="command-line overrides")
    from trainables.pretrain import pretrain  # PyTorch: only once the config is known to be valid

    out = Path(args.out) if args.out else Path("results") / "pretrain" / (Path(args.config).stem if args.config else "default")
    summary = pretrain(config, out_dir=out, resume=args.resume)
    first = summary.evals[0]["val_loss"] if summary.evals else float("nan")
    print(f"{summary.status}: {summary.steps} steps, {summary.tokens_seen:,} tokens, "
          f"val loss {first:.4f} -> {summary.final_val_loss:.4f} (best {summary.best_val_loss:.4f}), "
          f"{summary.tokens_per_second:,.0f} tokens/s")
    return 0 if summary.status == COMPLETED else 3


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpsearch.sweep import run_sweep

    outcome = run_sweep(SweepOptions.from_namespace(args))
    if outcome.interrupted:
        print(f"hpsearch: interrupted: {outcome.interrupted} trial(s) did not finish (results so far in "
              f"{outcome.sweep_dir}); finish with `"
              + shell_command("hpsearch", "sweep", "--name", outcome.name, "--results-dir", outcome.sweep_dir.parent,
                              "--resume") + "`", file=sys.stderr)
        return INTERRUPTED_EXIT
    if outcome.best is None:
        return NO_WINNER_EXIT
    return ERRORED_EXIT if (outcome.trials["status"] == ERRORED).any() else 0


STUDY_EXCLUDES = ("space", "mode", "num_samples")
"""Sweep options a study sets itself: it builds its own grid space."""


def cmd_transfer(args: argparse.Namespace) -> int:
    from hpsearch.transfer import run_transfer

    opts = SweepOptions.from_namespace(args, mode="grid")
    run_transfer(opts, widths=args.widths, lrs=args.lrs, parametrizations=args.parametrizations,
                 base_width=args.base_width, depths=args.depths, depth_rules=args.depth_rules,
                 base_depth=args.base_depth, seeds=args.seeds)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from hpsearch.scale import run_scale

    opts = SweepOptions.from_namespace(args, mode="grid")
    run_scale(opts, budgets=args.budgets, lrs=args.lrs, batch_sizes=args.batch_sizes, seeds=args.seeds,
              warmup_fraction=args.warmup_fraction, verify=args.verify, schedule=args.schedule,
              optimum=args.optimum)
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from search_spaces import builtin_spaces, get_space

    spaces = [get_space(args.file)] if args.file else builtin_spaces()
    width = max(len(s.name) for s in spaces)
    for space in spaces:
        print(space.describe(width=width))
    return 0


def _sweep_dir(args: argparse.Namespace) -> Path:
    return sweep_dir_of(args.name, args.results_dir)


def cmd_results(args: argparse.Namespace) -> int:
    from hpsearch import results as res

    trials, _, meta = res.load(_sweep_dir(args))
    axes = list(meta.get("space", {}).get("axes", {}))
    print(res.leaderboard(trials, axes, top=args.top, sort=args.sort))
    print(res.summary_line(trials))
    for line in meta.get("skipped") or []:
        print(line)
    if "interrupted" in meta:
        print("interrupted: finish it with `"
              + shell_command("hpsearch", "sweep", "--name", args.name, "--results-dir", args.results_dir, "--resume")
              + "`")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hpsearch.export import export

    for path in export(_sweep_dir(args), Path(args.out), trial_id=args.trial, fmt=args.format, force=args.force,
                       target_model=args.target_model, target_width=args.target_width,
                       target_depth=args.target_depth, target_tokens=args.target_tokens):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpsearch.report import write_report

    write_report(_sweep_dir(args), reruns=args.reruns, top_k=args.top)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from hpsearch.catalog import format_table, list_sweeps

    rows = list_sweeps(args.results_dir)
    print(format_table(rows) if rows else f"no sweeps in {args.results_dir}")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    sweep_dir = _sweep_dir(args)
    if not (sweep_dir / "sweep.json").is_file():
        raise SweepError(f"no sweep named '{args.name}' in {sweep_dir.parent}; list them with "
                         f"`{shell_command('hpsearch', 'ls', '--results-dir', args.results_dir)}`")
    logdir = sweep_dir / "tune"
    if args.launch and shutil.which("tensorboard") is None:
        raise SweepError("--launch needs TensorBoard, which is not installed: pip install tensorboard "
                         f"(or run it elsewhere: {shell_command('tensorboard', '--logdir', logdir)})")
    print(shell_command("tensorboard", "--logdir", logdir))
    if args.launch:
        os.execvp("tensorboard", ["tensorboard", "--logdir", str(logdir), "--host", "127.0.0.1"])
    return 0


def register_sweep_commands(sub) -> None:
    p = sub.add_parser("sweep", help="run a hyperparameter sweep (no arguments: the demo)",
                       description="Run a sweep on Ray Tune. With no arguments: the demo, optuna-asha over "
                                   "a small space with the tiny model on the embedded corpus.")
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("spaces", help="list the search spaces")
    p.add_argument("file", nargs="?", help="describe this space file instead")
    p.set_defaults(func=cmd_spaces)

    def named(p):
        p.add_argument("name", help="sweep name (a directory under --results-dir)")
        p.add_argument("--results-dir", default=str(DEFAULT_RESULTS), help="where sweeps are written (default: %(default)s)")

    p = sub.add_parser("ls", help="list the sweeps in a results directory and their state",
                       description="List the sweeps in --results-dir: name, mode, space, trials done of the total, "
                                   "best validation loss and state (running, finished, interrupted or "
                                   "failed-before-start; a sweep whose driver was killed shows as running "
                                   "until `hpsearch sweep --name NAME --resume` finishes it).")
    p.add_argument("--results-dir", default=str(DEFAULT_RESULTS), help="where sweeps are written (default: %(default)s)")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("results", help="leaderboard of a sweep")
    named(p)
    p.add_argument("--top", type=number(int, low=1), default=10, help="rows to show (default 10)")
    p.add_argument("--sort", default="best_val_loss", help="column to sort by (default best_val_loss)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("export", help="export the best (or a chosen) trial as a pretraining config")
    named(p)
    p.add_argument("--out", required=True, help="file to write (YAML)")
    p.add_argument("--trial", help="trial id (default: the best trial)")
    p.add_argument("--format", default="native", choices=("native", "litgpt"), help="config format")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    g = p.add_argument_group("carry the tuned config to the run you will train")
    g.add_argument("--target-model", help="a model preset (e.g. gpt2-124m): its width needs a μP sweep, its "
                                          "depth a sweep with a depth rule (model.depth_rule)")
    g.add_argument("--target-width", type=number(int, low=1),
                   help="the target emb_dim, keeping the proxy's heads (μP sweeps only)")
    g.add_argument("--target-depth", type=number(int, low=1),
                   help="the target n_layers (sweeps with model.depth_rule completep or depth-mup)")
    g.add_argument("--target-tokens", type=parse_count, help="the target's token budget (e.g. 10B): LR, batch, "
                                                             "warmup and steps from the budget-ladder fit "
                                                             "(`hpsearch scale` sweeps only)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("transfer", help="transfer study: an LR grid at several widths and/or depths, with and "
                                        "without the rule that should carry it",
                       description="Run the same LR grid at several widths (SP vs μP) and/or depths (no rule vs "
                                   "CompleteP) as one grid sweep, and write transfer.csv/.json/.png: the best LR "
                                   "per size and its drift in octaves (undetermined where an optimum sits on the "
                                   "grid's edge). Resumable with --name NAME --resume.")
    g = p.add_argument_group("the study")
    g.add_argument("--widths", type=parse_list(int, low=1), help="emb_dim values, e.g. 64,128,256,512")
    g.add_argument("--lrs", type=parse_list(float, low=0, low_open=True),
                   help="peak learning rates, e.g. 1e-3,3e-3,1e-2,3e-2")
    g.add_argument("--parametrizations", type=parse_list(str), default=["sp", "mup"],
                   help="sp, mup or both (default: sp,mup)")
    g.add_argument("--base-width", type=number(int, low=1), help="μP base width (default: the narrowest width)")
    g.add_argument("--depths", type=parse_list(int, low=1), help="n_layers values, e.g. 2,4,8")
    g.add_argument("--depth-rules", type=parse_list(str), default=["none", "completep"],
                   help="none, completep, depth-mup (default: none,completep)")
    g.add_argument("--base-depth", type=number(int, low=1), help="depth rule's base depth (default: the shallowest)")
    g.add_argument("--seeds", type=parse_list(int, low=0), default=[0, 1],
                   help="training seed values, each point trained once per seed (default: 0,1; one value "
                        "trains that seed)")
    add_sweep_arguments(p, exclude=STUDY_EXCLUDES)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("scale", help="budget ladder: fit LR and batch-size laws across token budgets",
                       description="Run an LR x batch-size grid at several token budgets as one grid sweep, "
                                   "fit eta_opt and B_opt against compute with bootstrap CIs, verify on the "
                                   "held-out largest budget, and write scaling.json/.csv/.png. Then "
                                   "`hpsearch export NAME --target-tokens 10B`. Resumable with --resume.")
    g = p.add_argument_group("the ladder")
    g.add_argument("--budgets", type=parse_list(parse_count), help="token budgets per trial, e.g. 2e5,4e5,8e5,1.6e6")
    g.add_argument("--lrs", type=parse_list(float, low=0, low_open=True),
                   help="peak learning rates, e.g. 1e-3,2e-3,4e-3,8e-3,1.6e-2")
    g.add_argument("--batch-sizes", type=parse_list(int, low=1), help="batch sizes in sequences, e.g. 4,8,16")
    g.add_argument("--seeds", type=parse_list(int, low=0), default=[0, 1],
                   help="training seeds per point; 2+ measure the noise that sets the near-optimal tolerance "
                        "(default: 0,1)")
    g.add_argument("--schedule", choices=("cosine", "wsd"), default="cosine",
                   help="cosine: one run per budget; wsd: one warmup-stable-decay run per point to the largest "
                        "budget, scored at the smaller ones by cooldown branches (decay as the --config's "
                        "train.decay_fraction/decay_shape; default: %(default)s)")
    g.add_argument("--warmup-fraction", type=number(float, low=0, high=1, high_open=True), default=0.05,
                   help="warmup as a fraction of each run's steps (wsd: of the smallest budget's steps at the "
                        "largest batch, one warmup for all; default: %(default)s)")
    g.add_argument("--optimum", choices=("near-optimal", "vertex"), default=None,
                   help="how each budget's optimum is read: near-optimal (geometric mean of the trials within the "
                        "seed-noise tolerance of the best, DeepSeek LLM) or vertex (minimum of a quadratic in log LR "
                        "and log batch fitted to every trial, Chinchilla Approach 2); --resume refits a finished "
                        "ladder (default: the resumed ladder's, else vertex)")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip training the held-out budget's predicted optimum")
    add_sweep_arguments(p, exclude=STUDY_EXCLUDES)
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("report", help="plots and checks of a finished sweep (HTML)")
    named(p)
    p.add_argument("--reruns", type=number(int, low=0, high=100), default=0,
                   help="retrain the best and runner-up N times each, with the trial's seed + 1 .. + N "
                        "(a count; a study's --seeds lists seed values)")
    p.add_argument("--top", type=number(int, low=1), default=5, help="trials in the curves plot")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("tensorboard", help="print (or --launch) the TensorBoard command of a sweep")
    named(p)
    p.add_argument("--launch", action="store_true", help="run tensorboard on 127.0.0.1")
    p.set_defaults(func=cmd_tensorboard)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hpsearch",
        description="Hyperparameter search for GPT-style LLM pretraining on Ray Tune.",
    )
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pretrain", help="run one pretraining run from a YAML config",
                       description="Run one pretraining run from a YAML config (the format `hpsearch export` writes).")
    p.add_argument("--config", help="pretraining config YAML (default: the tiny preset on the embedded corpus)")
    p.add_argument("--out", help="output directory for checkpoints and metrics (default results/pretrain/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--max-tokens", type=parse_count, help="override train.max_tokens (a token budget, e.g. 2e5)")
    p.add_argument_group("overrides", "any config key as --SECTION.KEY VALUE (or --SECTION.KEY=VALUE), e.g. "
                         "--train.peak_lr 3e-4 --data.path corpus/ --model.preset small; null, true/false and "
                         "numbers are typed, and each value is checked as in a config file")
    p.set_defaults(func=cmd_pretrain)

    register_sweep_commands(sub)
    register_cluster_commands(sub)
    return parser


def dotted_overrides(extra: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``--section.key VALUE`` / ``--section.key=VALUE`` pairs left over by argparse (pretrain only);
    the keys and values are checked by the config itself."""
    out: dict[str, str] = {}
    rest = list(extra)
    while rest:
        token = rest.pop(0)
        key, eq, value = token[2:].partition("=")
        if not token.startswith("--") or "." not in key:
            parser.error(f"unrecognized argument {token[:100]!r}: overrides look like --train.peak_lr 3e-4")
        if not eq:
            if not rest:
                parser.error(f"{token[:100]} needs a value, e.g. {token[:100]} 3e-4")
            value = rest.pop(0)
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no calls home unless the user opts in
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv or ["sweep"])  # no arguments: the demo sweep
    if getattr(args, "func", None) is cmd_pretrain:
        args.overrides = dotted_overrides(extra, parser)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)[:200]}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except HPSearchError as exc:
        print(f"hpsearch: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a message, when there is one, says how to finish
        print("hpsearch: interrupted" + (f": {one_line(exc)}" if str(exc) else ""), file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
