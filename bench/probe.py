"""Timestamps from inside Tune trials without touching the product: a Ray worker setup hook.

`start_probed_ray()` starts Ray with `setup` as every worker's `worker_process_setup_hook`. In each
worker it wraps the product's `train_trial` (entry/exit), `tune.report` (return time, tokens, the
trial's own tokens/s) and adds a global optimizer step hook (the first step of each optimizer).
Events go as JSON lines to the file named by BENCH_PROBE_LOG; `events()` reads them back.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

LOG_ENV = "BENCH_PROBE_LOG"


def _write(event: str, **fields) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    try:
        from ray import tune

        trial = tune.get_context().get_trial_id()
    except Exception:  # outside a trial
        trial = None
    line = json.dumps({"event": event, "t": time.time(), "cpu": time.process_time(), "pid": os.getpid(),
                       "trial": trial, **fields})
    with open(path, "a") as fh:  # one short write per line: appends from many processes stay whole
        fh.write(line + "\n")


def setup() -> None:
    import weakref

    import torch
    from ray import tune
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import trainables.tune_trainable as tt

    steps = weakref.WeakKeyDictionary()  # optimizer -> steps taken

    def early_steps(optimizer, args, kwargs):
        n = steps[optimizer] = steps.get(optimizer, 0) + 1
        if n <= 2:  # the second step's end - the first's = one step's time
            _write("first_step" if n == 1 else "second_step")

    register_optimizer_step_post_hook(early_steps)

    report = tune.report

    @functools.wraps(report)
    def probed_report(metrics, *args, **kwargs):
        out = report(metrics, *args, **kwargs)
        _write("report", tokens_seen=metrics.get("tokens_seen"), tps=metrics.get("tokens_per_second"),
               status=metrics.get("hp_status"))
        return out

    tune.report = probed_report
    train_trial = tt.train_trial

    @functools.wraps(train_trial)
    def probed_train_trial(config, **kwargs):
        _write("enter", threads=torch.get_num_threads(), interop=torch.get_num_interop_threads(),
               omp_env=os.environ.get("OMP_NUM_THREADS"), mkl_env=os.environ.get("MKL_NUM_THREADS"),
               os_threads=len(os.listdir("/proc/self/task")), nice=os.nice(0))
        try:
            return train_trial(config, **kwargs)
        finally:
            _write("exit", threads=torch.get_num_threads(), os_threads=len(os.listdir("/proc/self/task")))

    tt.train_trial = probed_train_trial


def start_probed_ray(log_file: Path, num_cpus: int = 2, worker_nice: int | None = None) -> None:
    from common import start_ray

    import sys

    from ray import cloudpickle

    log_file.parent.mkdir(parents=True, exist_ok=True)
    os.environ[LOG_ENV] = str(log_file)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import bench/
    start_ray(num_cpus, worker_nice, worker_process_setup_hook=setup, env_vars={LOG_ENV: str(log_file)})


def events(log_file: Path, since: float = 0.0) -> list[dict]:
    if not log_file.is_file():
        return []
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["t"] >= since]


def per_trial(rows: list[dict]) -> dict[str, dict]:
    """trial -> {enter, first_step, second_step, exit, last_report, tokens, tps, cpu_s, info}."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["trial"] is None:
            continue
        d = out.setdefault(r["trial"], {"pid": r["pid"]})
        if r["event"] == "enter":
            d.update(enter=r["t"], cpu0=r["cpu"], info={k: r.get(k) for k in ("threads", "interop", "omp_env",
                                                                              "mkl_env", "os_threads", "nice")})
        elif r["event"] in ("first_step", "second_step"):
            d.setdefault(r["event"], r["t"])
        elif r["event"] == "report":
            d.update(last_report=r["t"], tokens=r["tokens_seen"], tps=r["tps"])
        elif r["event"] == "exit":
            d.update(exit=r["t"], cpu_s=r["cpu"] - d.get("cpu0", r["cpu"]), os_threads_exit=r.get("os_threads"))
    return out
