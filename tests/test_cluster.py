"""Sweeps on a two-node Ray cluster on this machine, driven through the CLI in subprocesses.

The module fixture starts a head and a worker node (``ray start --block``: 2 CPUs and 2 fake GPUs
each, their own temp dirs, free loopback ports, token auth with a token of this test's own) and
stops them by pid. Every sweep runs as ``python -m hpsearch.cli ...`` in a subprocess, so nothing
here clashes with the in-process Ray of the other test files. Fake GPUs have no CUDA: trials train
on CPU and record the GPU ids Ray gave them (``gpu_ids``, ``node_id`` in every report).

The whole file takes 2.5 to 4 minutes on 2 cores (more when the machine is busy); the tests that
run Ray are marked slow.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from hpsearch.cluster import (
    DEFAULT_JOB_RESULTS,
    _shell_path,
    auth_headers,
    jobs_table,
    normalize_address,
    sweep_entrypoint,
)
from trainables.errors import SweepError

ROOT = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
SMOKE_TOKENS = 2048  # --smoke-test: each trial's token budget


# -- helpers --------------------------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open until every one is chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def get_json(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, dict | None]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def in_netns(ns: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run inside network namespace ``ns`` (None: here)."""
    return ["ip", "netns", "exec", ns, *cmd] if ns else cmd


