"""Hostile and mistaken input (issue 12): YAML bombs, numeric flags, sweeps that never start, every
trial skipped, syntax errors located, Ctrl-C, --resume without a name, export onto a directory, and
what a local Ray exposes to the network. Each case: one line, exit status 2, nothing already
computed lost. (The table of all cases: bench/BAD_INPUT.md, written by bench/bad_input_matrix.py.)"""

import functools
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import nano_config, run_cli, sweep_options, tmpfs
from hpsearch import results as res
from hpsearch.cli import main
from hpsearch.options import SweepOptions
from hpsearch.skips import skip_lines
from hpsearch.sweep import plan_sweep, record_sweep
from search_spaces import get_space
from trainables.config import load_config
from trainables.errors import ConfigError, SpaceError
from trainables.status import COMPLETED, EARLY_STOPPED, INTERRUPTED, RANKED, RUNNING, STATUSES

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def bomb(levels: int = 9) -> str:
    """The "billion laughs": each level a list of nine aliases of the previous one (9**levels leaves)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\naxes: *l{levels - 1}\nmodel: *l{levels - 1}\n"


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1 and len(err) < 2100, err[:3000]
    return err


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- 1. YAML bombs and unbounded values ---------------------------------------------------------

@pytest.mark.parametrize("argv", [["sweep", "--space", "F"], ["sweep", "--config", "F"],
                                  ["pretrain", "--config", "F"], ["spaces", "F"]])
def test_a_yaml_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path, capsys, argv):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(levels=7))  # 4.8M leaves: enough to see the expansion, small enough not to hurt
    argv = [str(f) if a == "F" else a for a in argv]
    tracemalloc.start()
    code, err = run_cli([*argv, *(["--results-dir", str(tmp_path / "r")] if argv[0] == "sweep" else [])], capsys)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2
    # refused at the first alias (line 2), before any node is built: memory stays at the file's size
    assert f"{f}, line 2, column " in one_line(err) and "alias '*l0' is not allowed" in err
    assert peak < 20e6, peak
    assert not (tmp_path / "r").exists()


def test_the_full_bomb_is_refused_before_it_expands(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(levels=9))  # 387M leaves: expanded, gigabytes; refused, a few KB
    tracemalloc.start()
    with pytest.raises(ConfigError, match=f"^{f}, line 2, column .*alias"):
        load_config(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, peak


@pytest.mark.parametrize("text, fragment", [
    ("axes: {peak_lr: {grid: [1, 2]}}\naxes: {}\n", "line 2, column 1: key 'axes' appears twice (first on line 1)"),
    ("axes: " + "[" * 80 + "]" * 80 + "\n", "line 1, column 70: nested deeper than 64 levels"),
])
def test_duplicate_keys_and_deep_nesting_are_refused(tmp_path, text, fragment):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(SpaceError, match="^" + str(f)) as exc:
        get_space(str(f))
    assert fragment in str(exc.value)


def test_an_oversized_yaml_file_is_refused_before_it_is_read(tmp_path, capsys):
    f = tmp_path / "huge.yaml"
    f.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    code, err = run_cli(["pretrain", "--config", str(f)], capsys)
    assert code == 2 and "is 2,097,155 bytes; hpsearch reads YAML files up to 1,048,576" in one_line(err)


@pytest.mark.parametrize("body", [
    {"name": "s" * 200_000, "axes": {"peak_lr": {"grid": [1e-3]}}, "description": ["x" * 1000] * 500},
    {"name": "s", "axes": ["y" * 100_000] * 5},
    {"name": "s", "axes": {"peak_lr": {"grid": [1e-3]}}, **{f"junk{i}" * 50: 1 for i in range(2000)}},
])
def test_an_error_never_carries_an_unbounded_value(tmp_path, capsys, body):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(body))
    with pytest.raises(SpaceError) as exc:
        get_space(str(f))
    assert len(str(exc.value)) < 2000
    code, err = run_cli(["spaces", str(f)], capsys)
    assert code == 2 and one_line(err)


# -- 7. where in the file -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["space", "config"])
def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys, command):
    f = tmp_path / "broken.yaml"
    f.write_text("train:\n  batch_size: 4\n  peak_lr: [1e-3, 2e-3\n  min_lr: 1e-5\n")
    argv = ["spaces", str(f)] if command == "space" else ["pretrain", "--config", str(f)]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert f"{f}, line 4, column 9: not valid YAML" in one_line(err) and "fix the syntax" in err


def test_a_directory_or_unreadable_file_is_named(tmp_path, capsys):
    code, err = run_cli(["pretrain", "--config", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path} is a directory" in one_line(err)
    f = tmp_path / "latin.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    code, err = run_cli(["spaces", str(f)], capsys)
    assert code == 2 and "is not UTF-8 text (byte 0xe9 at offset 9)" in one_line(err)


# -- 3. numeric flags -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["sweep", "--num-samples", "0"], "argument --num-samples: must be between 1 and 1000000, got 0"),
    (["sweep", "--num-samples", "-3"], "argument --num-samples: must be between 1 and 1000000, got -3"),
    (["sweep", "--num-samples", "99999999999999999999"], "argument --num-samples: must be between 1 and 1000000, got 1e+20"),
    (["sweep", "--max-concurrent", "0"], "argument --max-concurrent: must be >= 1, got 0"),
    (["sweep", "--max-concurrent", "-2"], "argument --max-concurrent: must be >= 1, got -2"),
    (["sweep", "--reduction-factor", "1"], "argument --reduction-factor: must be > 1, got 1"),
    (["sweep", "--seed", "5000000000"], "argument --seed: must be between 0 and 4294967295, got 5000000000"),
    (["sweep", "--cpus-per-trial", "nan"], "argument --cpus-per-trial: must be a finite number, got nan"),
    (["results", "x", "--top", "0"], "argument --top: must be >= 1, got 0"),
    (["report", "x", "--reruns", "-1"], "argument --reruns: must be between 0 and 100, got -1"),
    (["report", "x", "--top", "0"], "argument --top: must be >= 1, got 0"),
    (["pretrain", "--max-tokens", "0"], "argument --max-tokens: '0' is not a positive token count"),
    (["pretrain", "--max-tokens", "-5"], "argument --max-tokens: '-5' is not a positive token count"),
    (["export", "x", "--out", "o.yaml", "--target-width", "0"], "argument --target-width: must be >= 1, got 0"),
    (["transfer", "--widths", "64,0"], "argument --widths: every value must be >= 1, got 0"),
    (["transfer", "--lrs", "1e-3,-1"], "argument --lrs: every value must be > 0, got -1"),
    (["scale", "--warmup-fraction", "1"], "argument --warmup-fraction: must be >= 0 and < 1, got 1"),
    (["scale", "--batch-sizes", "4,-8"], "argument --batch-sizes: every value must be >= 1, got -8"),
])
def test_numeric_flags_are_range_checked_at_parse_time(capsys, argv, message):
    code, err = run_cli(argv, capsys)
    assert code == 2 and message in one_line(err), err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--name", ""], "sweep name '' is not allowed"),
    (["sweep", "--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: above 1 a trial trains data-parallel"),
])
def test_values_argparse_cannot_judge_alone_fail_before_anything_runs(tmp_path, capsys, argv, message):
    code, err = run_cli([*argv, "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and message in one_line(err) and not any(tmp_path.iterdir())


def test_smoke_test_says_what_it_overrides(tmp_path):
    said = []
    plan = plan_sweep(SweepOptions(smoke_test=True, model="small", eval_freq=7, results_dir=str(tmp_path),
                                   dashboard=False), log=said.append)
    line = next(s for s in said if s.startswith("--smoke-test overrides: "))
    assert "--model small -> nano" in line and "--space demo -> smoke" in line
    assert "--max-tokens-per-trial (default) -> 2048" in line and "--eval-freq" not in line  # explicit 7 kept
    assert plan.opts.model == "nano" and plan.base.eval.eval_freq == 7


# -- 4. nothing written before the sweep is known to start --------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--mode", "optuna-asha", "--grace-tokens", "100000"],
     "--grace-tokens 100,000 exceeds the per-trial budget of 512 tokens (ASHA's max_t)"),
    (["--mode", "grid", "--grace-tokens", "100"], "--grace-tokens set ASHA early stopping, which only --mode optuna-asha"),
    (["--mode", "random", "--reduction-factor", "4"], "--reduction-factor set ASHA early stopping"),
    (["--mode", "grid", "--warm-start", "earlier"], "--warm-start seeds an Optuna sampler, which --mode grid does "
                                                     "not use; use --mode optuna-asha or quasi-random or random"),
])
def test_scheduler_arguments_are_checked_before_anything_is_written(tmp_path, capsys, extra, message):
    argv = ["sweep", "--space", "smoke", "--model", "nano", "--max-tokens-per-trial", "512", "--name", "g",
            "--results-dir", str(tmp_path), "--no-dashboard", *extra]
    code, err = run_cli(argv, capsys)
    assert code == 2 and message in one_line(err), err
    assert not any(tmp_path.iterdir())


quick_opts = functools.partial(sweep_options, mode="optuna-asha", name="n", eval_freq=None, eval_iter=None, verbose=1)


def test_a_sweep_failing_before_tune_starts_leaves_its_name_free(tmp_path, capsys, monkeypatch):
    import hpsearch.sweep as sweep_mod
    from trainables.errors import SweepError

    def broken_tuner(plan):
        (plan.sweep_dir / "optuna.db").write_bytes(b"")  # what the searcher writes before it fails
        raise SweepError("the searcher refused (simulated)")

    monkeypatch.setattr(sweep_mod, "ensure_ray", lambda **kw: None)
    monkeypatch.setattr(sweep_mod, "check_resources", lambda *a: None)
    monkeypatch.setattr(sweep_mod, "make_tuner", broken_tuner)
    argv = ["sweep", "--space", "smoke", "--model", "nano", "--max-tokens-per-trial", "512", "--name", "n",
            "--results-dir", str(tmp_path), "--no-dashboard"]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "the searcher refused" in one_line(err)
    assert not (tmp_path / "n").exists()  # sweep.json, space.yaml, optuna.db removed, the empty dir too


def test_a_never_started_sweep_can_be_run_again_or_resumed(tmp_path):
    plan = plan_sweep(quick_opts(tmp_path), log=print)
    record_sweep(plan)  # then the process died (or Tune failed) before its first trial
    (plan.sweep_dir / "tune").mkdir()
    (plan.sweep_dir / "tune" / "tuner.pkl").write_bytes(b"written by Tuner()")
    said = []
    again = plan_sweep(quick_opts(tmp_path), log=said.append)
    assert again.rerun and "sweep 'n' never started a trial; starting it again" in said
    resumed = plan_sweep(quick_opts(tmp_path, resume=True, space="demo"), log=said.append)
    assert resumed.rerun and not resumed.opts.resume and resumed.space.name == "smoke"  # from its record
    (plan.sweep_dir / "tune" / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    with pytest.raises(Exception, match="already exists"):  # once Tune saved state, only --resume
        plan_sweep(quick_opts(tmp_path), log=print)


# -- 6. every trial skipped --------------------------------------------------------------------------

def skipped_trials(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": f"t{i}", "status": "skipped-invalid", **r} for i, r in enumerate(rows)])


def test_skips_are_counted_per_reason_with_the_smallest_budget_that_fixes_warmup(embedded_tokens):
    from trainables.pretrain import plan_run

    base = nano_config(max_tokens=512, warmup_steps=2)
    trials = skipped_trials([{"warmup_steps": 30, "batch_size": 4}, {"warmup_steps": 20, "batch_size": 8},
                             {"warmup_steps": 2, "batch_size": 5000}])
    lines = skip_lines(trials, base, len(embedded_tokens), ["warmup_steps", "batch_size"])
    assert lines[0] == "3 of 3 trials skipped-invalid:"
    warm = next(line for line in lines if "warmup_steps not below" in line)
    assert warm.startswith("  2 x warmup_steps not below the run's total steps: --max-tokens-per-trial ")
    budget = int(warm.split("--max-tokens-per-trial ")[1].split(" ")[0].replace(",", ""))
    assert "drop warmup_steps 20, 30" in warm
    for w, b in ((30, 4), (20, 8)):  # the budget makes both valid, one token less does not
        plan_run(base.with_hparams({"warmup_steps": w, "batch_size": b, "max_tokens": budget}), len(embedded_tokens))
    with pytest.raises(ConfigError):
        plan_run(base.with_hparams({"warmup_steps": 20, "batch_size": 8, "max_tokens": budget - 1}),
                 len(embedded_tokens))
    assert any("1 x batch_size larger than the training windows: drop batch_size 5000" in line for line in lines)


def test_lr_order_skips_name_the_values_to_drop(embedded_tokens):
    base = nano_config()
    trials = skipped_trials([{"peak_lr": 1e-4, "min_lr": 1e-3}, {"peak_lr": 1e-4, "min_lr": 1e-2}])
    lines = skip_lines(trials, base, len(embedded_tokens), ["peak_lr", "min_lr"])
    assert lines[1] == "  2 x min_lr above peak_lr: drop min_lr 0.001, 0.01 or peak_lr 0.0001 (keep min_lr <= peak_lr)"


@pytest.mark.usefixtures("ray_session")
def test_a_sweep_where_every_trial_is_skipped_says_why_and_how_to_fix_it(tmp_path):
    from hpsearch.sweep import run_sweep

    space = tmp_path / "w.yaml"
    space.write_text(yaml.safe_dump({"name": "w", "axes": {"warmup_steps": {"grid": [40, 60]}},
                                     "fixed": {"batch_size": 4, "initial_lr": 1e-5, "min_lr": 1e-5}}))
    said = []
    out = run_sweep(SweepOptions(space=str(space), mode="grid", model="nano", max_tokens_per_trial=512, eval_freq=2,
                                 eval_iter=1, results_dir=str(tmp_path), dashboard=False, verbose=0, name="w"),
                    log=said.append)
    assert out.best is None and set(out.trials["status"]) == {"skipped-invalid"}
    assert "2 of 2 trials skipped-invalid:" in said
    assert any(s.startswith("  2 x warmup_steps not below the run's total steps: --max-tokens-per-trial 7,808 "
                            "(or more) makes them valid, or drop warmup_steps 40, 60") for s in said), said
    assert json.loads((tmp_path / "w" / "sweep.json").read_text())["skipped"] == out.skips


# -- 8. Ctrl-C -------------------------------------------------------------------------------------

def test_an_interrupted_trial_has_its_own_status_and_never_ranks():
    assert INTERRUPTED in STATUSES and INTERRUPTED not in RANKED
    assert res.trial_status({"hp_status": RUNNING}, None, finished=False) == INTERRUPTED
    assert res.trial_status({"hp_status": RUNNING}, None, finished=True) == EARLY_STOPPED
    assert res.trial_status({"hp_status": COMPLETED}, None, finished=False) == COMPLETED
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": [INTERRUPTED, EARLY_STOPPED],
                           "best_val_loss": [1.0, 5.0], "tokens_seen": [10, 10], "wall_time_s": [1.0, 1.0]})
    assert res.best_trial(trials)["trial_id"] == "b"
    assert "1 interrupted" in res.summary_line(trials)


def test_ctrl_c_marks_the_running_trial_interrupted_and_resume_finishes_it(tmp_path):
    space = tmp_path / "one.yaml"
    space.write_text(yaml.safe_dump({"name": "one", "axes": {"peak_lr": {"grid": [5e-3]}},
                                     "fixed": {"batch_size": 4, "warmup_steps": 2, "initial_lr": 1e-5,
                                               "min_lr": 1e-5}}))
    results = tmp_path / "results"
    base = [sys.executable, "-m", "hpsearch.cli", "sweep", "--name", "c", "--results-dir", str(results),
            "--no-dashboard"]
    cmd = [*base, "--space", str(space), "--mode", "grid", "--model", "nano", "--max-tokens-per-trial", "12800",
           "--eval-freq", "2", "--eval-iter", "1", "--checkpoint-every", "1"]
    # a terminal's Ctrl-C reaches the whole foreground process group
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any(r.stat().st_size for r in (results / "c" / "tune").glob("*/result.json")):
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=240) == 130
    trials = pd.read_parquet(results / "c" / "trials.parquet")
    assert list(trials["status"]) == [INTERRUPTED] and trials["tokens_seen"].iloc[0] < 12800
    assert not (results / "c" / "best_config.yaml").exists()  # an interrupted sweep has no winner yet
    assert "interrupted" in json.loads((results / "c" / "sweep.json").read_text())
    done = subprocess.run([*base, "--resume"], env=ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = pd.read_parquet(results / "c" / "trials.parquet")
    assert list(trials["status"]) == [COMPLETED] and trials["tokens_seen"].iloc[0] == 12800
    assert "finished" in json.loads((results / "c" / "sweep.json").read_text())


# -- 9. --resume without --name, export --force onto a directory ------------------------------------

def test_resume_without_a_name_lists_the_resumable_sweeps(tmp_path, capsys):
    for name, extra in (("done", {"finished": "x"}), ("cut", {"interrupted": "x"}), ("half", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.json").write_text(json.dumps({"name": name, **extra}))
    before = sorted(tmp_path.iterdir())
    code, err = run_cli(["sweep", "--resume", "--results-dir", str(tmp_path)], capsys)
    assert code == 2
    assert (f"--resume needs --name NAME, the sweep to continue; unfinished in {tmp_path}: cut (interrupted), "
            "half (unfinished); e.g. hpsearch sweep --name cut --resume") in one_line(err)
    assert sorted(tmp_path.iterdir()) == before  # no invented name, nothing created
    code, err = run_cli(["sweep", "--resume", "--results-dir", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no sweep in" in one_line(err)


def test_export_force_onto_a_directory_is_refused_and_the_directory_kept(tmp_path, capsys):
    target = tmp_path / "runs"
    (target / "keep").mkdir(parents=True)
    (target / "keep" / "model.pt").write_bytes(b"weights")
    before = snapshot(tmp_path)
    code, err = run_cli(["export", "any", "--out", str(target), "--force", "--results-dir", str(tmp_path)], capsys)
    assert code == 2
    assert f"{target} is a directory; export writes files and never replaces a directory" in one_line(err)
    assert snapshot(tmp_path) == before


# -- 10. network exposure of a local Ray ------------------------------------------------------------

LISTENER = textwrap.dedent("""
    import os, sys, ray
    from hpsearch.ray_session import ensure_ray
    ensure_ray(address=None, dashboard=True, dashboard_host="127.0.0.1", log=lambda s: None)

    @ray.remote
    def node_ip():
        return ray.util.get_node_ip_address()

    ips = sorted({ip for ip in ray.get([node_ip.remote() for _ in range(4)])})
    print(os.getpid(), ",".join(ips), ray.nodes()[0]["NodeManagerAddress"], flush=True)
    sys.stdin.readline()   # the test lists the sockets meanwhile
    ray.shutdown()
