"""The `hpsearch` command line. Each subcommand is a thin layer over a library function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainables.errors import HPSearchError


def cmd_pretrain(args: argparse.Namespace) -> int:
    from trainables.config import PretrainConfig, load_config
    from trainables.pretrain import pretrain

    config = load_config(args.config) if args.config else PretrainConfig()
    if args.max_tokens is not None:
        config = config.with_hparams({"max_tokens": args.max_tokens}, source="--max-tokens")
    out = Path(args.out) if args.out else Path("results") / "pretrain" / (Path(args.config).stem if args.config else "default")
    summary = pretrain(config, out_dir=out, resume=args.resume)
    first = summary.evals[0]["val_loss"] if summary.evals else float("nan")
    print(f"{summary.status}: {summary.steps} steps, {summary.tokens_seen:,} tokens, "
          f"val loss {first:.4f} -> {summary.final_val_loss:.4f} (best {summary.best_val_loss:.4f}), "
          f"{summary.tokens_per_second:,.0f} tokens/s")
    return 0 if summary.status == "completed" else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description="Hyperparameter search for GPT-style LLM pretraining on Ray Tune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pretrain", help="run one pretraining run from a YAML config",
                       description="Run one pretraining run from a YAML config (the format `hpsearch export` writes).")
    p.add_argument("--config", help="pretraining config YAML (default: the tiny preset on the embedded corpus)")
    p.add_argument("--out", help="output directory for checkpoints and metrics (default results/pretrain/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--max-tokens", type=int, help="override train.max_tokens (a token budget)")
    p.set_defaults(func=cmd_pretrain)

    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no calls home unless the user opts in
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv or ["sweep"])  # no arguments: the demo sweep
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except HPSearchError as exc:
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hpsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
