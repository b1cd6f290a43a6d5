"""Faults: crashed trials, a SIGKILLed driver, atomic writes, exports with nothing to export."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import sweep_options
from hpsearch.cli import main
from hpsearch.sweep import run_sweep
from trainables.files import atomic_write_text

pytestmark = pytest.mark.usefixtures("ray_session")


options = functools.partial(sweep_options, max_tokens_per_trial=1024, checkpoint_every=1)


def test_crashed_trials_retry_from_their_checkpoint(tmp_path):
    # every trial crashes once at step 3, after its step-2 checkpoint; one retry finishes it
    out = run_sweep(options(tmp_path, name="retry", fault_at_step=3, max_failures=1), log=print)
    assert set(out.trials["status"]) == {"completed"} and (out.trials["tokens_seen"] == 1024).all()
    for trial_dir in (tmp_path / "retry" / "tune").glob("train_trial_*"):
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        steps = [r["step"] for r in results]
        assert steps[0] == 2 and steps[-1] == max(steps)  # resumed after step 2, not restarted at 0
        assert steps.count(2) == 1


def test_trials_that_keep_crashing_are_marked_errored_with_their_message(tmp_path):
    out = run_sweep(options(tmp_path, name="err", fault_at_step=1, max_failures=1), log=print)
    assert set(out.trials["status"]) == {"errored"}
    assert out.trials["error"].str.contains("injected fault at step 2").all()
    assert (tmp_path / "err" / "trials.parquet").is_file()  # the table is written all the same
    assert main(["export", "err", "--results-dir", str(tmp_path), "--out", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()


def _recorded_finished(tune_dir: Path) -> dict[str, list[str]]:
    """Trials that Tune's saved experiment state records as TERMINATED -> their result.json lines.

    A trial's last report reaches result.json before Tune saves the state that marks it TERMINATED
    (every few seconds); --resume goes by that state, so a trial counts as finished once the state
    says so and its result.json holds its last report. Files caught mid-upload read as not yet.
    """
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    done = {}
    try:
        trials = [json.loads(state) for state, _ in json.loads(states[-1].read_text())["trial_data"]] if states else []
        for t in trials:
            results = list(tune_dir.glob(f"train_trial_{t['trial_id']}_*/result.json"))
            lines = results[0].read_text().splitlines() if t["status"] == "TERMINATED" and results else []
            if lines and json.loads(lines[-1])["training_complete"]:
                done[t["trial_id"]] = lines
    except (json.JSONDecodeError, KeyError):
        return {}
    return done


def _finished_now(tune_dir: Path) -> dict[str, list[str]]:
    """Trials whose last report says training is complete -> their result.json lines."""
    done = {}
    for f in tune_dir.glob("train_trial_*/result.json"):
        lines = f.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("training_complete"):
            done[json.loads(lines[-1])["trial_id"]] = lines
    return done


def test_a_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "hpsearch.cli", "sweep", "--space", "smoke", "--mode", "grid", "--model", "nano",
           "--name", "killed", "--results-dir", str(tmp_path), "--max-tokens-per-trial", "2048",
           "--eval-freq", "2", "--eval-iter", "1", "--max-concurrent", "1", "--no-dashboard",
           "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tune_dir = tmp_path / "killed" / "tune"
    # one trial at a time: when the first is recorded finished, three are still to run, so the kill
    # always lands mid-sweep (a bound, not a timing: only a hung sweep reaches it)
    deadline = time.monotonic() + 600
    try:
        while not (before := _recorded_finished(tune_dir)):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no trial was recorded finished in 600 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
        proc.wait()
    assert not (tmp_path / "killed" / "trials.parquet").exists()  # killed before it could write results

    assert main(["sweep", "--name", "killed", "--resume", "--results-dir", str(tmp_path)]) == 0
    trials = pd.read_parquet(tmp_path / "killed" / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    after = _finished_now(tune_dir)
    for trial_id, lines in before.items():
        assert after[trial_id] == lines  # not rerun: its reports are byte for byte the same
        row = trials[trials["trial_id"] == trial_id].iloc[0]
        last = json.loads(lines[-1])
        assert row["best_val_loss"] == last["best_val_loss"] and row["tokens_seen"] == last["tokens_seen"]


def test_atomic_writes_keep_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "best.yaml"
    atomic_write_text(target, "train: {peak_lr: 0.001}\n")

    class Boom(Exception):
        pass

    def failing(tmp):
        tmp.write_text("train: {pea")  # half written
        raise Boom

    from trainables.files import atomic_write

    with pytest.raises(Boom):
        atomic_write(target, failing)
    assert yaml.safe_load(target.read_text()) == {"train": {"peak_lr": 0.001}}
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]  # no temp file left behind