""")


def listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket, from /proc/net/tcp and tcp6."""
    found = {}
    for family, path in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        for line in Path(path).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # /proc prints host-order words
            found[int(fields[9])] = (socket.inet_ntop(family, raw), int(port, 16))
    return found


def socket_inodes(pids) -> dict[int, int]:
    """socket inode -> pid for the open file descriptors of ``pids``."""
    owned = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owned[int(target[8:-1])] = pid
        except OSError:  # the process ended meanwhile
            continue
    return owned


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_a_local_ray_listens_on_loopback_only_and_registers_127_0_0_1(tmp_path):
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", LISTENER], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parent.parent)
    try:
        pid, task_ips, node_ip = proc.stdout.readline().split()
        ray_pids = {int(pid)} | {p.pid for p in psutil.Process(int(pid)).children(recursive=True)}
        owned = socket_inodes(ray_pids)
        listeners = {(addr, port): owned[inode] for inode, (addr, port) in listening_sockets().items()
                     if inode in owned}
        exposed = {k: psutil.Process(v).name() for k, v in listeners.items() if not is_loopback(k[0])}
        assert task_ips == "127.0.0.1" and node_ip == "127.0.0.1"
        assert len(listeners) >= 6, listeners  # GCS, raylet x2, agents, dashboard, workers: all seen
        assert exposed == {}, exposed
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=60)


