"""The Ray the sweep runs on: a local one bound to 127.0.0.1, or an existing cluster, checked first.

A local Ray listens on loopback only. Ray 2.60 turns a node address of 127.0.0.1 into the machine's
outward IP (``resolve_ip_for_localhost``) unless it runs in its single-machine mode, the one it uses
on macOS and Windows (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), and its gRPC servers (GCS, raylet,
object manager, dashboard and runtime-env agents, every worker) bind to all interfaces unless the node
address is loopback. :func:`loopback_only` switches that mode on while the local Ray starts: every
listener then binds to 127.0.0.1 (measured by tests/test_hardening.py from /proc/net/tcp*).

Ray is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from hpsearch.runtime_env import driver_runtime_env
from trainables.errors import SweepError, first_line


def ensure_ray(*, address: str | None, dashboard: bool, dashboard_host: str, log=print) -> None:
    """Connect to ``address`` or start a local Ray on 127.0.0.1, unless one is already up."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune warns on every forced state snapshot after a trial checkpoint; with short trials that is
    # every few seconds and tells the user nothing they can act on
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
        try:  # ship the project: trials on every node run this code
            ray.init(address=address, runtime_env=driver_runtime_env(), logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SweepError(f"--address {address[:200]}: no Ray cluster answered ({first_line(exc, limit=200)}); start one with "
                             "`ray start --head` or check the address and RAY_AUTH_MODE=token") from None
        log(f"connected to the Ray cluster at {address}")
        return
    if dashboard and dashboard_host not in ("127.0.0.1", "localhost"):
        log(f"WARNING: the Ray dashboard will listen on {dashboard_host}: anyone who can reach it and has "
            "the cluster token can run code on this machine. Ray's token auth is its only protection.")
    # address="local": always a fresh Ray of our own; a bare ray.init() would join any cluster that
    # someone started with `ray start` on this machine
    # Ray's "token authentication is enabled ... set RAY_AUTH_MODE=disabled to opt out" advises turning the
    # protection of a local sweep off; the README's security section says what the token guards
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    with loopback_only():
        ctx = ray.init(address="local", include_dashboard=dashboard,
                       dashboard_host=dashboard_host if dashboard else "127.0.0.1",
                       _node_ip_address="127.0.0.1", logging_level="WARNING")
    if dashboard and getattr(ctx, "dashboard_url", None):
        log(f"Ray dashboard: http://{ctx.dashboard_url}")


SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_only():
    """Start a local Ray in Ray's single-machine mode: node address 127.0.0.1, every listener on loopback.

    The variable reaches the processes Ray starts meanwhile (GCS, raylet, agents; workers inherit the
    raylet's environment); Ray's own constant is read when Ray is imported, so it is set too. Both are
    restored afterwards: this process may later join a real cluster.
    """
    from ray._private import ray_constants

    before_env, before_const = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_const
        if before_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = before_env


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds when nothing listens at ``address`` (Ray itself waits minutes, then hangs)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise SweepError(f"--address {address[:200]}: nothing answers there ({exc.__class__.__name__}: "
                         f"{first_line(exc, limit=200)}); start the head with `ray start --head --port PORT` or fix "
                         "the address") from None


def trial_slots(cpus: float, gpus: float, max_concurrent: int | None = None) -> int:
    """How many trials of ``cpus`` CPUs and ``gpus`` GPUs the cluster runs at once now (at least 1)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if gpus > 1:  # data-parallel: a trial's workers (a GPU each) may span nodes
        from trainables.ddp import ddp_workers

        slots = int(sum(r.get("GPU", 0) for r in nodes)) // ddp_workers(gpus)
    else:
        slots = sum(min(int(r.get("CPU", 0) // cpus), int(r.get("GPU", 0) // gpus) if gpus else 10**6)
                    for r in nodes)
    return max(1, min(slots, max_concurrent or slots))


def check_resources(cpus: float, gpus: float) -> None:
    """Fail fast when no node can ever host one trial (instead of trials pending forever)."""
    import ray

    if cpus <= 0 or gpus < 0:
        raise SweepError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus:g} and {gpus:g}")
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if gpus > 1:  # data-parallel: one worker per GPU (with cpus/N CPUs), on any nodes
        from trainables.ddp import ddp_workers

        n = ddp_workers(gpus)
        placeable = sum(min(int(r.get("GPU", 0)), int(r.get("CPU", 0) // (cpus / n))) for r in nodes)
        if placeable < n:
            raise SweepError(
                f"a data-parallel trial needs {n} workers of 1 GPU + {cpus / n:g} CPU, but the cluster can "
                f"place only {placeable} (GPUs: {sum(r.get('GPU', 0) for r in nodes):g} in all); lower "
                "--gpus-per-trial or add GPU nodes")
        return
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
        most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
        raise SweepError(
            f"no node can run a trial with {cpus:g} CPU(s) and {gpus:g} GPU(s): the largest node has "
            f"{most_cpu:g} CPUs and {most_gpu:g} GPUs; lower --cpus-per-trial/--gpus-per-trial "
            "or add a node that has them")
