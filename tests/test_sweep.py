"""Sweeps on a real Ray (one per session, 127.0.0.1), real Optuna, the nano model, tiny budgets."""

import json
import math

import optuna
import pandas as pd
import pytest
import yaml

from hpsearch.cli import main
from hpsearch.sweep import SweepOptions, run_sweep
from trainables.config import load_config
from trainables.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("ray_session")


def quick(tmp_path, **kw) -> SweepOptions:
    """Options for a sweep of nano trials of a few hundred tokens each."""
    base = dict(model="nano", max_tokens_per_trial=512, eval_freq=2, eval_iter=1, results_dir=str(tmp_path),
                dashboard=False, verbose=0, cpus_per_trial=1)
    return SweepOptions(**{**base, **kw})


def space_file(tmp_path, axes: dict, fixed: dict | None = None, name="t") -> str:
    f = tmp_path / f"{name}.yaml"
    fixed = {"warmup_steps": 1, "initial_lr": 1e-5, "min_lr": 1e-5, **(fixed or {})}
    f.write_text(yaml.safe_dump({"name": name, "axes": axes,
                                 "fixed": {k: v for k, v in fixed.items() if k not in axes}}))
    return str(f)


def test_grid_runs_every_point_and_exports_a_runnable_winner(tmp_path, capsys):
    out = run_sweep(quick(tmp_path, space="smoke", mode="grid", name="grid", max_tokens_per_trial=1024), log=print)
    trials = out.trials
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert set(zip(trials["peak_lr"], trials["batch_size"])) == {(5e-4, 4), (5e-4, 8), (5e-3, 4), (5e-3, 8)}
    assert trials["best_val_loss"].map(math.isfinite).all()
    assert (trials["tokens_seen"] > 0).all() and (trials["cpus"] == 1).all()
    # the best is the lowest best-over-training val loss, not the last report
    assert out.best["best_val_loss"] == trials["best_val_loss"].min()
    d = tmp_path / "grid"
    for f in ("trials.parquet", "trials.csv", "curves.parquet", "sweep.json", "space.yaml", "best_config.yaml"):
        assert (d / f).is_file(), f
    curves = pd.read_parquet(d / "curves.parquet")
    assert set(curves["trial_id"]) == set(trials["trial_id"])
    assert list(curves.columns) == ["trial_id", "step", "epoch", "tokens_seen", "lr", "train_loss", "val_loss"]
    assert pd.read_parquet(d / "trials.parquet").equals(trials)

    # best_config.yaml is the winner's config and `hpsearch pretrain` runs it
    best = load_config(d / "best_config.yaml")
    assert best.train.peak_lr == out.best["peak_lr"] and best.train.batch_size == out.best["batch_size"]
    assert best.train.warmup_steps == 2 and best.preset == "nano"  # the space's fixed values are kept
    assert main(["export", "grid", "--results-dir", str(tmp_path), "--out", str(tmp_path / "w.yaml")]) == 0
    assert load_config(tmp_path / "w.yaml") == best
    summary = pretrain(best, log=None)
    assert summary.status == "completed" and summary.tokens_seen == out.best["tokens_seen"]
    assert summary.best_val_loss == pytest.approx(out.best["best_val_loss"], rel=1e-4)  # same run, same loss

    # litgpt export: its YAML shape, provenance in a sidecar; existing files are not overwritten
    assert main(["export", "grid", "--results-dir", str(tmp_path), "--format", "litgpt",
                 "--out", str(tmp_path / "lit.yaml")]) == 0
    lit = yaml.safe_load((tmp_path / "lit.yaml").read_text())
    assert lit["optimizer"] == {"class_path": "torch.optim.AdamW",
                                "init_args": {"lr": best.train.peak_lr, "weight_decay": best.train.weight_decay}}
    assert lit["train"]["global_batch_size"] == best.train.batch_size and lit["train"]["max_seq_length"] == 32
    side = yaml.safe_load((tmp_path / "lit.provenance.yaml").read_text())
    assert side["sweep"] == "grid" and side["trial"] == out.best["trial_id"]
    capsys.readouterr()
    assert main(["export", "grid", "--results-dir", str(tmp_path), "--out", str(tmp_path / "w.yaml")]) == 2
    assert "already exists" in capsys.readouterr().err

    assert main(["results", "grid", "--results-dir", str(tmp_path), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "4 trials: 4 completed" in printed and out.best["trial_id"] in printed

    from hpsearch.report import write_report

    index = write_report(d, log=None)
    assert index.is_file() and (d / "report" / "curves.png").stat().st_size > 1000


def test_optuna_asha_prunes_and_tells_optuna(tmp_path):
    space = space_file(tmp_path, {"peak_lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [4]}})
    out = run_sweep(quick(tmp_path, space=space, mode="optuna-asha", name="asha", num_samples=8, seed=1,
                          max_tokens_per_trial=2048, grace_tokens=256, reduction_factor=2.0,
                          max_concurrent=2), log=print)
    counts = out.trials["status"].value_counts().to_dict()
    assert counts.get("early-stopped", 0) >= 1 and counts.get("completed", 0) >= 1, counts
    stopped = out.trials[out.trials["status"] == "early-stopped"]
    assert (stopped["tokens_seen"] < 2048).all()
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{tmp_path / 'asha' / 'optuna.db'}")
    states = pd.Series([t.state.name for t in study.trials]).value_counts().to_dict()
    assert states.get("PRUNED", 0) == counts.get("early-stopped", 0)
    assert states.get("COMPLETE", 0) == counts.get("completed", 0)
    assert "RUNNING" not in states


@pytest.mark.parametrize("mode", ["random", "quasi-random"])
def test_sampling_modes_are_reproducible_with_a_seed(tmp_path, mode):
    space = space_file(tmp_path, {"peak_lr": {"loguniform": [1e-4, 1e-2]}, "dropout": {"uniform": [0.0, 0.2]}})

    def sampled(name, seed):
        out = run_sweep(quick(tmp_path, space=space, mode=mode, name=name, num_samples=3, seed=seed,
                              max_concurrent=2), log=lambda *_: None)
        return sorted(out.trials[["peak_lr", "dropout"]].round(12).values.tolist())

    first, again, other = sampled("a", 5), sampled("b", 5), sampled("c", 6)
    assert first == again and first != other
    assert len({tuple(r) for r in first}) == 3


def test_invalid_combinations_and_divergence_are_counted_not_crashed(tmp_path):
    space = space_file(tmp_path, {"peak_lr": {"grid": [5e-3, 1000.0]}, "min_lr": {"grid": [1e-5, 1e-2]}},
                       fixed={"batch_size": 4})
    out = run_sweep(quick(tmp_path, space=space, mode="grid", name="bad"), log=print)
    by = {(r.peak_lr, r.min_lr): r for r in out.trials.itertuples()}
    assert by[(5e-3, 1e-5)].status == "completed"
    assert by[(5e-3, 1e-2)].status == "skipped-invalid" and "min_lr" in by[(5e-3, 1e-2)].error
    assert by[(1000.0, 1e-5)].status == "diverged" and "nan" in by[(1000.0, 1e-5)].error
    assert by[(1000.0, 1e-2)].status == "diverged"
    assert out.best["peak_lr"] == 5e-3  # diverged and skipped trials never win
    meta = json.loads((tmp_path / "bad" / "sweep.json").read_text())
    assert "1 completed, 2 diverged, 1 skipped-invalid" in meta["summary"]


def test_diverged_trials_fail_in_optuna_instead_of_staying_running(tmp_path):
    space = space_file(tmp_path, {"peak_lr": {"choice": [1000.0]}}, fixed={"batch_size": 4})
    run_sweep(quick(tmp_path, space=space, mode="optuna-asha", name="div", num_samples=2), log=print)
    study = optuna.load_study(study_name="div", storage=f"sqlite:///{tmp_path / 'div' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--name", "../escape"], "is not allowed"),
    (["sweep", "--name", "a/b"], "is not allowed"),
    (["sweep", "--name", "never-ran", "--resume"], "no sweep named 'never-ran'"),
    (["sweep", "--space", "seed-gird"], "did you mean 'seed-grid'"),
    (["sweep", "--space", "seed-continuous", "--mode", "grid"], "grid mode needs grid/choice axes"),
    (["sweep", "--gpus-per-trial", "1", "--smoke-test"], "no node can run a trial with 1 CPU(s) and 1 GPU(s)"),
    (["sweep", "--cpus-per-trial", "64", "--smoke-test"], "the largest node has 2 CPUs"),
    (["results", "nothing-here"], "no sweep at"),
    (["export", "nothing-here", "--out", "x.yaml"], "no sweep at"),
])
def test_bad_sweep_requests_fail_with_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