# -- 2. a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs with about 64 KiB left (skipped where mounting is not allowed)."""
    with tmpfs(tmp_path / "full", "1m") as mnt:
        (mnt / "ballast").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
        yield mnt


def test_a_full_disk_gives_one_line_and_keeps_the_previous_file(full_disk):
    from trainables.errors import DiskFullError
    from trainables.files import atomic_write_text

    target = full_disk / "sweep.json"
    atomic_write_text(target, '{"old": true}')
    with pytest.raises(DiskFullError) as exc:
        atomic_write_text(target, "x" * 500_000)
    message = str(exc.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"no space left to write {target}: it needs 500,000 bytes, ")
    assert "the previous sweep.json is unchanged" in message
    assert target.read_text() == '{"old": true}' and sorted(p.name for p in full_disk.iterdir()) == ["ballast",
                                                                                                       "sweep.json"]


def test_a_checkpoint_on_a_full_disk_is_a_disk_full_error_not_torchs_runtime_error(full_disk):
    import torch

    from trainables.errors import DiskFullError
    from trainables.files import atomic_write

    with pytest.raises(DiskFullError, match=r"no space left to write .*checkpoint.pt: it needs more than [\d,]+ bytes"):
        atomic_write(full_disk / "checkpoint.pt", lambda tmp: torch.save({"w": torch.zeros(500_000)}, tmp))
    assert sorted(p.name for p in full_disk.iterdir()) == ["ballast"]  # no partial checkpoint left


