"""hpsearch.report on hand-built sweep directories: files written, checks, importance, reruns, errors.

No Ray. The tables are built by hand; the rerun test trains a nano model for real on the embedded
corpus (a few hundred tokens per run).
"""

from __future__ import annotations

import html
import json
import math
import struct
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from helpers import nano_config
from hpsearch import results
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
from search_spaces import Choice, Grid, IntRange, LogUniform, Uniform, parse_space
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
PARSED = parse_space(SPACE, "test SPACE")
BASE = {
    "model": {"preset": "tiny"},
    "data": {"train_ratio": 0.9},
    "train": {"batch_size": 8, "num_epochs": 1, "peak_lr": 5e-4, "initial_lr": 1e-5,
              "min_lr": 1e-5, "warmup_steps": 10, "seed": 123},
    "eval": {"eval_freq": 20, "eval_iter": 5},
}


def meta(space=SPACE, name="toy <sweep> & co", mode="quick", base=BASE) -> dict:
    return {"name": name, "mode": mode, "metric": "best_val_loss", "space": space, "base_config": base}


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
    """A sweep directory as `hpsearch sweep` leaves it: results.save's files plus sweep.json."""
    curves = []
    for _, t in trials[trials["status"] != "skipped-invalid"].iterrows():
        end = t["best_val_loss"] if math.isfinite(t["best_val_loss"]) else 4.5
        for k in range(1, 6):
            step = 8 * k
            curves.append({"trial_id": t["trial_id"], "step": step, "epoch": 0,
                           "tokens_seen": step * 4096, "lr": t["peak_lr"] * (1 - 0.15 * k),
                           "train_loss": end - 0.1 + 0.45 * (5 - k), "val_loss": end + 0.4 * (5 - k)})
    results.save(path, trials, pd.DataFrame(curves, columns=results.CURVE_COLUMNS))
    (path / "sweep.json").write_text(json.dumps(sweep_meta or meta()))
    return path


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file; asserts the signature and a non-trivial size first."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path.name
    return struct.unpack(">II", data[16:24])  # the IHDR chunk, always first


def by_axis(checks: list[Check]) -> dict[str, Check]:
    return {c.axis: c for c in checks if c.name == "edge"}


# -- write_report ------------------------------------------------------------------------------
def test_write_report_writes_html_and_every_png(tmp_path):
    table = sweep_table()
    sweep = write_sweep(tmp_path / "toy", table)
    lines: list[str] = []
    index = write_report(sweep, log=lines.append)

    assert index == sweep / "report" / "index.html"
    expected = ["curves.png", "lr_schedule.png", "importance.png",
                *(f"axis_{a}.png" for a in SPACE["axes"])]
    assert sorted(p.name for p in index.parent.iterdir()) == sorted([*expected, "index.html"])
    for name in expected:
        width, height = png_size(sweep / "report" / name)
        assert width == 770 and height > 100, name  # 7 inches at 110 dpi
    assert png_size(sweep / "report" / "curves.png") == (770, 484)
    page = index.read_text(encoding="utf-8")
    for name in expected:
        assert f'<img src="{name}"' in page
    assert "peak_lr: loguniform [0.0001, 0.01]. Red x" in page  # the axis' caption, from the space
    assert "qkv_bias: choice [True, False]. Red x" in page
    assert "toy &lt;sweep&gt; &amp; co" in page and "<sweep>" not in page
    assert "(quick)" in page
    summary = ("11 trials: 7 completed, 1 early-stopped, 1 diverged, 1 errored, 1 skipped-invalid; "
               "409,600 training tokens; 38 s of trial time; best val loss 3.5000 (t03)")
    assert f"<p>{summary}</p>" in page
    assert lines[0] == f"report: {summary}"
    checks = run_checks(table, PARSED)
    assert [c.name for c in checks] == ["edge"] * 4 + ["failures"]
    for c in checks:
        assert f'<li class="ok">✓ {html.escape(c.message)}</li>' in page
    assert "2 of 11 trials (18%) diverged or errored" in page
    assert "<code>t09</code> errored: RuntimeError: CUDA out of memory</li>" in page  # first line only
    assert "<code>t08</code> diverged: (no message)</li>" in page
    assert "Traceback" not in page
    assert page.count("<tr><td>") == 5  # top_k best trials in the table
    assert not (sweep / "report" / "reruns.csv").exists()
    assert not any("warning" in line for line in lines)
    assert lines[-1] == f"report: wrote {index}"


