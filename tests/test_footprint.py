"""A sweep's footprint and the CLI around it: checkpoints pruned once trials finish, `hpsearch ls`,
`hpsearch tensorboard` errors. A real sweep on a real Ray (nano, tiny budgets) and hand-built trees."""

import functools
import json
import os

import pandas as pd
import pytest

from helpers import sweep_options
from hpsearch.cli import main
from hpsearch.footprint import prune_checkpoints
from hpsearch.sweep import run_sweep

KB = 1024


options = functools.partial(sweep_options, max_tokens_per_trial=1024, checkpoint_every=1)


def checkpoints(tune_dir) -> dict[str, list[str]]:
    """Trial id -> its checkpoint directories' names."""
    out = {}
    for d in tune_dir.glob("train_trial_*"):
        trial_id = "_".join(d.name.split("_")[2:4])
        out[trial_id] = sorted(c.name for c in d.glob("checkpoint_*"))
    return out


def reports(tune_dir) -> dict[str, str]:
    return {d.name: (d / "result.json").read_text() for d in tune_dir.glob("train_trial_*")}


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """A finished 4-trial grid sweep that keeps the best checkpoint only: (results dir, outcome, log lines)."""
    results = tmp_path_factory.mktemp("results")
    lines = []
    out = run_sweep(options(results, name="pruned", keep_checkpoints=1), log=lines.append)
    return results, out, lines


# -- pruning at the end of a real sweep ----------------------------------------------------------
def test_a_finished_sweep_keeps_only_the_best_trials_checkpoints(finished):
    results, out, lines = finished
    tune_dir = results / "pruned" / "tune"
    assert set(out.trials["status"]) == {"completed"} and len(out.trials) == 4
    best = str(out.best["trial_id"])
    kept = checkpoints(tune_dir)
    assert set(kept) == set(out.trials["trial_id"])
    assert kept.pop(best)  # the best keeps its checkpoints
    assert all(names == [] for names in kept.values())  # every other finished trial lost them
    for d in tune_dir.glob("train_trial_*"):  # what the trial reported stays
        assert (d / "result.json").is_file() and (d / "params.json").is_file()
    record = json.loads((results / "pruned" / "sweep.json").read_text())["checkpoints"]
    assert record["pruned_trials"] == 3 and record["kept"] == [best] and record["keep"] == 1
    assert record["freed_bytes"] > 0
    line = [s for s in lines if s.startswith("pruned checkpoints")]
    assert line == [f"pruned checkpoints of 3 finished trials ({record['freed_bytes'] / 1e6:,.1f} MB freed; "
                    f"kept the best 1: {best})"]


def test_resume_of_a_pruned_finished_sweep_reruns_nothing(finished, capsys):
    results, out, _ = finished
    tune_dir = results / "pruned" / "tune"
    before, kept = reports(tune_dir), checkpoints(tune_dir)
    assert main(["sweep", "--name", "pruned", "--resume", "--results-dir", str(results)]) == 0
    assert reports(tune_dir) == before  # no trial reported again: none was rerun
    assert checkpoints(tune_dir) == kept  # and none wrote a checkpoint
    trials = pd.read_parquet(results / "pruned" / "trials.parquet")
    assert trials[["trial_id", "status", "best_val_loss"]].equals(out.trials[["trial_id", "status", "best_val_loss"]])
    assert "pruned checkpoints" not in capsys.readouterr().out  # nothing left to prune, nothing said


# -- pruning rules on a hand-built Tune directory ------------------------------------------------
TABLE = [  # trial id, status, best val loss
    ("aaaaa_00000", "completed", 3.0),
    ("aaaaa_00001", "completed", 3.5),
    ("aaaaa_00002", "early-stopped", 3.2),
    ("aaaaa_00003", "early-stopped", 4.0),
    ("aaaaa_00004", "diverged", float("nan")),
    ("aaaaa_00005", "errored", float("nan")),
    ("aaaaa_00006", "skipped-invalid", float("inf")),
    ("aaaaa_00007", "interrupted", 2.0),
]