def test_export_onto_a_full_disk_exits_2_with_one_line(full_disk, tmp_path, capsys):
    sweep = tmp_path / "results" / "s"
    sweep.mkdir(parents=True)
    trials = pd.DataFrame([{"trial_id": "t0", "status": "completed", "peak_lr": 1e-3, "best_val_loss": 5.0,
                            "best_val_tokens": 512, "tokens_seen": 512, "wall_time_s": 1.0}])
    res.save(sweep, trials, pd.DataFrame(columns=res.CURVE_COLUMNS))
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "space": {"axes": {"peak_lr": {}}},
                                                  "base_config": nano_config().to_dict()}))
    with open(full_disk / "more-ballast", "wb", buffering=0) as f:  # fill it up: a native config is only ~1 KB
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    code, err = run_cli(["export", "s", "--out", str(full_disk / "best.yaml"), "--results-dir", str(tmp_path / "results")],
                        capsys)
    assert code == 2 and f"no space left to write {full_disk / 'best.yaml'}: it needs " in one_line(err)
    assert not (full_disk / "best.yaml").exists()


def test_a_finished_run_keeps_its_metrics_when_the_final_checkpoint_finds_the_disk_full(full_disk, capsys):
    out = full_disk / "run"
    code, err = run_cli(["pretrain", "--model.preset", "nano", "--max-tokens", "512", "--train.warmup_steps", "0",
                         "--eval.eval_freq", "4", "--eval.eval_iter", "1", "--out", str(out)], capsys)
    assert code == 2 and "the run finished and its metrics are in" in one_line(err)
    assert "final checkpoint was not written: no space left to write" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["tokens_seen"] == 512
    assert not list(out.glob("*checkpoint*")) and not list(out.glob(".*tmp"))  # no partial checkpoint


