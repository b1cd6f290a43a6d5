"""Hostile and mistaken input, round 3 (issue 29): special files as spaces and configs, two sweeps of
one name at once, options changed on --resume, errored trials, an interrupted transfer study. Each case:
one line, exit status 2 (130 for an interrupt), nothing already computed lost, no hang.
(The table of all cases: bench/BAD_INPUT.md, written by bench/bad_input_matrix.py.)"""

import os

import pytest

from helpers import run_cli

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1 and len(err) < 2100, err[:3000]
    return err


# -- item 3: only regular files are read as spaces and configs ------------------------------------------

@pytest.mark.parametrize("argv", [["spaces", "F"], ["sweep", "--space", "F"], ["sweep", "--config", "F"],
                                  ["pretrain", "--config", "F"]])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_as_space_or_config_is_refused_without_reading_it(tmp_path, capsys, argv, special):
    if special == "fifo":
        special = str(tmp_path / "space.yaml")
        os.mkfifo(special)  # no writer: opening it would block forever
    argv = [special if a == "F" else a for a in argv]
    if argv[0] == "sweep":
        argv += ["--results-dir", str(tmp_path / "r"), "--no-dashboard"]
    code, err = run_cli(argv, capsys)
    kind = "character device" if special == "/dev/zero" else "FIFO"
    assert code == 2 and f"{special} is not a regular file (a {kind}); hpsearch reads spaces and configs only " \
                         "from regular files" in one_line(err)
    assert "does not exist" not in err and not (tmp_path / "r").exists()


# -- item 12: --resume refuses changed options ------------------------------------------------------------

def _recorded_sweep(results, name="r", **options):
    """results/NAME: a sweep.json of a sweep that started (Tune state present), nothing else."""
    import json
    from dataclasses import asdict

    from helpers import sweep_options

    d = results / name
    (d / "tune").mkdir(parents=True)
    (d / "tune" / "experiment_state-x.json").write_text("{}")
    opts = sweep_options(results, name=name, **options)
    (d / "sweep.json").write_text(json.dumps({"name": name, "options": asdict(opts),
                                              "space": {"name": "smoke", "axes": {}}}))
    return d


def test_resume_refuses_changed_options_naming_each_with_both_values(tmp_path, capsys):
    corpus = tmp_path / "a.txt"
    corpus.write_text("some text " * 100)
    d = _recorded_sweep(tmp_path / "results", data=str(corpus), num_samples=4)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    code, err = run_cli(["sweep", "--name", "r", "--resume", "--results-dir", str(tmp_path / "results"),
                         "--model", "small", "--data", str(tmp_path / "b.txt"), "--num-samples", "8",
                         "--max-tokens-per-trial", "999", "--no-dashboard"], capsys)
    assert code == 2 and one_line(err).startswith("hpsearch: error: --resume continues sweep 'r' as it was recorded")
    for part in ("--model nano (recorded) vs small (given)", f"--data {corpus} (recorded) vs {tmp_path / 'b.txt'} (given)", "--num-samples 4 (recorded) vs 8",
                 "--max-tokens-per-trial 512 (recorded) vs 999 (given)"):
        assert part in err, err
    assert "drop these options to resume, or start a new sweep under another --name" in err
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_resume_accepts_the_recorded_values_and_the_options_that_say_how_it_runs(tmp_path):
    from hpsearch.plan import check_unchanged
    from hpsearch.record import read_record

    from helpers import sweep_options

    d = _recorded_sweep(tmp_path / "results", model="nano", num_samples=4)
    meta = read_record(d / "sweep.json")
    same = sweep_options(tmp_path / "results", name="r", resume=True, model="nano", num_samples=4,
                         max_concurrent=1, verbose=1, space="smoke")
    check_unchanged(same, meta, "r")  # raises nothing
    check_unchanged(sweep_options(tmp_path / "elsewhere", name="r", resume=True), meta, "r")


# -- item 1: two sweeps of one name --------------------------------------------------------------------

def _one_trial_space(tmp_path):
    import yaml

    space = tmp_path / "one.yaml"
    space.write_text(yaml.safe_dump({"name": "one", "axes": {"peak_lr": {"grid": [5e-3]}},
                                     "fixed": {"batch_size": 4, "warmup_steps": 2, "initial_lr": 1e-5,
                                               "min_lr": 1e-5}}))
    return space


