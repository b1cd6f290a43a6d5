"""The front door: hpsearch.sweep runs a real (smoke) sweep and hpsearch.load reads back the same Sweep."""

import inspect

import pytest

import hpsearch
from trainables.config import load_config

pytestmark = pytest.mark.usefixtures("ray_session")


def test_sweep_and_load_give_the_same_sweep(tmp_path):
    s = hpsearch.sweep("smoke", mode="grid", smoke_test=True, max_tokens_per_trial=1024,
                       name="front", results_dir=tmp_path, dashboard=False, verbose=0, log=None)
    assert isinstance(s, hpsearch.Sweep) and s.name == "front" and s.path == tmp_path / "front"
    assert len(s.trials) == 4 and set(s.trials["status"]) == {"completed"} and s.finished
    assert s.axes == ["peak_lr", "batch_size"]

    again = hpsearch.load("front", results_dir=tmp_path)
    assert list(again.trials.columns) == list(s.trials.columns)
    assert again.trials.equals(s.trials) and again.curves.equals(s.curves)
    assert again.best.equals(s.best) and again.best["best_val_loss"] == s.trials["best_val_loss"].min()
    assert hpsearch.load(tmp_path / "front").trials.equals(s.trials)  # a directory works too

    # the best config is what `hpsearch export` writes; the study is Optuna's own, loaded lazily
    written = again.export(tmp_path / "best.yaml", log=None)
    assert written == [tmp_path / "best.yaml"] and load_config(written[0]) == again.best_config()
    assert again.best_config().train.peak_lr == s.best["peak_lr"]
    assert again.best_config(s.trials["trial_id"].iloc[0]).train.batch_size == s.trials["batch_size"].iloc[0]
    assert len(again.study.trials) == 4 and again.study.best_value == pytest.approx(s.best["best_val_loss"])
    assert str(again).startswith("sweep front (grid): 4 trials: 4 completed")


def test_front_door_names_are_typed_keyword_only_and_fail_as_one_family(tmp_path):
    assert set(hpsearch.__all__) >= {"sweep", "load", "Sweep", "transfer", "scale", "PretrainConfig", "pretrain",
                                     "HPSearchError", "SweepError", "ConfigError", "DataError"}
    params = inspect.signature(hpsearch.sweep).parameters
    assert [p.name for p in params.values() if p.kind != p.KEYWORD_ONLY] == ["space", "options"]
    assert params["num_samples"].annotation == "int | None"
    with pytest.raises(hpsearch.SweepError, match="unknown option.*'num_sample'.*did you mean 'num_samples'"):
        hpsearch.sweep("smoke", num_sample=3, results_dir=tmp_path)
    with pytest.raises(hpsearch.HPSearchError, match="no sweep at"):
        hpsearch.load("missing", results_dir=tmp_path)
    from hpsearch.sweep import run_sweep  # the module behind hpsearch.sweep is still a module

    assert callable(run_sweep) and callable(hpsearch.sweep) and hpsearch.sweep.run_sweep is run_sweep