def tune_tree(root, table=TABLE):
    """A Tune directory as a sweep leaves it: per trial result.json and two 10 KB checkpoints."""
    tune_dir = root / "tune"
    for i, (trial_id, _, _) in enumerate(table):
        d = tune_dir / f"train_trial_{trial_id}_{i}_peak_lr=0.001_2026-12-02_10-00-00"
        for c in ("checkpoint_000000", "checkpoint_000001"):
            (d / c).mkdir(parents=True)
            (d / c / "checkpoint.pt").write_bytes(b"x" * 10 * KB)
        (d / "result.json").write_text("{}\n")
    (tune_dir / "experiment_state-2026-12-02_10-00-00.json").write_text("{}")
    trials = pd.DataFrame(table, columns=["trial_id", "status", "best_val_loss"])
    return tune_dir, trials


def test_only_finished_trials_outside_the_best_k_lose_their_checkpoints(tmp_path):
    tune_dir, trials = tune_tree(tmp_path)
    trials = trials[trials["status"] != "interrupted"]  # a finished sweep
    lines = []
    pruned = prune_checkpoints(tune_dir, trials, keep=2, log=lines.append)
    left = checkpoints(tune_dir)
    assert pruned.kept == ["aaaaa_00000", "aaaaa_00002"]  # ranked: completed and early-stopped alike
    assert left["aaaaa_00000"] == left["aaaaa_00002"] == ["checkpoint_000000", "checkpoint_000001"]
    assert left["aaaaa_00007"] == ["checkpoint_000000", "checkpoint_000001"]  # not in the table: untouched
    for trial_id in ("aaaaa_00001", "aaaaa_00003", "aaaaa_00004", "aaaaa_00005", "aaaaa_00006"):
        assert left[trial_id] == [], trial_id
    assert sorted(pruned.trials) == ["aaaaa_00001", "aaaaa_00003", "aaaaa_00004", "aaaaa_00005", "aaaaa_00006"]
    assert pruned.freed_bytes == 5 * 2 * 10 * KB
    assert lines == ["pruned checkpoints of 5 finished trials (0.1 MB freed; kept the best 2: "
                     "aaaaa_00000, aaaaa_00002)"]
    assert all((d / "result.json").is_file() for d in tune_dir.iterdir() if d.is_dir())

    again = prune_checkpoints(tune_dir, trials, keep=0, log=lines.append)  # keep 0: the best go too
    assert sorted(again.trials) == ["aaaaa_00000", "aaaaa_00002"] and again.kept == []
    assert sum(map(len, checkpoints(tune_dir).values())) == 2  # the trial outside the table


def test_an_interrupted_sweep_keeps_what_resume_or_the_final_ranking_needs(tmp_path):
    tune_dir, trials = tune_tree(tmp_path)
    pruned = prune_checkpoints(tune_dir, trials, keep=1, log=lambda line: None)
    left = checkpoints(tune_dir)
    # the ranking is not final while a trial is unfinished: only trials that can never rank are pruned
    assert sorted(pruned.trials) == ["aaaaa_00004", "aaaaa_00005", "aaaaa_00006"]
    assert left["aaaaa_00007"] == ["checkpoint_000000", "checkpoint_000001"]  # --resume continues it
    for trial_id in ("aaaaa_00000", "aaaaa_00001", "aaaaa_00002", "aaaaa_00003"):
        assert len(left[trial_id]) == 2, trial_id