@pytest.mark.parametrize("record, expected", [({"interrupted": "x"}, "was interrupted (1 trial(s) did not finish)"),
                                              ({}, "has not finished"), ({"finished": "x"}, None)])
def test_export_says_when_the_sweep_has_no_final_answer_yet(record, expected, tmp_path, capsys):
    sweep = tmp_path / "results" / "s"
    sweep.mkdir(parents=True)
    rows = [{"trial_id": "t0", "status": "completed", "peak_lr": 1e-3, "best_val_loss": 5.0, "best_val_tokens": 512,
             "tokens_seen": 512, "wall_time_s": 1.0}]
    if "interrupted" in record:
        rows.append({**rows[0], "trial_id": "t1", "status": INTERRUPTED, "best_val_loss": 4.0, "tokens_seen": 256})
    res.save(sweep, pd.DataFrame(rows), pd.DataFrame(columns=res.CURVE_COLUMNS))
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "space": {"axes": {"peak_lr": {}}},
                                                  "base_config": nano_config().to_dict(), **record}))
    code = main(["export", "s", "--out", str(tmp_path / "best.yaml"), "--results-dir", str(tmp_path / "results")])
    said = capsys.readouterr().out
    assert code == 0 and load_config(tmp_path / "best.yaml").train.peak_lr == 1e-3  # t0: t1 never ranks
    if expected:
        assert f"warning: sweep s {expected}" in said
        assert ("--name s --resume" in said) == ("interrupted" in record)
    else:
        assert "warning" not in said


