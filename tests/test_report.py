"""hpsearch.report on synthetic sweep directories: files written, checks, importance, errors.

No Ray and no training: the tables are built by hand; reruns use a stand-in for `pretrain`.
"""

from __future__ import annotations

import importlib
import json
import math
import types

import numpy as np
import pandas as pd
import pytest

from hpsearch.report import (
    Check,
    edge_check,
    failures_check,
    hparam_importance,
    lead_exceeds_noise,
    run_checks,
    seed_noise_check,
    write_report,
)
from trainables.errors import SweepError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SPACE = {
    "name": "synthetic",
    "description": "a hand-made space for report tests",
    "axes": {
        "peak_lr": {"loguniform": [1e-4, 1e-2]},
        "batch_size": {"grid": [8, 16, 32]},
        "dropout": {"uniform": [0.0, 0.3]},
        "warmup_steps": {"int": [0, 100]},
        "qkv_bias": {"choice": [True, False]},
    },
    "fixed": {"num_epochs": 1},
}
BASE = {
    "model": {"preset": "tiny"},
    "data": {"train_ratio": 0.9},
    "train": {"batch_size": 8, "num_epochs": 1, "peak_lr": 5e-4, "initial_lr": 1e-5,
              "min_lr": 1e-5, "warmup_steps": 10, "seed": 123},
    "eval": {"eval_freq": 20, "eval_iter": 5},
}


def meta(space=SPACE, name="toy <sweep> & co", mode="quick") -> dict:
    return {"name": name, "mode": mode, "metric": "best_val_loss", "space": space, "base_config": BASE}


def trial(i: int, status: str = "completed", loss: float = 4.0, **hparams) -> dict:
    """One trials.parquet row; hyperparameters default to interior values of SPACE."""
    hp = {"peak_lr": 1e-3, "batch_size": 16, "dropout": 0.15, "warmup_steps": 50, "qkv_bias": False}
    hp |= hparams
    ran = status != "skipped-invalid"
    return {
        "trial_id": f"t{i:02d}", "status": status, **hp,
        "best_val_loss": loss if status in ("completed", "early-stopped") else math.nan,
        "best_val_tokens": 4096.0 * 8 if ran else math.nan,
        "final_val_loss": loss + 0.02 if ran else math.nan,
        "final_train_loss": loss - 0.1 if ran else math.nan,
        "tokens_seen": 4096 * 10 if ran else 0, "steps": 40 if ran else 0,
        "wall_time_s": 3.5, "cpus": 1, "gpus": 0,
        "error": "RuntimeError: CUDA out of memory\nTraceback..." if status == "errored" else "",
    }


def sweep_table() -> pd.DataFrame:
    """10 trials: the best (t03) is interior on every axis; one of each failure kind."""
    lrs = [2e-4, 5e-4, 8e-4, 1e-3, 1.5e-3, 2e-3, 4e-3, 6e-3, 9e-3, 3e-4]
    rows = []
    for i, lr in enumerate(lrs):
        loss = 3.5 + 0.4 * abs(math.log10(lr) - math.log10(1e-3)) + 0.01 * (i % 3)
        status = "completed"
        if i == 5:
            status = "early-stopped"
        elif i == 8:
            status = "diverged"
        elif i == 9:
            status = "errored"
        rows.append(trial(i, status, loss, peak_lr=lr, batch_size=[8, 16, 32][(i + 1) % 3],
                          dropout=0.03 * i, warmup_steps=10 * i, qkv_bias=bool(i % 2)))
    rows.append(trial(10, "skipped-invalid", peak_lr=1e-4))
    return pd.DataFrame(rows)


def write_sweep(path, trials: pd.DataFrame, sweep_meta: dict | None = None):
    path.mkdir(parents=True, exist_ok=True)
    trials.to_parquet(path / "trials.parquet")
    curves = []
    for _, t in trials[trials["status"] != "skipped-invalid"].iterrows():
        end = t["best_val_loss"] if math.isfinite(t["best_val_loss"]) else 4.5
        for k in range(1, 6):
            step = 8 * k
            curves.append({"trial_id": t["trial_id"], "step": step, "epoch": 0,
                           "tokens_seen": step * 4096, "lr": t["peak_lr"] * (1 - 0.15 * k),
                           "train_loss": end - 0.1 + 0.45 * (5 - k), "val_loss": end + 0.4 * (5 - k)})
    pd.DataFrame(curves).to_parquet(path / "curves.parquet")
    (path / "sweep.json").write_text(json.dumps(sweep_meta or meta()))
    return path


def by_axis(checks: list[Check]) -> dict[str, Check]:
    return {c.axis: c for c in checks if c.name == "edge"}