def test_pruning_never_follows_symlinks_nor_touches_uri_storage(tmp_path):
    outside = tmp_path / "outside"
    (outside / "checkpoint_000000").mkdir(parents=True)
    (outside / "checkpoint_000000" / "keep.pt").write_bytes(b"y" * KB)
    tune_dir, trials = tune_tree(tmp_path / "sweep", TABLE[:2])
    loser = next(tune_dir.glob("train_trial_aaaaa_00001_*"))
    os.symlink(outside / "checkpoint_000000", loser / "checkpoint_000009")  # a linked checkpoint
    os.symlink(outside, tune_dir / "train_trial_aaaaa_00001_9_linked_2026-12-02_10-00-00")  # a linked trial dir
    pruned = prune_checkpoints(tune_dir, trials, keep=1, log=lambda line: None)
    assert pruned.trials == ["aaaaa_00001"] and pruned.freed_bytes == 2 * 10 * KB
    assert (outside / "checkpoint_000000" / "keep.pt").is_file()
    assert (loser / "checkpoint_000009").is_symlink()

    lines = []
    remote = prune_checkpoints("s3://bucket/sweeps/x", trials, keep=0, log=lines.append)
    assert remote.trials == [] and lines == ["checkpoints not pruned: storage s3://bucket/sweeps/x is not a "
                                             "local directory"]
    assert next(tune_dir.glob("train_trial_aaaaa_00000_*")).joinpath("checkpoint_000000").is_dir()


def test_keep_checkpoints_is_checked_at_parse_time(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--keep-checkpoints", "-1"])
    assert exc.value.code == 2
    assert "--keep-checkpoints: must be >= 0, got -1" in capsys.readouterr().err


# -- hpsearch ls ---------------------------------------------------------------------------------
def sweep_json(d, **keys):
    d.mkdir(parents=True)
    meta = {"name": d.name, "mode": "optuna-asha", "space": {"name": "demo", "axes": {}}, "num_samples": 6,
            "options": {"storage": None}, "started": "2026-12-02T09:00:00+00:00", **keys}
    (d / "sweep.json").write_text(json.dumps(meta))


def test_ls_lists_each_sweep_with_its_state(finished, capsys):
    results, out, _ = finished
    sweep_json(results / "cut", interrupted="2026-12-02T09:10:00+00:00")
    pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["completed", "early-stopped", "interrupted"],
                  "best_val_loss": [3.25, 3.5, 2.0]}).to_parquet(results / "cut" / "trials.parquet")
    sweep_json(results / "never")  # recorded, then failed before Tune saved anything
    sweep_json(results / "live")
    (results / "live" / "tune").mkdir()
    state = {"trial_data": [[json.dumps({"status": s}), "{}"] for s in ("TERMINATED", "RUNNING", "PENDING")]}
    (results / "live" / "tune" / "experiment_state-2026-12-02_09-00-00.json").write_text(json.dumps(state))
    (results / "not-a-sweep").mkdir()  # e.g. `hpsearch pretrain` output: no sweep.json, not listed

    assert main(["ls", "--results-dir", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert lines[0].split() == ["NAME", "MODE", "SPACE", "TRIALS", "BEST", "VAL", "LOSS", "STATE"]
    assert set(rows) == {"pruned", "cut", "never", "live"}
    assert rows["pruned"] == ["pruned", "grid", "smoke", "4/4", f"{out.best['best_val_loss']:.4f}", "finished"]
    assert rows["cut"] == ["cut", "optuna-asha", "demo", "2/6", "3.2500", "interrupted"]
    assert rows["never"] == ["never", "optuna-asha", "demo", "0/6", "-", "failed-before-start"]
    assert rows["live"] == ["live", "optuna-asha", "demo", "1/6", "-", "running"]


def test_ls_of_an_empty_or_missing_directory(tmp_path, capsys):
    assert main(["ls", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no sweeps in {tmp_path}"
    assert main(["ls", "--results-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"hpsearch: error: no directory {tmp_path / 'nope'}")


# -- hpsearch tensorboard ------------------------------------------------------------------------
def test_tensorboard_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    assert main(["tensorboard", "nope", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"hpsearch: error: no sweep named 'nope' in {tmp_path.resolve()}; list them with "
                          "`hpsearch ls")

    sweep_json(tmp_path / "s")
    assert main(["tensorboard", "s", "--results-dir", str(tmp_path)]) == 0  # prints the command
    assert capsys.readouterr().out.strip() == f"tensorboard --logdir {tmp_path.resolve() / 's' / 'tune'}"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no tensorboard executable to be found
    assert main(["tensorboard", "s", "--results-dir", str(tmp_path), "--launch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "needs TensorBoard, which is not installed: pip install tensorboard" in captured.err


def test_version():
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
