"""Sweeps on a real Ray (one per session, 127.0.0.1), real Optuna, the nano model, tiny budgets."""

import functools
import html
import json
import math
import re

import optuna
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from helpers import heavy_imports
from helpers import sweep_options
from hpsearch.cli import main
from hpsearch.results import summary_line
from hpsearch.sweep import run_sweep
from trainables.config import load_config
from trainables.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("ray_session")


quick = functools.partial(sweep_options, space="demo", mode="optuna-asha", cpus_per_trial=1)


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
    # reading a finished sweep's results imports neither torch nor Ray (tests/test_light.py: the others)
    assert heavy_imports(["results", "grid", "--results-dir", str(tmp_path)]) == ([], 0)
    assert heavy_imports(["ls", "--results-dir", str(tmp_path)]) == ([], 0)

    from hpsearch.report import write_report

    index = write_report(d, log=None)
    assert index == d / "report" / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "<title>grid — hpsearch report</title>" in page and "<h1>Sweep grid <small>(grid)</small></h1>" in page
    assert f"<p>{html.escape(summary_line(trials))}</p>" in page
    # the best-trials table: every trial, best first, with its loss and its point of the grid
    table = [row.split("</td><td>") for row in re.findall(r"<tr><td>(.*?)</td></tr>", page)]
    ranked = trials.sort_values(["best_val_loss", "trial_id"])
    assert [r[0] for r in table] == ranked["trial_id"].tolist() and {r[1] for r in table} == {"completed"}
    assert [(float(r[2]), float(r[3]), int(r[4])) for r in table] == \
        [(round(t.best_val_loss, 4), t.peak_lr, t.batch_size) for t in ranked.itertuples()]
    # every figure the page shows is beside it and is a drawn image, not an empty canvas
    figures = re.findall(r'<img src="([^"]+)"', page)
    assert {"curves.png", "lr_schedule.png", "axis_peak_lr.png", "axis_batch_size.png"} <= set(figures)
    assert sorted(p.name for p in index.parent.glob("*.png")) == sorted(figures)
    for name in figures:
        pixels = imread(index.parent / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels[..., :3].std() > 0.01, name


def creation_order(tune_dir) -> list[str]:
    """Trial ids in the order Tune created them: it names each trial's directory TRAINABLE_ID_N_..."""
    numbered = {}
    for d in tune_dir.glob("train_trial_*"):
        _, _, trial_id, n, *_ = d.name.split("_")
        numbered[int(n)] = trial_id
    assert sorted(numbered) == list(range(1, len(numbered) + 1)), sorted(p.name for p in tune_dir.iterdir())
    return [numbered[n] for n in sorted(numbered)]


def test_optuna_asha_prunes_and_tells_optuna(tmp_path):
    # One trial at a time, so every ASHA decision follows from the order Optuna samples in (fixed by
    # the seed), never from which of two running trials reports first. Two learning rates, far apart
    # in loss at the one rung (512 tokens; rf 8 puts the next at 4096, past max_t): GOOD learns,
    # USELESS (the floor lr) does not. With rf 8 the cutoff is the 87.5th percentile of the losses
    # recorded at the rung, so a USELESS trial that comes after a GOOD one is stopped there, and a
    # GOOD one never is (it ties or beats every loss recorded).
    # No point is trained twice, so each LR comes with three values of max_norm, which cannot change the
    # loss at the rung: clipping starts when the 8-step warmup ends, after the rung (step 4).
    good, useless = 5e-3, 1e-5
    space = space_file(tmp_path, {"peak_lr": {"choice": [good, useless]}, "max_norm": {"choice": [0.5, 1.0, 2.0]}},
                       fixed={"batch_size": 4, "warmup_steps": 8})
    out = run_sweep(quick(tmp_path, space=space, mode="optuna-asha", name="asha", num_samples=6, seed=10,
                          max_tokens_per_trial=2048, grace_tokens=512, reduction_factor=8.0,
                          max_concurrent=1), log=print)
    assert len(out.trials) == 6 and len(set(zip(out.trials["peak_lr"], out.trials["max_norm"]))) == 6
    trials = out.trials.set_index("trial_id").loc[creation_order(tmp_path / "asha" / "tune")]
    lrs = trials["peak_lr"].tolist()
    first_good = lrs.index(good) if good in lrs else len(lrs)
    expected = ["early-stopped" if i > first_good and lr == useless else "completed" for i, lr in enumerate(lrs)]
    assert "early-stopped" in expected, f"seed 10 no longer samples a useless lr after a good one: {lrs}"
    assert trials["status"].tolist() == expected, lrs
    assert trials["tokens_seen"].tolist() == [512 if s == "early-stopped" else 2048 for s in expected]

    # Optuna hears the same story, trial for trial: pruned where ASHA stopped, the loss where it completed
    # (a pruned trial's value is Optuna's own: its last intermediate value)
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{tmp_path / 'asha' / 'optuna.db'}")
    told = [t for t in study.trials if "excluded" not in t.user_attrs]  # the rest: repeats, never trained
    assert [t.params["peak_lr"] for t in told] == lrs
    assert [t.state.name for t in told] == ["PRUNED" if s == "early-stopped" else "COMPLETE" for s in expected]
    completed = [i for i, s in enumerate(expected) if s == "completed"]
    assert [told[i].value for i in completed] == trials["best_val_loss"].iloc[completed].tolist()


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


def test_invalid_combinations_and_divergence_are_counted_not_crashed(tmp_path, capfd):
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
    printed = "".join(capfd.readouterr())  # their infinite losses are no warning; the grid's study is written quietly
    assert "NaN or Inf" not in printed and "A new study created" not in printed


def test_diverged_trials_fail_in_optuna_instead_of_staying_running(tmp_path):
    space = space_file(tmp_path, {"peak_lr": {"choice": [1000.0, 2000.0]}}, fixed={"batch_size": 4})
    # both diverge at their last step, after a finite evaluation at half the run: ASHA's first rung goes to the
    # end (grace = the whole 512-token trial), or it may stop the worse one there first (PRUNED, rightly)
    run_sweep(quick(tmp_path, space=space, mode="optuna-asha", name="div", num_samples=2, grace_tokens=512),
              log=print)
    study = optuna.load_study(study_name="div", storage=f"sqlite:///{tmp_path / 'div' / 'optuna.db'}")
    trained = [t for t in study.trials if "excluded" not in t.user_attrs]
    assert [t.state.name for t in trained] == ["FAIL", "FAIL"]


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