# -- write_report ------------------------------------------------------------------------------
def test_write_report_writes_html_and_every_png(tmp_path):
    sweep = write_sweep(tmp_path / "toy", sweep_table())
    lines: list[str] = []
    index = write_report(sweep, log=lines.append)

    assert index == sweep / "report" / "index.html"
    expected = ["curves.png", "lr_schedule.png", "importance.png",
                *(f"axis_{a}.png" for a in SPACE["axes"])]
    for name in expected:
        png = sweep / "report" / name
        assert png.stat().st_size > 1000, name
        assert png.read_bytes()[:8] == PNG_MAGIC, name
    page = index.read_text(encoding="utf-8")
    for name in expected:
        assert f'<img src="{name}"' in page
    assert "toy &lt;sweep&gt; &amp; co" in page and "<sweep>" not in page
    assert "(quick)" in page
    assert "11 trials: 7 completed, 1 early-stopped, 1 diverged, 1 errored, 1 skipped-invalid" in page
    assert "best val loss 3.5000 (trial t03)" in page
    assert "2 of 11 trials (18%) diverged or errored" in page
    assert "CUDA out of memory" in page  # the failed trial's error, first line only
    assert "Traceback" not in page
    assert not (sweep / "report" / "reruns.csv").exists()
    assert lines[-1] == f"report: wrote {index}"


def test_write_report_is_silent_without_log_and_tolerates_missing_curves(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "toy", sweep_table())
    (sweep / "curves.parquet").unlink()
    index = write_report(sweep, log=None, top_k=2)
    assert capsys.readouterr().out == ""
    assert not (sweep / "report" / "curves.png").exists()
    assert "no curves.parquet" in index.read_text(encoding="utf-8")


def test_reruns_write_csv_and_the_seed_noise_verdict(tmp_path, monkeypatch):
    calls = []

    def pretrain(cfg, log=None):
        calls.append((cfg.train.peak_lr, cfg.train.seed, cfg.train.batch_size))
        # The winner (peak_lr 1e-3) is clearly better than the runner-up, with a little seed noise.
        return types.SimpleNamespace(best_val_loss=3.0 + 100 * abs(cfg.train.peak_lr - 1e-3)
                                     + 0.001 * (cfg.train.seed % 3))

    # The module, not the package attribute: trainables/__init__ re-exports the function `pretrain`.
    monkeypatch.setattr(importlib.import_module("trainables.pretrain"), "pretrain", pretrain)
    table = sweep_table()
    table["batch_size"] = table["batch_size"].astype(float)  # as after a NaN: must map back to int
    sweep = write_sweep(tmp_path / "toy", table)
    index = write_report(sweep, reruns=3, log=None)

    runs = pd.read_csv(sweep / "report" / "reruns.csv")
    assert list(runs["role"]) == ["winner"] * 3 + ["runner-up"] * 3
    assert list(runs["seed"]) == [124, 125, 126] * 2
    assert list(runs["trial_id"].unique()) == ["t03", "t02"]
    assert all(isinstance(bs, int) for _, _, bs in calls)
    page = index.read_text(encoding="utf-8")
    assert "the winner&#x27;s lead is real" in page
    assert "rule: lead &gt; sum of the two stds" in page


# -- checks ------------------------------------------------------------------------------------
def test_run_checks_silent_when_best_is_interior():
    checks = run_checks(sweep_table(), meta())
    assert set(by_axis(checks)) == {"peak_lr", "batch_size", "dropout", "warmup_steps"}  # numeric
    assert not any(c.fired for c in checks), [c.message for c in checks if c.fired]


def test_edge_check_grid_fires_at_the_largest_value_only_with_three_values():
    table = sweep_table()
    table.loc[table["trial_id"] == "t03", "batch_size"] = 32
    check = by_axis(run_checks(table, meta()))["batch_size"]
    assert check.fired
    assert check.message == ("batch_size: best value 32 is at the upper edge of [8, 16, 32] "
                             "— widen the range upward")
    assert edge_check("batch_size", "grid", [8, 16, 32], 8).fired
    assert not edge_check("batch_size", "grid", [8, 16, 32], 16).fired
    assert edge_check("batch_size", "grid", [8, 32], 32) is None  # two values: no edge to speak of
    assert edge_check("qkv_bias", "choice", [True, False], True) is None  # not numeric