def test_write_report_is_silent_without_log_and_tolerates_missing_curves(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "toy", sweep_table())
    (sweep / "curves.parquet").unlink()
    index = write_report(sweep, log=None, top_k=2)
    assert capsys.readouterr().out == ""
    assert not (sweep / "report" / "curves.png").exists()
    assert png_size(sweep / "report" / "lr_schedule.png")[0] == 770
    page = index.read_text(encoding="utf-8")
    assert "<li>no curves.parquet: loss curves not drawn</li>" in page
    assert 'src="curves.png"' not in page and 'src="lr_schedule.png"' in page
    assert page.count("<tr><td>") == 2


def test_reruns_train_the_best_two_configs_over_seeds(tmp_path):
    """--reruns for real: a nano model, a few hundred tokens per run, on the embedded corpus."""
    base = nano_config(max_tokens=256, warmup_steps=0)  # 2 steps at batch_size 4 (32-token windows), 1 at 8
    base = replace(base, eval=replace(base.eval, eval_iter=1))
    space = {"name": "rerun", "description": "", "axes": {"peak_lr": {"loguniform": [1e-3, 1e-2]},
                                                          "batch_size": {"grid": [4, 8]}}}
    table = pd.DataFrame([trial(0, "completed", 5.1, peak_lr=3e-3, batch_size=4),
                          trial(1, "completed", 5.3, peak_lr=8e-3, batch_size=8),
                          trial(2, "diverged", peak_lr=1e-2, batch_size=4)])
    table = table.drop(columns=["dropout", "warmup_steps", "qkv_bias"])
    table["batch_size"] = table["batch_size"].astype(float)  # as after a NaN: must map back to int
    sweep = write_sweep(tmp_path / "nano", table, meta(space, name="nano", base=base.to_dict()))
    lines: list[str] = []
    index = write_report(sweep, reruns=2, log=lines.append)

    runs = pd.read_csv(sweep / "report" / "reruns.csv", keep_default_na=False)
    assert list(runs.columns) == ["role", "trial_id", "seed", "best_val_loss", "error"]
    assert list(runs["role"]) == ["winner", "winner", "runner-up", "runner-up"]
    assert list(runs["trial_id"]) == ["t00", "t00", "t01", "t01"]
    assert list(runs["seed"]) == [base.train.seed + 1, base.train.seed + 2] * 2
    assert list(runs["error"]) == [""] * 4
    losses = runs["best_val_loss"].astype(float)
    assert np.isfinite(losses).all() and (losses > 0).all()
    for role in ("winner", "runner-up"):
        per_seed = losses[runs["role"] == role]
        assert per_seed.nunique() == 2, f"{role}: seeds gave identical losses {list(per_seed)}"
    assert "report: rerun winner t00 with seed 8 (1/2)" in lines
    page = index.read_text(encoding="utf-8")
    failures = "1 of 3 trials (33%) diverged or errored, above 20%"  # a fired check: logged and flagged
    assert any(line.startswith(f"report: warning: {failures}") for line in lines)
    assert f'<li class="warn">⚠ {failures}' in page
    verdict = seed_noise_check(losses[:2], losses[2:])  # the seed-noise check of these very losses
    assert "(n=2) vs runner-up" in verdict.message and "(rule: lead > sum of the two stds)" in verdict.message
    assert f'<li class="{"warn" if verdict.fired else "ok"}">{"⚠" if verdict.fired else "✓"} ' \
           f"{html.escape(verdict.message)}</li>" in page


# -- checks ------------------------------------------------------------------------------------
def test_run_checks_silent_when_best_is_interior():
    checks = run_checks(sweep_table(), PARSED)
    assert set(by_axis(checks)) == {"peak_lr", "batch_size", "dropout", "warmup_steps"}  # numeric
    assert not any(c.fired for c in checks), [c.message for c in checks if c.fired]
    assert by_axis(checks)["peak_lr"].message == "peak_lr: best value 0.001 lies inside [0.0001, 0.01]"
    assert by_axis(checks)["batch_size"].message == "batch_size: best value 16 lies inside [8, 16, 32]"


def test_edge_check_grid_fires_at_the_largest_value_only_with_three_values():
    table = sweep_table()
    table.loc[table["trial_id"] == "t03", "batch_size"] = 32
    check = by_axis(run_checks(table, PARSED))["batch_size"]
    assert check.fired
    assert check.message == ("batch_size: best value 32 is at the upper edge of [8, 16, 32] "
                             "— widen the range upward")
    assert edge_check("batch_size", Grid((8, 16, 32)), 8).fired
    assert not edge_check("batch_size", Grid((8, 16, 32)), 16).fired
    assert edge_check("batch_size", Grid((8, 32)), 32) is None  # two values: no edge to speak of
    assert edge_check("qkv_bias", Choice((True, False)), True) is None  # not numeric