def hpsearch(*args: str, env: dict, timeout: float = 300, cwd: Path = ROOT,
             ns: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(in_netns(ns, [sys.executable, "-m", "hpsearch.cli", *args]), env=env, cwd=cwd,
                          timeout=timeout, capture_output=True, text=True)


def trial_reports(tune_dir: Path) -> list[list[dict]]:
    """Every trial's reports (Tune's result.json rows), one list per trial.

    Tune uploads these files while a sweep runs: a last line caught half written is left out."""
    out = []
    for f in sorted(tune_dir.glob("*/result.json")):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        if rows:
            out.append(rows)
    return out


def running_trials(tune_dir: Path) -> set[str]:
    """Ids of the trials Tune's latest saved experiment state has RUNNING (they hold their resources
    from their actor's start to their end); empty while no state is saved or it is caught mid-upload."""
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"] if states else []
        trials = [json.loads(state) for state, _ in trial_data]
    except (json.JSONDecodeError, KeyError):
        return set()
    return {t["trial_id"] for t in trials if t["status"] == "RUNNING"}


def wait_for(what: str, ready, *, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``ready()`` until it returns something truthy (returned); fail after ``timeout_s``, a bound
    that only a hung run reaches, or as soon as ``proc`` ends first."""
    deadline = time.monotonic() + timeout_s
    while not (value := ready()):
        tail = log.read_text()[-3000:] if log else ""
        assert proc is None or proc.poll() is None, f"ended before {what}:\n{tail}"
        assert time.monotonic() < deadline, f"no {what} in {timeout_s:.0f} s:\n{tail}"
        time.sleep(0.2)
    return value


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"


def base_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HPSEARCH_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1")
    return env


# -- no Ray: addresses, auth headers, the job's command line ---------------------------------------

def test_normalize_address():
    assert normalize_address("head:8265") == "http://head:8265"
    assert normalize_address("https://head:443/") == "https://head:443"
    with pytest.raises(SweepError, match="job API is HTTP"):
        normalize_address("ray://head:10001")


def test_normalize_address_needs_one(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    with pytest.raises(SweepError, match="--address http://HEAD:8265"):
        normalize_address(None)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://h:8265")
    assert normalize_address(None) == "http://h:8265"


@pytest.fixture
def fresh_token_cache():
    """Ray caches the token process-wide; a test's fake token must not outlive the test (the next
    in-process ray.init would present it to its own GCS)."""
    from ray._raylet import AuthenticationTokenLoader

    yield
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.mark.usefixtures("fresh_token_cache")
def test_token_goes_to_loopback_or_when_asked_never_elsewhere_unasked(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0k")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert auth_headers("http://127.0.0.1:8265") == {"authorization": "Bearer t0k"}
    assert auth_headers("http://head.example:8265") == {}
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert auth_headers("http://head.example:8265") == {"authorization": "Bearer t0k"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert auth_headers("http://127.0.0.1:8265") == {}


def test_shell_path_expands_home_on_the_head_only():
    assert _shell_path("~/hpsearch-results") == '"$HOME"/hpsearch-results'
    assert _shell_path("/data/my results") == "'/data/my results'"
    assert _shell_path("~") == '"$HOME"'


def test_entrypoint_carries_the_sweep_options():
    import argparse

    from hpsearch.options import add_sweep_arguments

    p = argparse.ArgumentParser()
    add_sweep_arguments(p)
    args = p.parse_args(["--space", "smoke", "--mode", "grid", "--cpus-per-trial", "0.5", "--gpus-per-trial", "1",
                         "--smoke-test", "--no-dashboard", "--storage", "/shared/hp", "--address", "ignored:1"])
    cmd = sweep_entrypoint(args, name="s1", results_dir=DEFAULT_JOB_RESULTS)
    assert cmd.startswith('python -m hpsearch.cli sweep --address auto --name s1 --results-dir "$HOME"/hpsearch-results')
    for part in ("--space smoke", "--mode grid", "--cpus-per-trial 0.5", "--gpus-per-trial 1.0", "--smoke-test",
                 "--storage /shared/hp"):
        assert part in cmd, (part, cmd)
    assert "ignored" not in cmd and "--no-dashboard" not in cmd  # the job joins the running cluster


def test_entrypoint_ships_project_files_by_relative_path():
    import argparse

    from hpsearch.options import add_sweep_arguments

    p = argparse.ArgumentParser()
    add_sweep_arguments(p)
    args = p.parse_args(["--space", str(ROOT / "search_spaces" / "smoke.yaml")])
    assert "--space search_spaces/smoke.yaml" in sweep_entrypoint(args, name="s", results_dir="/r")
    args = p.parse_args(["--storage", "relative/dir"])
    with pytest.raises(SweepError, match="every node reaches"):
        sweep_entrypoint(args, name="s", results_dir="/r")


def test_jobs_table_lists_submissions_only():
    from types import SimpleNamespace as J

    jobs = [J(submission_id=None, status="SUCCEEDED", metadata={}, start_time=1, end_time=2),
            J(submission_id="raysubmit_b", status="JobStatus.RUNNING", metadata={"hpsearch_sweep": "s2"},
              start_time=2_000_000, end_time=None),
            J(submission_id="raysubmit_a", status="SUCCEEDED", metadata={"hpsearch_sweep": "s1"},
              start_time=1_000_000, end_time=1_030_000)]
    lines = jobs_table(jobs).splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "SWEEP", "STARTED", "TOOK"]
    assert lines[1].startswith("raysubmit_a") and "SUCCEEDED" in lines[1] and lines[1].endswith("30 s")
    assert lines[2].startswith("raysubmit_b") and "RUNNING" in lines[2] and "s2" in lines[2]
    assert jobs_table(jobs[:1]) == "no submitted jobs on this cluster"


# -- a local sweep: dashboard on loopback, Optuna study in SQLite ----------------------------------

def _local_env(tmp: Path, token: str) -> dict:
    env = base_env(tmp)
    # our own temp dir: ray.init() would otherwise join a cluster that `ray start` left in /tmp/ray
    env.update(RAY_TMPDIR=str(tmp), RAY_AUTH_TOKEN=token)
    return env


@pytest.mark.slow
def test_local_sweep_dashboard_answers_on_loopback_and_study_holds_trials():
    tmp = Path(tempfile.mkdtemp(prefix="hpl", dir="/tmp"))
    token = secrets.token_hex(32)
    out = tmp / "sweep.log"
    try:
        with open(out, "w") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpsearch.cli", "sweep", "--smoke-test", "--space", "smoke",
                 "--mode", "optuna-asha", "--num-samples", "2", "--name", "dash", "--results-dir", str(tmp / "r")],
                env=_local_env(tmp, token), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)
        url, answered, deadline = None, None, time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and answered is None:
            line = next((ln for ln in out.read_text().splitlines() if ln.startswith("Ray dashboard: ")), None)
            if line:
                url = line.split(": ", 1)[1].strip()
                assert url.startswith("http://127.0.0.1:"), url  # loopback unless --dashboard-host
                anonymous, _ = get_json(f"{url}/api/version")
                status, body = get_json(f"{url}/api/version", token)
                if status == 200:
                    answered = (anonymous, body)
            time.sleep(0.5)
        rc = proc.wait(timeout=240)
        assert rc == 0, out.read_text()[-3000:]
        assert url and answered, f"the dashboard never answered ({url}):\n{out.read_text()[-2000:]}"
        anonymous, body = answered
        assert anonymous == 401  # token auth is on: no token, no dashboard
        assert body["ray_version"]

        import optuna

        study = optuna.load_study(study_name="dash", storage=f"sqlite:///{tmp / 'r' / 'dash' / 'optuna.db'}")
        states = [t.state for t in study.trials]
        assert len(states) == 2, states
        assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
        assert any(s == optuna.trial.TrialState.COMPLETE for s in states)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# -- the cluster ----------------------------------------------------------------------------------

@dataclass
class Cluster:
    ns: str           # the network namespace everything of this cluster runs in
    gcs: str          # 127.0.0.1:PORT, for `hpsearch sweep --address`
    dashboard: str    # http://127.0.0.1:PORT, for `hpsearch submit --address`
    token: str
    env: dict         # what a client of this cluster needs: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN
    tmp: Path
    storage: Path     # the "shared" storage every node reaches
    procs: list       # [head, worker] `ray start --block` processes


_COUNT_ALIVE = """import json, sys, urllib.request as u
req = u.Request(sys.argv[1] + "/nodes?view=summary", headers={"authorization": "Bearer " + sys.argv[2]})
body = json.load(u.urlopen(req, timeout=5))
print(sum(1 for n in body["data"]["summary"] if (n.get("raylet") or {}).get("state") == "ALIVE"))"""


def _alive_nodes(ns: str, dashboard: str, token: str) -> int:
    proc = subprocess.run(in_netns(ns, [sys.executable, "-c", _COUNT_ALIVE, dashboard, token]),
                          capture_output=True, text=True, timeout=30)
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip().isdigit() else 0


@pytest.fixture(scope="module")
def netns():
    """A network namespace with only loopback: Ray resolves 127.0.0.1 to the host's outward address
    when it joins a cluster, so the nodes live where the only address is 127.0.0.1."""
    ns = f"hpsearch{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace (needs root and iproute2): {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _stop(procs: list[subprocess.Popen], grace_s: float = 45.0) -> None:
    """SIGTERM our `ray start --block` processes (they drain and stop their node), then SIGKILL leftovers."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:  # each node was started in its own session: its group holds only its processes
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="module")
def cluster(netns):
    tmp = Path(tempfile.mkdtemp(prefix="hpc", dir="/tmp"))  # short: unix socket paths < 107 chars
    # each node its own temp dir (a shared one broke job submission)
    head_dir, worker_dir = (Path(tempfile.mkdtemp(prefix=p, dir="/tmp")) for p in ("rcA", "rcB"))
    (gcs, dash, client, nm, om, al, ag, rt, mx, nm2, om2, al2, ag2, rt2, mx2) = free_ports(15)
    token = secrets.token_hex(32)  # our own: ~/.ray/auth_token belongs to whoever else runs Ray here
    env = base_env(tmp)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    # Ray Train's placement-group cleaner finds "its" cluster by auto-detection, which fails when
    # other Ray clusters run on this machine; point it (and every job client) at ours
    node_env = {**env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # nothing to drain: stop at once
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--num-gpus", "2",
              "--min-worker-port", "0", "--max-worker-port", "0", "--object-store-memory", str(100 * 2**20)]
    head_cmd = [RAY, "start", "--head", "--port", str(gcs), "--temp-dir", str(head_dir),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--disable-usage-stats",
                "--ray-client-server-port", str(client), "--node-manager-port", str(nm),
                "--object-manager-port", str(om), "--dashboard-agent-listen-port", str(al),
                "--dashboard-agent-grpc-port", str(ag), "--runtime-env-agent-port", str(rt),
                "--metrics-export-port", str(mx), *common]
    worker_cmd = [RAY, "start", "--address", f"127.0.0.1:{gcs}", "--temp-dir", str(worker_dir),
                  "--node-manager-port", str(nm2), "--object-manager-port", str(om2),
                  "--dashboard-agent-listen-port", str(al2), "--dashboard-agent-grpc-port", str(ag2),
                  "--runtime-env-agent-port", str(rt2), "--metrics-export-port", str(mx2), *common]
    dashboard = f"http://127.0.0.1:{dash}"
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        procs.append(subprocess.Popen(in_netns(netns, head_cmd), env=node_env, stdout=open(tmp / "head.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        _wait(lambda: _alive_nodes(netns, dashboard, token) >= 1, 90, "head node", procs, tmp / "head.log")
        procs.append(subprocess.Popen(in_netns(netns, worker_cmd), env=node_env, stdout=open(tmp / "worker.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        _wait(lambda: _alive_nodes(netns, dashboard, token) >= 2, 90, "worker node", procs, tmp / "worker.log")
        print(f"two-node cluster up in {time.monotonic() - t0:.0f} s: gcs 127.0.0.1:{gcs}, dashboard {dashboard}")
        yield Cluster(netns, f"127.0.0.1:{gcs}", dashboard, token, env, tmp, tmp / "shared", procs)
    finally:
        t1 = time.monotonic()
        _stop(list(reversed(procs)))
        print(f"cluster stopped in {time.monotonic() - t1:.0f} s")
        for d in (head_dir, worker_dir, tmp):
            shutil.rmtree(d, ignore_errors=True)


def _wait(ready, timeout_s: float, what: str, procs, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(1.0)
    raise RuntimeError(f"{what} did not come up in {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def cluster_sweep(cluster: Cluster, name: str, *args: str,
                  timeout: float = 300) -> tuple[subprocess.CompletedProcess, Path]:
    """`hpsearch sweep --address <cluster>` with Tune state in the cluster's shared storage."""
    proc = hpsearch("sweep", "--address", cluster.gcs, "--name", name, "--storage", str(cluster.storage),
                    "--results-dir", str(cluster.tmp / "results"), *args, env=cluster.env, timeout=timeout,
                    ns=cluster.ns)
    return proc, cluster.storage / name


# -- sweeps on the cluster ------------------------------------------------------------------------

def sweep_in_background(cluster: Cluster, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """`hpsearch sweep --address <cluster>` like :func:`cluster_sweep`, not waited for; output in a log."""
    cmd = [sys.executable, "-m", "hpsearch.cli", "sweep", "--address", cluster.gcs, "--name", name,
           "--storage", str(cluster.storage), "--results-dir", str(cluster.tmp / "results"), *args]
    log = cluster.tmp / f"{name}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(in_netns(cluster.ns, cmd), env=cluster.env, cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.slow
def test_half_gpu_trials_share_a_device(cluster):
    # 8 trials of 0.5 CPU + 0.5 GPU: all fit at once, two to a device (no actor reuse: a reused
    # worker would carry its device over to the next trial). Whether two of them ever run at the
    # same moment is the scheduler's doing: the test watches Tune's own record of which trials are
    # RUNNING, never the clock, and keeps every snapshot it sees.
    # --checkpoint-every 2 and 8x a smoke trial's tokens: trials long enough to overlap in Tune's saved state
    # even on a loaded machine, where actors start seconds apart (a smoke trial alone takes ~1 s; with 2,048
    # tokens the full suite once saw at most one RUNNING at a time in 50 snapshots)
    proc, log = sweep_in_background(cluster, "gpu05", "--smoke-test", "--num-samples", "2", "--no-reuse-actors",
                                    "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5", "--checkpoint-every", "2",
                                    "--max-tokens-per-trial", "16384")
    tune_dir, snapshots = cluster.storage / "gpu05", []
    try:
        wait_for("end of the sweep", lambda: snapshots.append(running_trials(tune_dir)) or proc.poll() is not None,
                 timeout_s=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.wait() == 0, log.read_text()[-3000:]
    table = pd.read_parquet(cluster.tmp / "results" / "gpu05" / "trials.parquet")
    assert len(table) == 8 and (table["status"] == "completed").all() and (table["gpus"] == 0.5).all()

    # each trial had one device, the same in every report, and CUDA saw that one alone
    device = {}
    for rows in trial_reports(tune_dir):
        (place,) = {(r["node_id"], r["gpu_ids"], r["cuda_visible_devices"]) for r in rows}
        node, gpu, visible = place
        assert gpu in ("0", "1") and visible == gpu, place  # a fraction is one device, never several
        device[rows[-1]["trial_id"]] = (node, gpu)
    assert set(device) == set(table["trial_id"])
    snapshots = [ids for ids in snapshots if ids]
    assert snapshots and set().union(*snapshots) <= set(device), "Tune's state never showed a RUNNING trial"

    # at no moment more than two on a device; at some moment two on one
    per_device = [Counter(device[t] for t in ids) for ids in snapshots]
    assert all(max(c.values()) <= 2 for c in per_device), per_device
    shared = {d for c in per_device for d, n in c.items() if n == 2}
    print("0.5 GPU per trial:", {f"{n[:8]}:{g}": k for (n, g), k in Counter(device.values()).items()},
          "shared at once:", sorted(f"{n[:8]}:{g}" for n, g in shared))
    assert shared, (f"no device held two RUNNING trials in any of {len(snapshots)} snapshots of Tune's state "
                    f"(at most {max(map(len, snapshots))} trials running at once)")


@pytest.mark.slow
def test_ddp_trial_trains_on_two_gpus(cluster):
    space = cluster.tmp / "ddp-space.yaml"
    space.write_text("name: ddp\ndescription: two points\naxes:\n  peak_lr: {grid: [5.0e-4, 5.0e-3]}\n"
                     "fixed: {batch_size: 4, warmup_steps: 2, initial_lr: 1.0e-5, min_lr: 1.0e-5}\n")
    proc, tune_dir = cluster_sweep(cluster, "ddp2", "--smoke-test", "--space", str(space), "--mode", "grid",
                                   "--gpus-per-trial", "2", timeout=400)
    assert proc.returncode == 0, explain(proc)
    last = [rows[-1] for rows in trial_reports(tune_dir)]
    assert len(last) == 2
    for r in last:
        assert r["hp_status"] == "completed" and r["ddp_workers"] == 2
        ranks = r["ddp_devices"].split(";")
        print("DDP trial devices:", [d.split(":")[0][:8] + ":" + d.split(":")[1] for d in ranks])
        assert len(ranks) == 2 and len(set(ranks)) == 2, ranks  # two distinct (node, GPU) per trial
        assert r["tokens_seen"] == SMOKE_TOKENS and math.isfinite(r["best_val_loss"])


@pytest.mark.slow
def test_submitted_sweep_spreads_one_gpu_trials_over_nodes_and_lands_in_storage(cluster):
    results = cluster.tmp / "job-results"
    proc = hpsearch("submit", "--address", cluster.dashboard, "--smoke-test", "--name", "job1",
                    "--gpus-per-trial", "1", "--no-reuse-actors", "--results-dir", str(results), "--storage", str(cluster.storage),
                    "--env", f"HPSEARCH_CACHE_DIR={cluster.tmp / 'cache'}", "--wait", env=cluster.env,
                    ns=cluster.ns)
    assert proc.returncode == 0, explain(proc)
    job_id = next(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("submitted sweep"))
    assert f"job {job_id}: SUCCEEDED" in proc.stdout

    # results on the head, Tune state in the shared storage
    table = pd.read_parquet(results / "job1" / "trials.parquet")
    assert len(table) == 4 and (table["status"] == "completed").all() and (table["gpus"] == 1).all()
    assert (results / "job1" / "best_config.yaml").is_file()
    assert list((cluster.storage / "job1").glob("experiment_state-*.json"))

    # 4 trials of 1 GPU on 2 nodes x 2 GPUs: all at once, each on its own (node, GPU)
    last = [rows[-1] for rows in trial_reports(cluster.storage / "job1")]
    assert len(last) == 4 and all(r["hp_status"] == "completed" for r in last)
    assert "gpu_ids" in last[0], "trial reports carry no gpu_ids: apply the tune_trainable change of issue 4"
    devices = [(r["node_id"], r["gpu_ids"]) for r in last]
    print("1 GPU per trial:", [(n[:8], g) for n, g in devices])
    assert len(set(devices)) == 4, f"two trials got the same GPU: {devices}"
    assert len({n for n, _ in devices}) == 2, "trials did not spread over both nodes"
    for r in last:
        assert r["gpu_ids"] in ("0", "1") and r["cuda_visible_devices"] == r["gpu_ids"]
        assert r["device"] == "cpu"  # fake GPUs: no CUDA, the trial trains on CPU
        assert r["tokens_seen"] == SMOKE_TOKENS and math.isfinite(r["best_val_loss"])

    listing = hpsearch("jobs", "--address", cluster.dashboard, env=cluster.env, timeout=60, ns=cluster.ns)
    assert listing.returncode == 0, explain(listing)
    row = next(line for line in listing.stdout.splitlines() if line.startswith(job_id))
    assert "SUCCEEDED" in row and "job1" in row
    logs = hpsearch("logs", job_id, "--address", cluster.dashboard, env=cluster.env, timeout=60, ns=cluster.ns)
    assert logs.returncode == 0 and "sweep wall time" in logs.stdout, explain(logs)


@pytest.mark.slow
@pytest.mark.parametrize("auth, expect", [
    ({"RAY_AUTH_MODE": "disabled"}, "uses token auth"),
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}, "not this cluster's"),
])
def test_job_api_refuses_missing_or_wrong_token(cluster, auth, expect):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")} | auth
    proc = hpsearch("jobs", "--address", cluster.dashboard, env=env, timeout=60, ns=cluster.ns)
    assert proc.returncode == 2 and expect in proc.stderr and "RAY_AUTH_TOKEN" in proc.stderr, explain(proc)


@pytest.mark.slow
@pytest.mark.parametrize("args, expect", [
    (["--cpus-per-trial", "3"], "no node can run a trial with 3 CPU(s)"),
    (["--gpus-per-trial", "8"], "needs 8 workers of 1 GPU"),
    (["--gpus-per-trial", "1.5"], "must be a whole number"),
])
def test_impossible_requests_fail_fast_on_the_cluster(cluster, args, expect):
    # fast: refused before anything runs or is written, instead of trials pending forever (which the
    # subprocess timeout, a bound and not a measurement, turns into a failure)
    name = f"never-{len(expect)}"
    proc, tune_dir = cluster_sweep(cluster, name, "--smoke-test", *args, timeout=300)
    assert proc.returncode == 2 and expect in proc.stderr, explain(proc)
    assert not tune_dir.exists() and not (cluster.tmp / "results" / name).exists()


# -- last: it kills the worker node ----------------------------------------------------------------

@pytest.mark.slow
def test_a_dead_worker_node_costs_no_trial(cluster):
    """SIGKILL the worker node while it trains; its trials are retried on the head, from checkpoints."""
    name = "nodedeath"
    driver, log = sweep_in_background(cluster, name, "--space", "smoke", "--mode", "grid", "--model", "nano",
                                      "--max-tokens-per-trial", "32768", "--eval-freq", "4", "--eval-iter", "1",
                                      "--checkpoint-every", "1", "--max-failures", "3", "--no-reuse-actors")
    tune_dir = cluster.storage / name

    def early_on_both_nodes():
        """node -> a trial there that has reported (so it has a checkpoint) and has more than half its
        budget to go: a kill now takes a running trial down with the worker."""
        early = {rows[-1]["node_id"]: rows[-1]["trial_id"] for rows in trial_reports(tune_dir)
                 if not rows[-1]["training_complete"] and rows[-1]["tokens_seen"] <= 32768 // 2}
        return early if len(early) == 2 else None

    wait_for("trial early in its run on each node", early_on_both_nodes, timeout_s=600, proc=driver, log=log)
    t_kill = time.monotonic()
    os.killpg(cluster.procs[1].pid, signal.SIGKILL)  # the worker node and everything it runs
    rc = driver.wait(timeout=600)
    print(f"worker killed; sweep finished {time.monotonic() - t_kill:.0f} s later")
    assert rc == 0, log.read_text()[-3000:]
    table = pd.read_parquet(cluster.tmp / "results" / name / "trials.parquet")
    assert len(table) == 4 and (table["status"] == "completed").all(), table[["trial_id", "status", "error"]]
    assert (table["tokens_seen"] == 32768).all()

    # the trials the worker was running moved to the head once, and went on from their last checkpoint
    moved = [rows for rows in trial_reports(tune_dir) if len({r["node_id"] for r in rows}) > 1]
    assert moved, f"no trial was running on the worker when it died:\n{log.read_text()[-2000:]}"
    for rows in moved:
        nodes = [r["node_id"] for r in rows]
        at = next(i for i, n in enumerate(nodes) if n != nodes[0])
        assert set(nodes[:at]) == {nodes[0]} and set(nodes[at:]) == {nodes[at]}, nodes
        steps = [r["step"] for r in rows]
        assert steps[at] == steps[at - 1] + 4, steps  # every report checkpoints; not restarted at step 0
        assert steps == sorted(set(steps)) and rows[-1]["tokens_seen"] == 32768, steps  # no step trained twice
