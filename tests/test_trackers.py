"""--logger: a sweep's trials in MLflow (a SQLite store) and W&B (offline mode), through Ray's own callbacks.

Both run offline for real where the `trackers` extra is installed (the test command installs it);
elsewhere they are skipped with the reason. Nothing here talks to a network.
"""

import importlib.util

import pytest
import yaml

from helpers import sweep_options
from hpsearch.options import SweepOptions
from hpsearch.sweep import run_sweep
from trainables.errors import SweepError

pytestmark = pytest.mark.usefixtures("ray_session")


def one_point(tmp_path) -> SweepOptions:
    space = tmp_path / "one.yaml"
    space.write_text(yaml.safe_dump({"name": "one", "axes": {"peak_lr": {"grid": [5e-3, 1e-3]}},
                                     "fixed": {"batch_size": 4, "warmup_steps": 2}}))
    return sweep_options(tmp_path / "results", space=str(space))


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed (extra: trackers)")
def test_mlflow_gets_one_run_per_trial_with_its_losses(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    opts = one_point(tmp_path)
    out = run_sweep(SweepOptions(**{**opts.__dict__, "name": "ml", "logger": "mlflow"}), log=lambda _: None)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'ml' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ml")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(out.trials) == 2
    by_lr = {float(r.data.params["peak_lr"]): r for r in runs}
    for _, t in out.trials.iterrows():
        run = by_lr[float(t["peak_lr"])]
        assert run.data.metrics["best_val_loss"] == pytest.approx(t["best_val_loss"])
        assert run.data.metrics["tokens_seen"] == 512
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(history) == 2  # one value per evaluation (every 2 steps of 4 x 32 tokens)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed (extra: trackers)")
def test_wandb_offline_writes_one_run_per_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    opts = one_point(tmp_path)
    run_sweep(SweepOptions(**{**opts.__dict__, "name": "wb", "logger": "wandb"}), log=lambda _: None)
    offline = list((tmp_path / "results" / "wb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(any(d.glob("*.wandb")) for d in offline)


def test_unknown_or_missing_trackers_are_one_line_errors(tmp_path):
    for bad in ("comet", "mlflow,", ""):
        with pytest.raises(SweepError, match=r"--logger .*: choose from mlflow, wandb, comma-separated"):
            SweepOptions(logger=bad)
    assert SweepOptions(logger="mlflow, wandb").loggers == ["mlflow", "wandb"]
    for name in ("mlflow", "wandb"):
        if importlib.util.find_spec(name) is None:
            with pytest.raises(SweepError, match=rf"--logger {name} needs the {name} package: "
                                                 r"pip install -e '.\[trackers\]'"):
                run_sweep(SweepOptions(**{**one_point(tmp_path).__dict__, "name": "x", "logger": name}))
            assert not (tmp_path / "results" / "x").exists()  # refused before anything was written
