"""Shared by the benchmark scripts: environment, Ray start, medians and bench/results.json.

Every script imports this first: it pins the environment variables the benchmarks must run with
(before Ray or the product is imported) and records each figure with the command, machine and date.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HPSEARCH_CACHE_DIR"] = "/tmp/bench_cache"

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results.json"
RUNS_DIR = Path("/tmp/bench_runs")  # sweeps' results/ and Tune state: scratch, never in the repo
FIGURES = ("tune_overhead_ratio", "concurrency_efficiency", "cache_reload_ratio", "search_gap_at_10pct", "gpu_mfu",
           "mup_lr_drift_octaves", "scaling_law_loss_gap")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def start_ray(num_cpus: int = 2, worker_nice: int | None = None, **runtime_env) -> None:
    """A private local Ray on 2 CPUs (others run their own Ray on this machine).

    ``worker_nice``: the CPU priority of Ray's workers (Ray's default is nice 15: on a shared machine
    every normal-priority process then takes the CPU from a trial first); None keeps Ray's default.
    """
    import ray

    from hpsearch.ray_session import loopback_only

    if not ray.is_initialized():
        with loopback_only():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     logging_level="WARNING", runtime_env=runtime_env or None,
                     _system_config=None if worker_nice is None else {"worker_niceness": worker_nice})


def median(values) -> float:
    return float(statistics.median(values))


def spread(values) -> str:
    """'median [min..max] (n)' for a printout."""
    v = sorted(values)
    return f"{statistics.median(v):.4g} [{v[0]:.4g}..{v[-1]:.4g}] (n={len(v)})"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def busy_fraction(seconds: float = 2.0) -> float:
    """Share of all cores busy over the next ``seconds`` (from /proc/stat; includes everyone's work)."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    (t0, i0), _, (t1, i1) = sample(), time.sleep(seconds), sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(below: float = 0.25, max_wait: float = 180.0) -> float:
    """Wait (up to ``max_wait`` s) until other work leaves the cores mostly idle; the busy share seen.

    Other people's jobs share this machine: a repeat started in a quiet moment measures the code,
    not the neighbours. The busy share at the start is recorded beside every repeat.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_fraction()
        if busy < below or time.monotonic() > deadline:
            return round(busy, 3)


def machine() -> str:
    import torch

    return (f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPU, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def record(figures: dict, details: dict, *, quick: bool = False, tag: str = "", variant: str = "") -> None:
    """Merge ``figures`` (top-level keys) into bench/results.json; ``details`` go under runs[<script><tag>].

    A --quick run only checks that a script works, and a tagged run (a candidate change) is no
    product figure: their figures go under runs[...]["figures"] and never replace the measured ones.
    ``variant`` names a product run of another setting of the same script (its own runs[...] entry).
    """
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for key in FIGURES:
        data.setdefault(key, None)
    if not quick and not tag:
        data.update(figures)
    script = Path(sys.argv[0]).name
    runs = data.setdefault("runs", {})
    runs[script + variant + (" --quick" if quick else "") + tag] = {
        "command": shlex.join(["python", f"bench/{script}", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": figures,
        **details,
    }
    data["runs"] = dict(sorted(runs.items()))
    tmp = RESULTS.with_name(f".results.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, RESULTS)
    where = "runs only" if quick or tag else RESULTS.relative_to(REPO)
    print(f"recorded in {where}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def stamp() -> str:
    return time.strftime("%H:%M:%S")