def test_a_sweep_stops_when_a_checkpoint_finds_the_disk_full_and_resume_finishes_it(tmp_path):
    # a 16 MB filesystem holds the sweep's records but not the nano trial's 39 MB checkpoint
    with tmpfs(tmp_path / "small", "16m") as mnt:
        space = tmp_path / "one.yaml"
        space.write_text(yaml.safe_dump({"name": "one", "axes": {"peak_lr": {"grid": [5e-3]}},
                                         "fixed": {"batch_size": 4, "warmup_steps": 2}}))
        base = [sys.executable, "-m", "hpsearch.cli", "sweep", "--name", "d", "--results-dir", str(mnt),
                "--no-dashboard"]
        cmd = [*base, "--space", str(space), "--mode", "grid", "--model", "nano", "--max-tokens-per-trial", "2048",
               "--eval-freq", "4", "--eval-iter", "1", "--checkpoint-every", "1", "--max-failures", "3"]
        # the trial waits 300 s for the stop; a driver that retried instead would still be running at 200 s
        full = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=200)
        err = full.stderr.strip().splitlines()[-1]
        assert full.returncode == 2, full.stderr[-3000:]
        assert err.startswith("hpsearch: error: sweep d stopped because the disk is full (trial "), err
        assert "no space left" in err.lower() and "no trial was retried" in err, err
        assert f"--name d --results-dir {mnt} --resume" in err
        # the one line only: Tune's, Optuna's and SQLAlchemy's tracebacks go to the sweep's log (issue 29)
        assert "Traceback" not in full.stderr and "Stop signal received" not in full.stderr, full.stderr[-3000:]
        assert f"details in {mnt / 'd' / 'sweep.log'}" in err
        subprocess.run(["mount", "-o", "remount,size=256m", str(mnt)], check=True)  # space is freed
        resumed = subprocess.run([*base, "--resume"], env=ENV, capture_output=True, text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        trials = pd.read_parquet(mnt / "d" / "trials.parquet")
        assert list(trials["status"]) == [COMPLETED] and trials["tokens_seen"].iloc[0] == 2048
        assert "finished" in json.loads((mnt / "d" / "sweep.json").read_text())
