"""The bad-input matrix (issue 12): every hostile or mistaken input, run for real through the CLI.

Each case runs `hpsearch ...` in a fresh scratch directory (paths in the table are relative to it)
and records the last line it printed on stderr, its exit status, the driver's peak memory (RSS), its
wall time, and what was kept: the scratch directory is compared before and after, so "inputs intact,
nothing written" is measured, not claimed. The table goes to bench/BAD_INPUT.md; rerun this script
after changing an error path so the table stays true.

    python bench/bad_input_matrix.py            # every case, the runtime ones (a real Ray) included
    python bench/bad_input_matrix.py --quick    # only the cases that fail before Ray starts
    python bench/bad_input_matrix.py --only disk   # try some cases (prints, writes no table)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "BAD_INPUT.md"
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
       "HPSEARCH_CACHE_DIR": "/tmp/bench_cache"}
NANO = {"model": {"preset": "nano"}, "train": {"batch_size": 4, "max_tokens": 1536, "peak_lr": 5e-3,
                                               "initial_lr": 1e-5, "min_lr": 1e-5, "warmup_steps": 2},
        "eval": {"eval_freq": 4, "eval_iter": 2}}
QUICK_SWEEP = ["--model", "nano", "--max-tokens-per-trial", "512", "--eval-freq", "2", "--eval-iter", "1",
               "--no-dashboard", "--results-dir", "results"]


def bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\naxes: *l{levels - 1}\nmodel: *l{levels - 1}\n"


def files(**named: str | bytes):
    """A setup that writes the given files (name -> text) into the scratch directory."""
    def setup(d: Path) -> None:
        for name, body in named.items():
            p = d / name.replace("__", "/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return setup


def config(**train) -> str:
    cfg = json.loads(json.dumps(NANO))
    cfg["train"].update(train)
    return yaml.safe_dump(cfg)


def space(axes: dict, **fixed) -> str:
    return yaml.safe_dump({"name": "s", "axes": axes, "fixed": {"initial_lr": 1e-5, "min_lr": 1e-5, **fixed}})


def fake_sweeps(d: Path) -> None:
    for name, extra in (("lr-done", {"finished": "2026-01-01"}), ("lr-cut", {"interrupted": "2026-01-02"})):
        (d / "results" / name).mkdir(parents=True)
        (d / "results" / name / "sweep.json").write_text(json.dumps({"name": name, **extra}))


def full_disk(room: int = 0):
    """A 1 MiB tmpfs at ./full with ``room`` bytes left (needs root or CAP_SYS_ADMIN; else not run)."""
    def setup(d: Path) -> None:
        (d / "full").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d / "full")], check=True,
                       capture_output=True)
        ballast = d / "full" / "ballast"
        with open(ballast, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(ballast, max(0, ballast.stat().st_size - room))
    return setup


def unmount(d: Path) -> None:
    subprocess.run(["umount", str(d / "full")], check=False, capture_output=True)


def finished_sweep(d: Path) -> None:
    """results/s: a finished one-trial sweep (its tables and record), enough to export from."""
    sys.path.insert(0, str(REPO))
    import pandas as pd

    from hpsearch import results as res

    sweep = d / "results" / "s"
    sweep.mkdir(parents=True)
    res.save(sweep, pd.DataFrame([{"trial_id": "t0", "status": "completed", "peak_lr": 1e-3, "best_val_loss": 5.0,
                                   "best_val_tokens": 512, "tokens_seen": 512, "wall_time_s": 1.0}]),
             pd.DataFrame(columns=res.CURVE_COLUMNS))
    base = {"model": {"preset": "nano"}, "train": NANO["train"], "eval": NANO["eval"]}
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "space": {"axes": {"peak_lr": {}}},
                                                  "base_config": base}))


HELD = []


def held_name(d: Path) -> None:
    """results/x claimed by this (the bench's) process, as a running sweep of that name holds it."""
    sys.path.insert(0, str(REPO))
    from hpsearch.lock import claim

    HELD.append(claim(d / "results" / "x", "x", resume=False))


def release_held(d: Path) -> None:
    while HELD:
        HELD.pop().release()


def recorded_sweep(d: Path) -> None:
    """results/r: the record of a started sweep (model nano, 4 samples, 512 tokens per trial)."""
    (d / "results" / "r" / "tune").mkdir(parents=True)
    (d / "results" / "r" / "tune" / "experiment_state-x.json").write_text("{}")
    (d / "results" / "r" / "sweep.json").write_text(json.dumps({"name": "r", "space": {"name": "smoke", "axes": {}},
        "options": {"model": "nano", "num_samples": 4, "max_tokens_per_trial": 512}}))


def dna_line(d: Path) -> None:
    """dna.txt: 20 MB of A/C/G/T on one line (one pre-tokenizer piece, were it not cut)."""
    import numpy as np

    (d / "dna.txt").write_bytes(np.frombuffer(b"ACGT", np.uint8)[np.random.default_rng(0).integers(0, 4, 20_000_000)]
                                .tobytes())


def prose() -> str:
    """About 2 MB of English (the embedded corpus twice over): its tokens do not fit in a 1 MiB cache."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics.values()) * 2


def both(*setups):
    def setup(d: Path) -> None:
        for s in setups:
            s(d)
    return setup


@dataclass
class Case:
    name: str
    argv: list[str]
    setup: object = None
    runtime: bool = False
    """Needs a real Ray and trials (skipped by --quick)."""
    interrupt_after: str | None = None
    """Glob (in the scratch dir) whose first non-empty file triggers a Ctrl-C to the process group."""
    then: list[str] = field(default_factory=list)
    """A second command run afterwards (e.g. --resume); its status is reported too."""
    teardown: object = None
    env: dict = field(default_factory=dict)
    """Extra environment of the command (e.g. HPSEARCH_CACHE_DIR on a full disk)."""
    notice: str | None = None
    """A case that runs to the end: the message is the last stdout line starting with this text (a warning)."""


CASES = [
    Case("baseline: a valid space file", ["spaces", "ok.yaml"],
         files(**{"ok.yaml": space({"peak_lr": {"grid": [1e-3]}})})),
    Case("YAML alias bomb as --space", ["sweep", "--space", "bomb.yaml", *QUICK_SWEEP], files(**{"bomb.yaml": bomb()})),
    Case("YAML alias bomb as sweep --config", ["sweep", "--config", "bomb.yaml", *QUICK_SWEEP],
         files(**{"bomb.yaml": bomb()})),
    Case("YAML alias bomb as pretrain --config", ["pretrain", "--config", "bomb.yaml"], files(**{"bomb.yaml": bomb()})),
    Case("YAML file of 5 MB", ["pretrain", "--config", "big.yaml"], files(**{"big.yaml": "# " + "x" * 5_000_000})),
    Case("YAML syntax error in a space", ["spaces", "s.yaml"],
         files(**{"s.yaml": "name: s\naxes:\n  peak_lr: {grid: [1e-3, 2e-3}\n"})),
    Case("YAML syntax error in a config", ["pretrain", "--config", "c.yaml"],
         files(**{"c.yaml": "train:\n  batch_size: 4\n  peak_lr: [1e-3, 2e-3\n  min_lr: 1e-5\n"})),
    Case("duplicate key in a config", ["pretrain", "--config", "c.yaml"],
         files(**{"c.yaml": "train: {peak_lr: 1.0e-3}\ntrain: {min_lr: 1.0e-5}\n"})),
    Case("config is a directory", ["pretrain", "--config", "configs"], files(**{"configs__a.yaml": "train: {}\n"})),
    Case("config not UTF-8", ["pretrain", "--config", "c.yaml"], files(**{"c.yaml": "# caf\xe9\n".encode("latin-1")})),
    Case("--space /dev/zero (a device)", ["sweep", "--space", "/dev/zero", *QUICK_SWEEP]),
    Case("--config /dev/zero (a device)", ["pretrain", "--config", "/dev/zero"]),
    Case("a FIFO as --space (no writer: opening it would block)", ["sweep", "--space", "s.yaml", *QUICK_SWEEP],
         lambda d: os.mkfifo(d / "s.yaml")),
    Case("200 kB value in a space", ["spaces", "s.yaml"],
         files(**{"s.yaml": yaml.safe_dump({"name": "s", "axes": ["x" * 200_000]})})),
    Case("unknown axis", ["spaces", "s.yaml"], files(**{"s.yaml": space({"peak_rl": {"grid": [1e-3]}})})),
    Case("min_lr > peak_lr", ["pretrain", "--config", "c.yaml"], files(**{"c.yaml": config(min_lr=0.1)})),
    Case("unknown config key", ["pretrain", "--config", "c.yaml"], files(**{"c.yaml": "train: {lr: 1}\n"})),
    Case("corpus missing", ["sweep", "--data", "nope.txt", *QUICK_SWEEP]),
    Case("corpus binary", ["sweep", "--data", "x.txt", *QUICK_SWEEP], files(**{"x.txt": b"\x7fELF\x00\x00"})),
    Case("corpus is a FIFO (opening it would block)", ["sweep", "--data", "pipe", *QUICK_SWEEP],
         lambda d: os.mkfifo(d / "pipe")),
    Case("corpus is /dev/zero (endless)", ["sweep", "--data", "/dev/zero", *QUICK_SWEEP]),
    Case("pretrain on one 20 MB line without whitespace (DNA-like)",
         ["pretrain", "--data.path", "dna.txt", "--model.preset", "nano", "--max-tokens", "512",
          "--train.warmup_steps", "0", "--out", "run"],
         dna_line, runtime=True, env={"HPSEARCH_CACHE_DIR": "cache"}),  # a cold cache: tokenizing is measured
    Case("token cache on a full disk (the run goes on, uncached)",
         ["pretrain", "--config", "c.yaml", "--out", "run"], both(files(**{"c.yaml": config(), "corpus.txt": prose()}),
                                                                 full_disk()),
         teardown=unmount, env={"HPSEARCH_CACHE_DIR": "full"}, notice="warning:"),
    Case("--num-samples 0", ["sweep", "--num-samples", "0"]),
    Case("--num-samples -1 (optuna-asha)", ["sweep", "--num-samples", "-1", "--mode", "optuna-asha"]),
    Case("--num-samples -3", ["sweep", "--num-samples", "-3"]),
    Case("--max-concurrent 0", ["sweep", "--max-concurrent", "0"]),
    Case("--max-concurrent -2", ["sweep", "--max-concurrent", "-2"]),
    Case("--name ''", ["sweep", "--name", "", *QUICK_SWEEP]),
    Case("--seed beyond 2^32", ["sweep", "--seed", "8589934592"]),
    Case("--gpus-per-trial 1.5", ["sweep", "--gpus-per-trial", "1.5", *QUICK_SWEEP]),
    Case("--reduction-factor 1", ["sweep", "--reduction-factor", "1", *QUICK_SWEEP]),
    Case("--grace-tokens above the per-trial budget", ["sweep", "--grace-tokens", "100000", "--name", "g",
                                                      "--space", "smoke", *QUICK_SWEEP]),
    Case("--grace-tokens with --mode grid", ["sweep", "--grace-tokens", "100", "--mode", "grid", "--space", "smoke",
                                             *QUICK_SWEEP]),
    Case("results --top 0", ["results", "x", "--top", "0"]),
    Case("report --reruns -1", ["report", "x", "--reruns", "-1"]),
    Case("report --top 0", ["report", "x", "--top", "0"]),
    Case("pretrain --max-tokens 0", ["pretrain", "--max-tokens", "0"]),
    Case("export --target-width 0", ["export", "x", "--out", "o.yaml", "--target-width", "0"]),
    Case("transfer --widths 64,0", ["transfer", "--widths", "64,0", "--lrs", "1e-3"]),
    Case("scale --warmup-fraction 1", ["scale", "--warmup-fraction", "1"]),
    Case("--resume without --name", ["sweep", "--resume", "--results-dir", "results"], fake_sweeps),
    Case("export --force onto a directory",
         ["export", "lr-done", "--out", "runs", "--force", "--results-dir", "results"], files(**{"runs__keep__model.pt": b"weights"})),
    Case("sweep name already started", ["sweep", "--name", "taken", "--space", "smoke", *QUICK_SWEEP],
         files(**{"results__taken__sweep.json": "{}", "results__taken__tune__experiment_state-x.json": "{}"})),
    Case("a sweep of a name another process is running", ["sweep", "--name", "x", "--space", "smoke", *QUICK_SWEEP],
         held_name, teardown=release_held),
    Case("--resume of a name another process is running", ["sweep", "--name", "x", "--resume", *QUICK_SWEEP[-3:]],
         both(held_name, files(**{"results__x__sweep.json": "{}"})), teardown=release_held),
    Case("--resume with changed --model/--num-samples/--max-tokens-per-trial",
         ["sweep", "--name", "r", "--resume", "--model", "small", "--num-samples", "8", "--max-tokens-per-trial", "999",
          "--results-dir", "results"], recorded_sweep),
    Case("export onto a full disk", ["export", "s", "--out", "full/best.yaml", "--results-dir", "results"],
         both(finished_sweep, full_disk()), teardown=unmount),
    Case("pretrain --out onto a nearly full disk (64 KiB left: the run trains, its checkpoint does not fit)",
         ["pretrain", "--config", "c.yaml", "--out", "full/run"],
         both(files(**{"c.yaml": config()}), full_disk(room=64 * 1024)), teardown=unmount),
    Case("pretrain override with a typo", ["pretrain", "--train.peak_rl", "3e-4"]),
    Case("pretrain override of the wrong type", ["pretrain", "--train.batch_size", "eight"]),
    Case("pretrain override without a value", ["pretrain", "--train.peak_lr"]),
    Case("--warm-start from a sweep that does not exist", ["sweep", "--warm-start", "nope", *QUICK_SWEEP]),
    Case("--warm-start with --mode grid", ["sweep", "--warm-start", "s", "--mode", "grid", "--space", "smoke",
                                           *QUICK_SWEEP], finished_sweep),
    Case("--budget-tokens 0", ["sweep", "--budget-tokens", "0"]),
    Case("scale --seeds 2 (one seed value: no seed noise to measure)",
         ["scale", "--name", "l", "--budgets", "1000,2000,4000", "--lrs", "1e-3,2e-3,4e-3", "--batch-sizes", "4",
          "--seeds", "2", "--model", "nano", "--no-dashboard"]),
    Case("--sample-tokens 1.5", ["sweep", "--sample-tokens", "1.5"]),
    Case("--data-format xml", ["sweep", "--data-format", "xml"]),
    Case("every trial skipped (warmup beyond the run)",
         ["sweep", "--space", "w.yaml", "--mode", "grid", "--name", "w", *QUICK_SWEEP],
         files(**{"w.yaml": space({"warmup_steps": {"grid": [40, 60]}}, batch_size=4)}), runtime=True),
    Case("Ctrl-C mid-trial, then --resume",
         ["sweep", "--space", "one.yaml", "--mode", "grid", "--name", "c", "--checkpoint-every", "1",
          *QUICK_SWEEP[:2], "--max-tokens-per-trial", "12800", *QUICK_SWEEP[4:]],
         files(**{"one.yaml": space({"peak_lr": {"grid": [5e-3]}}, batch_size=4, warmup_steps=2)}), runtime=True,
         interrupt_after="results/c/tune/*/result.json",
         then=["sweep", "--name", "c", "--resume", "--results-dir", "results", "--no-dashboard"]),
    Case("Ctrl-C in a transfer study after its first report",
         ["transfer", "--name", "t", "--widths", "32,64", "--lrs", "1e-3,4e-3,1.6e-2", "--seeds", "0",
          *QUICK_SWEEP[:2], "--max-tokens-per-trial", "4096", *QUICK_SWEEP[4:]], runtime=True,
         interrupt_after="results/t/tune/*/result.json"),
]


# -- running one case --------------------------------------------------------------------------

def child(record: str, argv: list[str]) -> None:
    """Run ``hpsearch ARGV`` in this process; write exit status, peak RSS and wall time to ``record``."""
    sys.path.insert(0, str(REPO))
    from hpsearch.cli import main

    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    Path(record).write_text(json.dumps({"rc": code, "wall_s": time.perf_counter() - t0,
                                        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(code)


def snapshot(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file()}


def kept(before: dict, after: dict) -> str:
    lost = [p for p in before if p not in after]
    changed = [p for p in before if p in after and after[p] != before[p]]
    new = sorted(p for p in after if p not in before and "/tune/" not in p and not p.endswith(".log"))
    parts = []
    if lost or changed:
        parts.append("LOST " + ", ".join(lost + changed))
    else:
        parts.append("inputs intact" if before else "nothing to keep")
    parts.append("wrote " + ", ".join(new[:6]) + (" ..." if len(new) > 6 else "") if new else "nothing written")
    return "; ".join(parts)


def run_case(case: Case, d: Path, timeout: float) -> dict:
    if case.setup:
        case.setup(d)
    before = snapshot(d)
    record = d / ".record.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(record), "--", *case.argv]
    with open(d / "stderr.log", "w") as err:
        out = open(d / "stdout.log", "w") if case.notice else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, cwd=d, env={**ENV, **case.env}, stdout=out, stderr=err, start_new_session=True)
        if case.interrupt_after:
            deadline = time.time() + timeout
            while proc.poll() is None and time.time() < deadline and \
                    not any(p.stat().st_size for p in d.glob(case.interrupt_after)):
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stats = json.loads(record.read_text()) if record.is_file() else {"rc": proc.returncode, "wall_s": None,
                                                                       "rss_mb": None}
    record.unlink(missing_ok=True)
    lines = [ln for ln in (d / "stderr.log").read_text(errors="replace").splitlines()
             if ln.startswith("hpsearch") and ": error: " in ln or ln.startswith("hpsearch: interrupted")]
    if case.notice:
        lines = [ln for ln in (d / "stdout.log").read_text(errors="replace").splitlines() if ln.startswith(case.notice)]
    message = (lines[-1] if lines else "").replace(f"{d}/", "").replace(str(d), ".")  # the scratch dir's path
    after = snapshot(d)
    row = {"case": case.name, "command": "hpsearch " + shlex.join(case.argv), "message": message,
           "rc": proc.returncode, "rss_mb": stats["rss_mb"], "wall_s": stats["wall_s"],
           "kept": kept(before, {k: v for k, v in after.items() if k not in ("stderr.log", "stdout.log")})}
    if case.name.startswith("every trial skipped"):
        row["message"] = "stdout: " + " / ".join(_skip_lines(d))
    if case.then:
        again = subprocess.run([sys.executable, "-m", "hpsearch.cli", *case.then], cwd=d, env=ENV,
                               capture_output=True, text=True, timeout=timeout)
        import pandas as pd

        statuses = ", ".join(pd.read_parquet(d / "results" / "c" / "trials.parquet")["status"]) \
            if (d / "results" / "c" / "trials.parquet").is_file() else "no trials.parquet"
        row["kept"] += f"; then `hpsearch {shlex.join(case.then)}` exit {again.returncode}: {statuses}"
    return row


def _skip_lines(d: Path) -> list[str]:
    meta = json.loads((d / "results" / "w" / "sweep.json").read_text())
    return meta.get("skipped") or [meta.get("summary", "")]


def write_table(rows: list[dict]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["# Bad-input matrix", "",
           "Generated by `python bench/bad_input_matrix.py` (do not edit by hand): every case run through the CLI",
           "in a fresh scratch directory, paths relative to it. *exit*: the status (2: refused, 1: ran but no",
           "trial could win, 130: interrupted); *RSS*: the driver's peak memory in MB, which the modules a",
           "subcommand imports dominate (`spaces`/`pretrain` ~230, `sweep` ~300, more once it tokenizes or",
           "starts Ray), so a hostile input shows as a difference from its neighbours; *s*: wall time of the",
           "command after its imports; *kept*: the scratch directory compared before and after (files under",
           "Tune's `tune/` not listed).", "",
           "| case | command | message | exit | RSS MB | s | kept |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cmd = r["command"] if len(r["command"]) <= 110 else r["command"][:107] + "..."
        msg = r["message"] if len(r["message"]) <= 400 else r["message"][:397] + "..."
        rss = f"{r['rss_mb']:.0f}" if r["rss_mb"] else ""
        wall = f"{r['wall_s']:.2f}" if r["wall_s"] is not None else ""
        out.append(f"| {cell(r['case'])} | `{cell(cmd)}` | {cell(msg)} | {r['rc']} | {rss} | {wall} | {cell(r['kept'])} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the cases that start Ray and run trials")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    parser.add_argument("--only", help="run the cases whose name contains this text; print, write no table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(args.child, rest[1:] if rest[:1] == ["--"] else rest)
    rows = []
    for case in CASES:
        if (args.quick and case.runtime) or (args.only and args.only not in case.name):
            continue
        with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
            try:
                row = run_case(case, Path(tmp), args.timeout)
            except subprocess.CalledProcessError as exc:  # a setup that needs privileges (mount)
                row = {"case": case.name, "command": "hpsearch " + shlex.join(case.argv), "rc": "",
                       "message": f"not run: `{shlex.join(exc.cmd)}` failed ({exc.stderr.decode().strip()})",
                       "rss_mb": None, "wall_s": None, "kept": ""}
            finally:
                if case.teardown:
                    case.teardown(Path(tmp))
        print(f"{row['rc']:>4}  {row['case']}: {row['message'][:150]}", flush=True)
        rows.append(row)
    if not args.only:
        OUT.write_text(write_table(rows))
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
