"""Every documented sampling mode, end to end through the CLI, with `report` and `export --format litgpt`.

A missing dependency of any mode (Optuna's QMCSampler needs scipy, the report needs matplotlib and
Optuna's importance evaluator) fails here, on a fresh install, instead of in a user's first sweep.
"""

import math
import re

import optuna
import pandas as pd
import pytest
import yaml

from hpsearch.cli import main
from search_spaces import MODES

pytestmark = pytest.mark.usefixtures("ray_session")

GRID_AXES = {"peak_lr": {"grid": [5.0e-4, 5.0e-3]}}
SAMPLED_AXES = {"peak_lr": {"loguniform": [1.0e-4, 1.0e-2]}, "batch_size": {"choice": [2, 4]}}


def test_the_documented_modes_are_the_four_the_readme_names():
    assert set(MODES) == {"grid", "random", "quasi-random", "optuna-asha"}


@pytest.mark.parametrize("mode", MODES)
def test_mode_runs_end_to_end_with_report_and_litgpt_export(mode, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "name": "modes", "axes": GRID_AXES if mode == "grid" else SAMPLED_AXES,
        "fixed": {"warmup_steps": 1, "initial_lr": 1.0e-5, "min_lr": 1.0e-5, "batch_size": 4}
        if mode == "grid" else {"warmup_steps": 1, "initial_lr": 1.0e-5, "min_lr": 1.0e-5},
    }))
    where = ["--results-dir", str(tmp_path / "results")]
    rc = main(["sweep", "--space", str(space), "--mode", mode, "--name", "s", "--model", "nano",
               "--num-samples", "1" if mode == "grid" else "2", "--max-tokens-per-trial", "384",
               "--eval-freq", "2", "--eval-iter", "1", "--no-dashboard", *where])
    said = capsys.readouterr()
    assert rc == 0, said.err
    sweep_dir = tmp_path / "results" / "s"
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    assert len(trials) == 2
    # the terminal: one line per trial start and end, with the results table's ids and statuses, no Tune boxes
    for _, t in trials.iterrows():
        assert re.search(rf"^\[ *\d+:\d\d\] {t['trial_id']} started +\w+=", said.out, re.M), said.out[-3000:]
        assert re.search(rf"^\[ *\d+:\d\d\] {t['trial_id']} {t['status']} +.*\| [01] running, [12] of 2 done \| best ",
                         said.out, re.M), said.out
    assert "╭" not in said.out and "Trial status:" not in said.out
    # every mode leaves an Optuna study for optuna-dashboard: objective named, steps in tokens
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    trained = [t for t in study.trials if "excluded" not in t.user_attrs]
    assert len(trained) == len(trials) and study.metric_names == ["best_val_loss"]
    for t in trained:  # evaluations every 2 steps of 2-4 x 32 tokens: steps are tokens seen, not report counts
        assert set(t.intermediate_values) <= {128, 256, 384} and (t.intermediate_values or t.state.name == "FAIL")
    finished = trials[trials["status"].isin(["completed", "early-stopped"])]
    assert len(finished) >= 1 and finished["best_val_loss"].map(math.isfinite).all()
    assert (finished["best_val_loss"] < math.log(50257)).all()  # it trained: below the untrained loss

    assert main(["report", "s", *where]) == 0
    index = sweep_dir / "report" / "index.html"
    assert index.read_text().count("<img") >= 2 and (sweep_dir / "report" / "curves.png").stat().st_size > 0

    out = tmp_path / "lit.yaml"
    assert main(["export", "s", *where, "--format", "litgpt", "--out", str(out)]) == 0
    lit = yaml.safe_load(out.read_text())
    best = trials.loc[trials["best_val_loss"].idxmin()]
    assert lit["optimizer"]["init_args"]["lr"] == pytest.approx(float(best["peak_lr"]))