def test_edge_check_loguniform_uses_log_space():
    table = sweep_table()
    table.loc[table["trial_id"] == "t03", "peak_lr"] = 0.0099
    check = by_axis(run_checks(table, meta()))["peak_lr"]
    assert check.fired and "upper edge of [0.0001, 0.01]" in check.message
    assert check.message.endswith("widen the range upward")
    assert edge_check("peak_lr", "loguniform", [1e-4, 1e-2], 1.1e-4).fired
    assert "widen the range downward" in edge_check("peak_lr", "loguniform", [1e-4, 1e-2], 1.1e-4).message
    assert not edge_check("peak_lr", "loguniform", [1e-4, 1e-2], 1e-3).fired
    # 3e-4 is 2% of the way up in linear terms but 24% in log terms.
    assert not edge_check("peak_lr", "loguniform", [1e-4, 1e-2], 3e-4).fired
    assert edge_check("peak_lr", "uniform", [1e-4, 1e-2], 3e-4).fired


def test_edge_check_uniform_and_int():
    assert edge_check("dropout", "uniform", [0.0, 0.3], 0.29).fired
    assert not edge_check("dropout", "uniform", [0.0, 0.3], 0.2).fired
    assert edge_check("warmup_steps", "int", [0, 100], 3).fired
    assert not edge_check("warmup_steps", "int", [0, 100], 50).fired


def test_failures_check_fires_above_twenty_percent():
    def table(n_failed: int) -> pd.DataFrame:
        statuses = ["diverged", "errored"] * n_failed
        rows = [trial(i, statuses[i] if i < n_failed else "completed", 4.0 + i) for i in range(10)]
        return pd.DataFrame(rows)

    fired = failures_check(table(3))
    assert fired.fired and fired.message.startswith("3 of 10 trials (30%) diverged or errored")
    assert "bad space or a bug" in fired.message
    quiet = failures_check(table(2))  # exactly 20%: not above the threshold
    assert not quiet.fired and quiet.message == "2 of 10 trials (20%) diverged or errored"
    assert [c for c in run_checks(table(3), meta()) if c.name == "failures"][0].fired


def test_seed_noise_rule_on_hand_made_numbers():
    clear = ([3.00, 3.01, 2.99], [3.20, 3.21, 3.19])  # lead 0.20, noise 0.02
    tied = ([3.00, 3.10, 2.90], [3.05, 3.15, 2.95])  # lead 0.05, noise 0.20
    assert lead_exceeds_noise(*clear)
    assert not lead_exceeds_noise(*tied)
    assert not lead_exceeds_noise(clear[1], clear[0])  # the runner-up did better on reruns
    assert not lead_exceeds_noise([3.0], [3.5])  # one seed cannot measure noise
    assert lead_exceeds_noise([3.00, 3.01, math.nan], [3.20, 3.21])  # non-finite losses dropped

    assert not seed_noise_check(*clear).fired
    assert "lead 0.2000 vs seed noise 0.0200" in seed_noise_check(*clear).message
    assert seed_noise_check(*tied).fired and "within seed noise" in seed_noise_check(*tied).message
    assert "runner-up did better" in seed_noise_check(clear[1], clear[0]).message
    assert seed_noise_check([3.0], [3.5]).fired
    assert not seed_noise_check([3.0, 3.1], []).fired


# -- importance --------------------------------------------------------------------------------
def test_importance_ranks_the_axis_that_drives_the_loss():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        lr = float(10 ** rng.uniform(-4, -2))
        dropout = float(rng.uniform(0.0, 0.3))
        loss = 3.0 + abs(math.log10(lr) + 3) + 0.001 * dropout
        rows.append(trial(i, "completed", loss, peak_lr=lr, dropout=dropout, batch_size=16))
    importances, notes = hparam_importance(pd.DataFrame(rows), meta())
    assert set(importances) == {"peak_lr", "dropout"}  # the other axes have a single value
    assert max(importances, key=importances.get) == "peak_lr"
    assert sum(importances.values()) == pytest.approx(1.0)
    assert any(n.startswith("batch_size: a single value") for n in notes)


def test_importance_needs_two_ranked_trials():
    rows = [trial(0, "completed", 3.5), trial(1, "diverged"), trial(2, "errored")]
    importances, notes = hparam_importance(pd.DataFrame(rows), meta())
    assert importances == {}
    assert any("importance not computed" in n for n in notes)


# -- errors ------------------------------------------------------------------------------------
def test_missing_sweep_dir_raises_sweep_error(tmp_path):
    with pytest.raises(SweepError, match="no sweep at"):
        write_report(tmp_path / "nope", log=None)


def test_missing_trials_parquet_raises_sweep_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="has no trials.parquet .the sweep did not finish"):
        write_report(tmp_path / "empty", log=None)


def test_no_finite_best_val_loss_raises_sweep_error(tmp_path):
    table = pd.DataFrame([trial(0, "diverged"), trial(1, "errored"), trial(2, "completed", math.nan)])
    sweep = write_sweep(tmp_path / "bad", table)
    with pytest.raises(SweepError, match="no completed or early-stopped trial has a finite"):
        write_report(sweep, log=None)