def test_edge_check_loguniform_uses_log_space():
    table = sweep_table()
    table.loc[table["trial_id"] == "t03", "peak_lr"] = 0.0099
    check = by_axis(run_checks(table, PARSED))["peak_lr"]
    assert check.fired and "upper edge of [0.0001, 0.01]" in check.message
    assert check.message.endswith("widen the range upward")
    assert edge_check("peak_lr", LogUniform(1e-4, 1e-2), 1.1e-4).fired
    assert "widen the range downward" in edge_check("peak_lr", LogUniform(1e-4, 1e-2), 1.1e-4).message
    assert not edge_check("peak_lr", LogUniform(1e-4, 1e-2), 1e-3).fired
    # 3e-4 is 2% of the way up in linear terms but 24% in log terms.
    assert not edge_check("peak_lr", LogUniform(1e-4, 1e-2), 3e-4).fired
    assert edge_check("peak_lr", Uniform(1e-4, 1e-2), 3e-4).fired


def test_edge_check_uniform_and_int():
    assert edge_check("dropout", Uniform(0.0, 0.3), 0.29).fired
    assert not edge_check("dropout", Uniform(0.0, 0.3), 0.2).fired
    assert edge_check("warmup_steps", IntRange(0, 100), 3).fired
    assert not edge_check("warmup_steps", IntRange(0, 100), 50).fired


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
    assert [c for c in run_checks(table(3), PARSED) if c.name == "failures"][0].fired


def test_seed_noise_rule_on_hand_made_numbers():
    clear = ([3.00, 3.01, 2.99], [3.20, 3.21, 3.19])  # lead 0.20, noise 0.02
    tied = ([3.00, 3.10, 2.90], [3.05, 3.15, 2.95])  # lead 0.05, noise 0.20
    assert lead_exceeds_noise(*clear)
    assert not lead_exceeds_noise(*tied)
    assert not lead_exceeds_noise(clear[1], clear[0])  # the runner-up did better on reruns
    assert not lead_exceeds_noise([3.0], [3.5])  # one seed cannot measure noise
    assert lead_exceeds_noise([3.00, 3.01, math.nan], [3.20, 3.21])  # non-finite losses dropped

    assert not seed_noise_check(*clear).fired
    assert seed_noise_check(*clear).message.endswith("— the winner's lead is real")
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
    importances, notes = hparam_importance(pd.DataFrame(rows), PARSED)
    assert set(importances) == {"peak_lr", "dropout"}  # the other axes have a single value
    assert max(importances, key=importances.get) == "peak_lr"
    assert sum(importances.values()) == pytest.approx(1.0)
    assert notes == [f"{a}: a single value among ranked trials; left out of the importance"
                     for a in ("batch_size", "warmup_steps", "qkv_bias")]


def test_importance_needs_two_ranked_trials():
    rows = [trial(0, "completed", 3.5), trial(1, "diverged"), trial(2, "errored")]
    importances, notes = hparam_importance(pd.DataFrame(rows), PARSED)
    assert importances == {}
    assert len(notes) == len(SPACE["axes"]) + 1  # one per single-valued axis, then the verdict
    assert notes[-1] == ("importance not computed: needs 2 or more ranked trials and an axis with 2 or "
                         "more values (have 1 trials, 0 axes)")


def test_importance_compares_trials_at_equal_tokens(tmp_path):
    # early-stopped trials were scored after fewer tokens: left out, and the page says how many
    rows = [trial(i, "completed", 3.0 + abs(math.log10(lr) + 3), peak_lr=lr)
            for i, lr in enumerate([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])]
    rows += [trial(5, "early-stopped", 9.0, peak_lr=2e-3, dropout=0.3),
             trial(6, "early-stopped", 8.0, peak_lr=5e-4, dropout=0.2)]
    importances, notes = hparam_importance(pd.DataFrame(rows), PARSED)
    assert set(importances) == {"peak_lr"}  # dropout varies among early-stopped trials only
    assert notes[0] == ("importance compares trials at equal tokens: 2 early-stopped trial(s), scored after "
                        "fewer tokens than the completed ones, are left out of it")
    write_sweep(tmp_path, pd.DataFrame(rows))
    page = write_report(tmp_path, log=None).read_text()
    assert "2 early-stopped trial(s), scored after fewer tokens than the completed ones" in page


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
