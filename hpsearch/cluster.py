"""Run sweeps on a Ray cluster: submit one as a Ray Job, list the jobs, follow their logs.

    hpsearch submit --address http://HEAD:8265 --space demo --storage /shared/hpsearch   # prints the job id
    hpsearch jobs   --address http://HEAD:8265
    hpsearch logs   JOB --address http://HEAD:8265 --follow
    hpsearch stop   JOB --address http://HEAD:8265

A submitted sweep ships this project (the directory holding hpsearch/, trainables/ and
search_spaces/) as the job's ``working_dir`` and runs ``python -m hpsearch.cli sweep ... --address
auto`` on the head node, so results land in ``--results-dir`` *on the head* (default
``$HOME/hpsearch-results``) and trial state in ``--storage``.

Secured clusters (Ray 2.60 turns token auth on): the job client sends ``authorization: Bearer
<token>``. The token comes from Ray's own lookup: ``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH``
or ``~/.ray/auth_token``. It is sent when ``RAY_AUTH_MODE=token`` is set, and to a loopback address
(a cluster on this machine) unless ``RAY_AUTH_MODE=disabled``; never to another host unasked.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from hpsearch.options import SweepOptions, add_sweep_arguments, sweep_name
from hpsearch.runtime_env import project_root, project_runtime_env
from trainables.errors import SweepError, brief, first_line

DEFAULT_JOB_RESULTS = "~/hpsearch-results"
"""Where a submitted sweep writes results/<name>/ on the head node (~ is the head's home)."""
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# -- talking to the job server ---------------------------------------------------------------------

def normalize_address(address: str | None) -> str:
    """``HOST:PORT`` or ``http(s)://HOST:PORT`` of the Ray dashboard (default ``$RAY_API_SERVER_ADDRESS``)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        raise SweepError("no job server given: pass --address http://HEAD:8265 (the Ray dashboard's "
                         "address) or set RAY_API_SERVER_ADDRESS")
    if "://" not in address:
        address = f"http://{address}"
    scheme = urlparse(address).scheme
    if scheme not in ("http", "https"):
        raise SweepError(f"--address {address}: the job API is HTTP; use http://HEAD:8265 (the dashboard "
                         f"port), not a {scheme}:// address")
    return address.rstrip("/")


def _is_loopback(address: str) -> bool:
    return (urlparse(address).hostname or "") in LOOPBACK


def auth_headers(address: str) -> dict[str, str]:
    """The ``authorization`` header for ``address``, or {} where no token is to be sent.

    Sent when RAY_AUTH_MODE=token, or to a loopback address while RAY_AUTH_MODE is unset (what
    ``ray.init()`` does for a local cluster). The token is found the way Ray finds it.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if mode == "disabled" or (mode != "token" and not _is_loopback(address)):
        return {}
    try:
        from ray._raylet import AuthenticationTokenLoader

        loader = AuthenticationTokenLoader.instance()
        loader.reset_cache()  # the token file may have been written after import
        headers = dict(loader.get_token_for_http_header(ignore_auth_mode=True) or {})
    except (ImportError, AttributeError):  # a Ray without token auth
        return {}
    if not headers and mode == "token":
        raise SweepError("RAY_AUTH_MODE=token but no Ray token was found: set RAY_AUTH_TOKEN, or "
                         "RAY_AUTH_TOKEN_PATH to the token file, or copy the head's ~/.ray/auth_token "
                         "to this machine (`ray get-auth-token` on the head prints it)")
    return headers


def job_client(address: str | None):
    """A JobSubmissionClient for ``address``; connection and auth failures become one-line SweepErrors."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    address = normalize_address(address)
    for name in ("ray.dashboard", "ray._private.runtime_env"):  # per-file upload and socket chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return JobSubmissionClient(address, headers=auth_headers(address))
    except AuthenticationError as exc:
        first = first_line(exc)
        which = ("the token sent is not this cluster's" if "Invalid" in first or "Forbidden" in first
                 else "the cluster uses token auth")
        raise SweepError(f"{address} refused the request ({first}); {which}: export RAY_AUTH_MODE=token "
                         "and RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file>); `ray get-auth-token` "
                         "on the head prints the token") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SweepError(f"--address {address}: no Ray job server answered ({first_line(exc, limit=200)}); pass the "
                         "dashboard address of the head (http://HEAD:8265) and check it is reachable "
                         "(e.g. through `ssh -L 8265:localhost:8265 HEAD`)") from None


def _job_call(fn, job_id: str, *args):
    try:
        return fn(job_id, *args)
    except RuntimeError as exc:
        text = str(exc)
        if "404" in text or "does not exist" in text:
            raise SweepError(f"no job '{job_id}' on this cluster; `hpsearch jobs --address ...` lists them") from None
        raise SweepError(f"job '{job_id}': {first_line(text)}") from None


# -- what a submitted sweep runs -------------------------------------------------------------------

def _sweep_flags() -> list[argparse.Action]:
    p = argparse.ArgumentParser(add_help=False)
    add_sweep_arguments(p)
    return [a for a in p._actions if a.option_strings]


def _job_path(value: str, root: Path, option: str) -> str:
    """A file argument as the job sees it: inside the project -> relative (it ships), else absolute."""
    local = Path(value).expanduser().resolve()
    try:
        return str(local.relative_to(root))
    except ValueError:
        if local.exists():
            print(f"note: {option} {local} is outside the project, so it is not shipped: it must exist at "
                  "that path on the head node", file=sys.stderr)
        return str(local)


def _shell_path(value: str) -> str:
    """A path for the job's shell: ``~/x`` expands on the head node; anything else is quoted."""
    if value == "~" or value.startswith("~/"):
        return '"$HOME"' + (("/" + shlex.quote(value[2:])) if len(value) > 2 else "")
    return shlex.quote(value)


def sweep_entrypoint(args: argparse.Namespace, *, name: str, results_dir: str) -> str:
    """``python -m hpsearch.cli sweep ...`` with the sweep options of ``args`` and ``--address auto``."""
    root = project_root()
    parts = ["python", "-m", "hpsearch.cli", "sweep", "--address", "auto", "--name", name,
             "--results-dir", _shell_path(results_dir)]
    skip = {"address", "name", "results_dir", "dashboard", "dashboard_host"}  # the job joins a running cluster
    for action in _sweep_flags():
        value = getattr(args, action.dest, None)
        if action.dest in skip or value is None:
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:  # store_true / store_false
            if value == action.const:
                parts.append(flag)
            continue
        text = str(value)
        if action.dest == "storage":
            parts += [flag, _job_storage(text)]
            continue
        if action.dest in ("data", "config") or (action.dest == "space" and text.endswith((".yaml", ".yml"))):
            text = _job_path(text, root, flag)
        parts += [flag, shlex.quote(text)]
    return " ".join(parts)


def _job_storage(value: str) -> str:
    if "://" in value:  # s3://, gs://, ...: every node reaches it by itself
        return shlex.quote(value)
    if not _is_head_path(value):
        raise SweepError(f"--storage {value}: a submitted sweep needs a location every node reaches: an "
                         "absolute path on shared storage (e.g. /mnt/shared/hpsearch) or a URI (s3://...)")
    return _shell_path(value)


def _is_head_path(value: str) -> bool:
    return value == "~" or value.startswith("~/") or Path(value).is_absolute()


def _job_name(args: argparse.Namespace) -> str:
    return sweep_name(SweepOptions.from_namespace(args))


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SweepError(f"--env {brief(pair)}: expected KEY=VALUE, e.g. --env HPSEARCH_CACHE_DIR=/data/cache")
        env[key] = value
    return env


def submit_sweep(args: argparse.Namespace, *, log=print) -> str:
    """Submit the sweep described by ``args`` as a Ray Job; returns the submission id."""
    name = _job_name(args)
    results_dir = args.results_dir or DEFAULT_JOB_RESULTS
    if not _is_head_path(results_dir):
        raise SweepError(f"--results-dir {results_dir}: a submitted sweep runs in a temporary copy of the "
                         "project on the head node, so give an absolute path there (or ~/...), e.g. "
                         f"--results-dir {DEFAULT_JOB_RESULTS}")
    entrypoint = sweep_entrypoint(args, name=name, results_dir=results_dir)
    client = job_client(args.address)
    runtime_env = project_runtime_env(_parse_env(args.env))
    metadata = {"hpsearch_sweep": name, "hpsearch_results": f"{results_dir.rstrip('/')}/{name}",
                "hpsearch_storage": args.storage or ""}
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata,
                                   submission_id=args.job_id)
    except RuntimeError as exc:
        raise SweepError(f"the cluster refused the job: {first_line(exc)}") from None
    addr = normalize_address(args.address)
    log(f"submitted sweep '{name}' as job {job_id}")
    log(f"  entrypoint: {entrypoint}")
    log(f"  follow:  hpsearch logs {job_id} --address {addr} --follow")
    log(f"  status:  hpsearch jobs --address {addr}")
    log(f"  stop:    hpsearch stop {job_id} --address {addr}")
    log(f"  results: {metadata['hpsearch_results']} on the head node"
        + (f"; trial state in {args.storage.rstrip('/')}/{name}" if args.storage else ""))
    return job_id