def test_a_claimed_name_refuses_a_new_sweep_in_another_process(tmp_path):
    import subprocess
    import sys

    from hpsearch.lock import claim

    results = tmp_path / "results"
    with claim(results / "x", "x", resume=False):  # as a running sweep holds it
        done = subprocess.run([sys.executable, "-m", "hpsearch.cli", "sweep", "--name", "x", "--results-dir",
                               str(results), "--space", "smoke", "--model", "nano", "--no-dashboard"],
                              env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        err = one_line(done.stderr.strip())
        assert f"sweep 'x' is in use: another hpsearch process (pid {os.getpid()}) is running it in " \
               f"{results / 'x'} and holds sweep.lock" in err and "choose another --name" in err
        assert sorted(p.name for p in (results / "x").iterdir()) == ["sweep.lock"]  # nothing of the second
    assert not (results / "x").exists()  # released: the lock file and the empty directory go


def test_a_second_sweep_of_one_name_is_refused_while_the_first_runs_then_resume_works(tmp_path, capsys):
    import subprocess
    import sys
    import time

    import pandas as pd

    from hpsearch.lock import held_by

    results, space = tmp_path / "results", _one_trial_space(tmp_path)
    base = [sys.executable, "-m", "hpsearch.cli", "sweep", "--name", "c", "--results-dir", str(results),
            "--no-dashboard"]
    cmd = [*base, "--space", str(space), "--mode", "grid", "--model", "nano", "--max-tokens-per-trial", "4096",
           "--eval-freq", "2", "--eval-iter", "1"]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # a bound for a hung start, not a timing
        while held_by(results / "c") is None:
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the first sweep never claimed its name"
            time.sleep(0.05)
        for argv in (["sweep", "--name", "c", "--resume"], cmd[3:]):  # a resume, and the same sweep again
            code, err = run_cli([*argv, "--results-dir", str(results), "--no-dashboard"], capsys)
            assert code == 2 and f"sweep 'c' is in use: another hpsearch process (pid {first.pid})" in one_line(err)
        assert first.poll() is None, "the first sweep ended before the second was tried"
        assert first.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    assert held_by(results / "c") is None and not (results / "c" / "sweep.lock").exists()
    trials = pd.read_parquet(results / "c" / "trials.parquet")
    assert list(trials["status"]) == ["completed"]
    # a damaged table names --resume, which rebuilds it from Tune's records (item 12)
    (results / "c" / "trials.parquet").write_bytes(b"PAR1 truncated")
    code, err = run_cli(["results", "c", "--results-dir", str(results)], capsys)
    assert code == 2 and f"--name c --results-dir {results} --resume` (finished trials are not trained " \
                         "again)" in one_line(err)
    resumed = subprocess.run([*base, "--resume"], env=ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pd.read_parquet(results / "c" / "trials.parquet").equals(trials)


# -- item 7: errored trials: one line each, tracebacks in the log, exit status 3 ----------------------------

INJECT = """
import sys
from hpsearch.cli import main
from hpsearch.options import SweepOptions
plain = SweepOptions.from_namespace.__func__
# the project's own fault hook (API only): every trial crashes at its step-3 evaluation unless it ends before
SweepOptions.from_namespace = classmethod(lambda cls, args, **kw: plain(cls, args, fault_at_step=3, **kw))
sys.exit(main(sys.argv[1:]))
"""


def test_errored_trials_print_one_line_each_keep_tracebacks_in_the_log_and_exit_3(tmp_path):
    import subprocess
    import sys

    import pandas as pd
    import yaml

    space = tmp_path / "b.yaml"  # 512 tokens: batch 4 trains 4 steps (crashes at 3), batch 8 two (completes)
    space.write_text(yaml.safe_dump({"name": "b", "axes": {"batch_size": {"grid": [4, 8]}},
                                     "fixed": {"warmup_steps": 0, "initial_lr": 1e-5, "min_lr": 1e-5}}))
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-c", INJECT, "sweep", "--name", "e", "--results-dir", str(results),
                           "--space", str(space), "--mode", "grid", "--model", "nano", "--max-tokens-per-trial",
                           "512", "--eval-freq", "1", "--eval-iter", "1", "--max-failures", "0", "--no-dashboard"],
                          env=ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 3, done.stderr[-3000:]
    trials = pd.read_parquet(results / "e" / "trials.parquet").set_index("batch_size")
    assert trials.loc[8, "status"] == "completed" and trials.loc[4, "status"] == "errored"
    assert "injected fault at step 3" in trials.loc[4, "error"]
    assert "Traceback" not in done.stdout + done.stderr and not done.stderr.strip(), done.stderr[-3000:]
    errored_id = trials.loc[4, "trial_id"]
    progress = [ln for ln in done.stdout.splitlines() if f"{errored_id} errored" in ln]
    assert len(progress) == 1 and "RuntimeError: injected fault at step 3" in progress[0]
    assert (f"1 trial(s) errored ({errored_id}): their error column in trials.parquet says why; tracebacks in "
            f"{results / 'e' / 'sweep.log'}") in done.stdout
    assert (results / "e" / "best_config.yaml").is_file()  # the winner is written all the same
    logged = (results / "e" / "sweep.log").read_text()
    assert "Traceback (most recent call last)" in logged and "injected fault at step 3" in logged


# -- item 10: an interrupted transfer study concludes nothing -------------------------------------------------

def test_ctrl_c_in_a_transfer_study_exits_130_concludes_nothing_and_names_the_resume(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "hpsearch.cli", "transfer", "--name", "t", "--results-dir", str(results),
           "--widths", "32,64", "--lrs", "1e-3,4e-3,1.6e-2", "--seeds", "0", "--model", "nano",
           "--max-tokens-per-trial", "65536", "--eval-freq", "2", "--eval-iter", "1", "--no-dashboard"]
    log = tmp_path / "transfer.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300  # a bound for a hung start, not a timing
    while not any(f.stat().st_size for f in (results / "t" / "tune").glob("*/result.json")):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no trial reported"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    assert proc.wait(timeout=300) == 130, log.read_text()[-3000:]
    said = log.read_text()
    last = said.strip().splitlines()[-1]
    assert last.startswith("hpsearch: interrupted: the study was interrupted (") and \
        f"finish it with `hpsearch transfer --name t --results-dir {results} --resume`" in last
    for noise in ("Traceback", "Tuner.restore", "Stop signal received", "FileNotFoundError", "octaves", "moved nan"):
        assert noise not in said, said[-3000:]
    assert not any((results / "t" / f).exists() for f in ("transfer.json", "transfer.csv", "transfer.png"))
    trials = pd.read_parquet(results / "t" / "trials.parquet")
    # a trial may finish between the first report and the signal reaching the driver; what the study concludes
    # is nothing either way (no transfer files above), and what was cut off is marked as such
    assert "interrupted" in set(trials["status"]) and set(trials["status"]) <= {"interrupted", "completed"}, trials
    # trials that never started keep their grid point (not NaN): the table says what is left to run
    assert trials[["parametrization", "emb_dim", "peak_lr"]].notna().all().all(), trials
    assert "Stop signal received" in (results / "t" / "sweep.log").read_text()  # Tune's notice, in the log


# -- item 2: a resume names every trial the sweep had ---------------------------------------------------------

def test_resume_closes_and_names_an_optuna_trial_that_no_tune_state_holds(tmp_path):
    """What a hard stop leaves (a full disk's last Tune snapshot not written, a killed driver): Optuna was
    asked for a trial that Tune's saved state does not hold, so --resume never runs it. It must not stay
    RUNNING in optuna.db forever nor go unmentioned. (The full-disk stop itself: test_hardening.py.)"""
    import json
    import subprocess
    import sys

    import optuna

    results = tmp_path / "results"
    base = [sys.executable, "-m", "hpsearch.cli", "sweep", "--name", "o", "--results-dir", str(results),
            "--no-dashboard"]
    first = subprocess.run([*base, "--space", "smoke", "--mode", "optuna-asha", "--num-samples", "1", "--model", "nano",
                            "--max-tokens-per-trial", "1024", "--eval-freq", "2", "--eval-iter", "1"],
                           env=ENV, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    storage = f"sqlite:///{results / 'o' / 'optuna.db'}"
    study = optuna.load_study(study_name="o", storage=storage)
    lost = study.ask(study.trials[0].distributions)  # RUNNING, as a trial asked for just before the stop
    resumed = subprocess.run([*base, "--resume"], env=ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = next(ln for ln in resumed.stdout.splitlines() if "Optuna trial(s) were started" in ln)
    assert line.startswith(f"1 Optuna trial(s) were started before the sweep stopped but are in no saved Tune "
                           f"state, so they never trained and are in no table (#{lost.number} {{'peak_lr': ")
    assert "marked FAIL in optuna.db" in line
    trials = optuna.load_study(study_name="o", storage=storage).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert trials[lost.number].state == optuna.trial.TrialState.FAIL and "hpsearch_stale" in trials[lost.number].user_attrs
    assert line in json.loads((results / "o" / "sweep.json").read_text())["skipped"]
    assert "note: a resumed optuna-asha sweep starts ASHA's rungs empty" in resumed.stdout  # said, not hidden


def test_a_workers_sigterm_exit_in_a_finalizer_prints_nothing_other_unraisables_still_print():
    """Ray stops a trial's worker with SIGTERM, raising SystemExit; inside a finalizer Python would print it
    as "Exception ignored" with a traceback, which reached the driver's stderr after a sweep that succeeded."""
    import subprocess
    import sys

    script = """
import gc
from trainables.tune_trainable import quiet_sigterm_exits
quiet_sigterm_exits(); quiet_sigterm_exits()
class Exits:
    def __del__(self):
        raise SystemExit(1)
class Breaks:
    def __del__(self):
        raise ValueError("a real bug")
Exits(); Breaks(); gc.collect()
print("alive")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "alive"
    assert "SystemExit" not in done.stderr and "ValueError: a real bug" in done.stderr