def follow_logs(client, job_id: str, *, out=sys.stdout) -> str:
    """Stream ``job_id``'s logs to ``out`` until it ends; returns its final status."""
    async def tail():
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    _job_call(client.get_job_status, job_id)  # a clean error for an unknown id
    try:
        asyncio.run(tail())
    except RuntimeError as exc:  # the socket closed early: fall back to polling
        print(f"(log stream interrupted: {exc}; polling)", file=sys.stderr)
    return wait_for_job(client, job_id)


def wait_for_job(client, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> str:
    t0 = time.monotonic()
    while True:
        status = str(_job_call(client.get_job_status, job_id))
        status = status.rsplit(".", 1)[-1]  # JobStatus.SUCCEEDED -> SUCCEEDED
        if status in TERMINAL:
            return status
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            return status
        time.sleep(poll_s)


def jobs_table(jobs) -> str:
    """One line per submitted job, oldest first: id, status, sweep, start, duration."""
    rows = [("JOB", "STATUS", "SWEEP", "STARTED", "TOOK")]
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        if not job.submission_id:
            continue  # drivers connected directly (ray.init), not submitted jobs
        started = datetime.fromtimestamp(job.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S") if job.start_time else "-"
        took = f"{(job.end_time - job.start_time) / 1000:.0f} s" if job.end_time and job.start_time else "-"
        status = str(job.status).rsplit(".", 1)[-1]
        rows.append((job.submission_id, status, (job.metadata or {}).get("hpsearch_sweep", "-"), started, took))
    if len(rows) == 1:
        return "no submitted jobs on this cluster"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# -- CLI ---------------------------------------------------------------------------------------

def cmd_submit(args: argparse.Namespace) -> int:
    job_id = submit_sweep(args)
    if not args.wait:
        return 0
    status = follow_logs(job_client(args.address), job_id)
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    client = job_client(args.address)
    print(jobs_table(client.list_jobs()))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = job_client(args.address)
    if args.follow:
        status = follow_logs(client, args.job)
        print(f"job {args.job}: {status}")
        return 0 if status == "SUCCEEDED" else 1
    sys.stdout.write(_job_call(client.get_job_logs, args.job))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    client = job_client(args.address)
    stopped = _job_call(client.stop_job, args.job)
    print(f"job {args.job}: " + ("stop requested" if stopped else "already finished"))
    return 0


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="the Ray job server: the head's dashboard, http://HEAD:8265 "
                                     "(default $RAY_API_SERVER_ADDRESS); a secured cluster also needs "
                                     "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)")


def register_cluster_commands(sub) -> None:
    """Add submit, jobs, logs and stop to the ``hpsearch`` subparsers ``sub``."""
    p = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray Job", conflict_handler="resolve",
                       description="Submit a sweep as a Ray Job: the project is uploaded as the job's "
                                   "working_dir and `hpsearch sweep --address auto` runs on the head node. "
                                   "Takes every `hpsearch sweep` option; --address is the job server here.")
    add_sweep_arguments(p)
    g = p.add_argument_group("job")
    _add_address(g)
    g.add_argument("--results-dir", help=f"results directory on the head node, absolute or ~/... "
                                         f"(default {DEFAULT_JOB_RESULTS})")
    g.add_argument("--env", action="append", metavar="KEY=VALUE",
                   help="environment variable for the sweep's processes (repeatable)")
    g.add_argument("--job-id", help="submission id (default: Ray picks one)")
    g.add_argument("--wait", action="store_true", help="follow the logs until the job ends; exit 1 unless it succeeded")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list the sweeps submitted to a Ray cluster")
    _add_address(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("logs", help="print (or --follow) a submitted sweep's logs")
    p.add_argument("job", help="the submission id `hpsearch submit` printed")
    _add_address(p)
    p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends; exit 1 unless it succeeded")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="stop a submitted sweep")
    p.add_argument("job", help="the submission id")
    _add_address(p)
    p.set_defaults(func=cmd_stop)
