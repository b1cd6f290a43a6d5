"""One pretraining run: schedule, clipping, training, checkpoints, config files, CLI."""

import json

import pytest
import torch
import yaml
from helpers import nano_config, straight_and_resumed

from hpsearch.cli import main
from trainables.config import PretrainConfig, load_config
from trainables.errors import CheckpointError, ConfigError, DataError
from trainables.model import PRESETS, count_params
from trainables.pretrain import Run, clip_gradients, evaluate, lr_at, plan_run, pretrain


def test_lr_at_known_steps():
    """Values worked out by hand, not by the formula again: warmup rises 9.9e-5 per step from 1e-5;
    the cosine's 40 steps from 1e-3 to 1e-4 pass 1e-4 + 9e-4 * (1 + cos(pi/4)) / 2 a quarter of the way,
    the midpoint 5.5e-4 halfway, and stop one step short of min_lr."""
    kw = dict(warmup_steps=10, total_steps=50, initial_lr=1e-5, peak_lr=1e-3, min_lr=1e-4)
    known = {0: 1e-5, 5: 5.05e-4, 9: 9.01e-4, 10: 1e-3, 20: 8.681980515339464e-4, 30: 5.5e-4,
             49: 1.0138719982009242e-4}
    assert {s: lr_at(s, **kw) for s in known} == pytest.approx(known, rel=1e-12)
    lrs = [lr_at(s, **kw) for s in range(50)]
    assert lrs[:11] == sorted(lrs[:11]) and lrs[10:] == sorted(lrs[10:], reverse=True)  # up, then down


def test_wsd_and_constant_at_every_phase_boundary():
    """By hand: 10 warmup steps from 1e-5 to 1e-3, 50 steps in all; WSD decays over the last 10
    (decay_fraction 0.2) from 1e-3 to 1e-4: flat through step 39, then 1-sqrt: at step 40 (progress 0)
    1e-3, at step 45 (progress 1/2) 1e-4 + 9e-4 * (1 - sqrt(0.5)), at 49 (progress 9/10)
    1e-4 + 9e-4 * (1 - sqrt(0.9)); linear halfway 5.5e-4."""
    kw = dict(warmup_steps=10, total_steps=50, initial_lr=1e-5, peak_lr=1e-3, min_lr=1e-4, schedule="wsd",
              decay_steps=10)
    known = {0: 1e-5, 9: 9.01e-4, 10: 1e-3, 25: 1e-3, 39: 1e-3, 40: 1e-3,
             45: 1e-4 + 9e-4 * (1 - 0.5 ** 0.5), 49: 1e-4 + 9e-4 * (1 - 0.9 ** 0.5)}
    assert {s: lr_at(s, **kw) for s in known} == pytest.approx(known, rel=1e-12)
    assert lr_at(45, **kw, decay_shape="linear") == pytest.approx(5.5e-4, rel=1e-12)
    # a 20-step cosine-shaped decay starts at step 30: step 45 is 3/4 of the way, 1e-4 + 9e-4 * (1 + cos(3pi/4)) / 2
    assert lr_at(45, **{**kw, "decay_steps": 20}, decay_shape="cosine") == pytest.approx(
        1e-4 + 9e-4 * (1 - 2 ** -0.5) / 2, rel=1e-12)
    constant = {s: lr_at(s, **{**kw, "schedule": "constant"}) for s in (0, 9, 10, 49)}
    assert constant == pytest.approx({0: 1e-5, 9: 9.01e-4, 10: 1e-3, 49: 1e-3}, rel=1e-12)


def test_a_wsd_run_plans_its_decay_trains_and_resumes_exactly(tmp_path, embedded_tokens):
    cfg = nano_config(max_tokens=128 * 16, schedule="wsd", decay_fraction=0.25, decay_shape="linear")
    cfg = PretrainConfig.from_dict({**cfg.to_dict(), "eval": {"eval_freq": 4, "eval_iter": 2, "checkpoint_freq": 4}})
    run = Run(cfg, embedded_tokens)
    assert (run.plan.total_steps, run.plan.decay_steps) == (16, 4)
    assert [run.lr(s) for s in (2, 11)] == [cfg.train.peak_lr] * 2 and run.lr(15) < run.lr(13) < run.lr(12) == cfg.train.peak_lr
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path)
    assert resumed.evals == straight.evals and [e["lr"] for e in straight.evals][:2] == [cfg.train.peak_lr] * 2


def test_schedule_values_are_one_line_config_errors(embedded_tokens):
    for train, expect in (({"schedule": "cosin"}, "train.schedule must be one of cosine, wsd, constant, got 'cosin' "
                                                  "(did you mean 'cosine'?)"),
                          ({"decay_shape": "sqrt"}, "train.decay_shape must be one of 1-sqrt, linear, cosine"),
                          ({"decay_fraction": 0}, "train.decay_fraction must be a number in (0, 1], got 0")):
        with pytest.raises(ConfigError) as info:
            nano_config(**train)
        assert expect in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="the warmup \\(2 steps\\) runs into the WSD decay"):
        plan_run(nano_config(max_tokens=128 * 4, schedule="wsd", decay_fraction=0.9), len(embedded_tokens))


def test_run_uses_the_schedule(embedded_tokens):
    cfg = nano_config()
    run = Run(cfg, embedded_tokens)
    seen = []
    run.train(on_eval=lambda m, save: seen.append((m["step"], m["lr"])), log=None)
    for step, lr in seen:  # metrics carry the lr of the last step taken (step - 1)
        assert lr == pytest.approx(run.lr(step - 1))


def test_clipping_matches_the_documents_example():
    def param():
        p = torch.nn.Parameter(torch.zeros(2, 2))
        p.grad = torch.tensor([[1.0, 2.0], [2.0, 4.0]])  # global L2 norm 5
        return p

    during_warmup = param()
    assert not clip_gradients([during_warmup], step=4, warmup_steps=5, max_norm=2.0)
    assert torch.equal(during_warmup.grad, torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    first_after = param()  # '>=': the first post-warmup step is clipped too
    assert clip_gradients([first_after], step=5, warmup_steps=5, max_norm=2.0)
    assert torch.allclose(first_after.grad, torch.tensor([[1.0, 2.0], [2.0, 4.0]]) * 2 / 5)


def test_loss_falls_on_a_short_run(embedded_tokens):
    summary = pretrain(nano_config(max_tokens=128 * 24), tokens=embedded_tokens, log=None)
    assert summary.status == "completed" and summary.steps == 24
    assert summary.evals[-1]["val_loss"] < summary.evals[0]["val_loss"] - 0.5
    assert summary.tokens_seen == 24 * 4 * 32


def test_a_cooldown_probe_scores_the_run_and_leaves_it_exactly_as_it_was(embedded_tokens):
    base = nano_config(max_tokens=128 * 16).to_dict()  # 16 steps
    cfg = PretrainConfig.from_dict({**base, "eval": {"eval_freq": 4, "eval_iter": 2},
                                    "model": {**base["model"], "dropout": 0.1}})
    straight = pretrain(cfg, tokens=embedded_tokens, log=None)
    probed, scores = Run(cfg, embedded_tokens), []
    summary = probed.train(on_eval=lambda m, save: scores.append((m["val_loss"], probed.cooldown_loss(3))), log=None)
    assert summary.evals == straight.evals  # probing changed nothing the run then did (dropout RNG included)
    raw, cooled = scores[1]  # at step 8 of 16: 3 steps with the LR falling to min_lr, then the validation loss
    by_hand = Run(cfg, embedded_tokens)
    for step, x, y in by_hand.steps():
        if step == 8:
            break
        by_hand.set_lr(step)
        by_hand.train_step(step, x, y)
    by_hand.step, start = 8, by_hand.lr(8)
    for i, (step, x, y) in zip(range(3), by_hand.steps()):
        for group in by_hand.optimizer.param_groups:
            group["lr"] = start + (cfg.train.min_lr - start) * (i + 1) / 3
        by_hand.train_step(step, x, y)
    assert cooled == evaluate(by_hand.model, by_hand.val_loader, 2, by_hand.device, by_hand.autocast)
    assert cooled != raw and scores[-1][0] == scores[-1][1]  # at the run's end no step is left to cool down


def test_resume_continues_exactly(tmp_path, embedded_tokens):
    cfg = nano_config(max_tokens=128 * 16)
    cfg = PretrainConfig.from_dict({**cfg.to_dict(), "eval": {"eval_freq": 4, "eval_iter": 2, "checkpoint_freq": 4}})
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path)
    assert resumed.steps == straight.steps == 16
    assert resumed.evals == straight.evals  # identical losses at every evaluation
    assert resumed.best_val_loss == straight.best_val_loss
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["steps"] == 16 and metrics["status"] == "completed"


def test_checkpoint_errors(tmp_path, embedded_tokens):
    cfg = nano_config(max_tokens=128 * 4)
    pretrain(cfg, tokens=embedded_tokens, out_dir=tmp_path / "run", log=None)
    with pytest.raises(CheckpointError, match="already holds a run's checkpoint"):
        pretrain(cfg, tokens=embedded_tokens, out_dir=tmp_path / "run", log=None)
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        pretrain(cfg, tokens=embedded_tokens, out_dir=tmp_path / "fresh", resume=True, log=None)
    other = PretrainConfig.from_dict({**cfg.to_dict(), "model": {"preset": "nano", "emb_dim": 64}})
    with pytest.raises(CheckpointError, match="another model shape.*emb_dim: checkpoint 32 vs config 64"):
        Run(other, embedded_tokens).load(tmp_path / "run")
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        Run(cfg, embedded_tokens).load(tmp_path / "run")


def test_invalid_learning_rates_and_warmup():
    with pytest.raises(ConfigError, match=r"min_lr \(0.01\) must not exceed train.peak_lr"):
        nano_config(min_lr=1e-2)
    with pytest.raises(ConfigError, match=r"initial_lr \(0.01\) must not exceed train.peak_lr"):
        nano_config(initial_lr=1e-2)
    with pytest.raises(ConfigError, match=r"warmup_steps \(12\) must be below the run's total steps \(12"):
        plan_run(nano_config(warmup_steps=12), 139_000)


def test_corpus_too_small_and_batch_too_large(embedded_tokens):
    with pytest.raises(DataError, match=r"70 tokens give a val split of 7 tokens, but one window needs 33"):
        plan_run(nano_config(), 70)
    windows = plan_run(nano_config(), len(embedded_tokens)).train_windows  # 3,909 on Python 3.11.7's pydoc topics
    assert windows < 4000
    with pytest.raises(DataError, match=f"batch_size 4000 exceeds the {windows} training windows"):
        plan_run(nano_config(batch_size=4000), len(embedded_tokens))


def test_config_file_errors_name_key_and_fix(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  peak_rl: 1.0e-3\n  batch_sise: 4\nmodle: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    msg = str(info.value)
    assert str(f) in msg and "did you mean 'peak_lr'" in msg and "did you mean 'batch_size'" in msg
    assert "unknown section 'modle' (did you mean 'model'?)" in msg
    f.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_round_trips_through_yaml(tmp_path):
    cfg = nano_config(peak_lr=2e-3)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path / "c.yaml") == cfg
    assert cfg.with_hparams({"dropout": 0.2, "peak_lr": 1e-3}).model.dropout == 0.2
    with pytest.raises(ConfigError, match="unknown hyperparameter 'peak_rl'"):
        cfg.with_hparams({"peak_rl": 1})


def test_cli_pretrain_trains_and_refuses_to_overwrite(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(nano_config(max_tokens=128 * 12).to_dict()))
    out = tmp_path / "out"
    assert main(["pretrain", "--config", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"model nano: {count_params(PRESETS['nano']):,} parameters on " in printed
    assert "tok/s" in printed and "completed: 12 steps" in printed
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "config.yaml", "metrics.json", "tensorboard"}
    assert main(["pretrain", "--config", str(cfg), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_trials_of_different_batch_sizes_are_scored_on_the_same_windows(embedded_tokens):
    """The validation loss averages eval_iter batches; with batch_size as an axis those batches would hold
    different windows per trial (2 windows against 8), so losses of different batch sizes would not compare.
    eval.eval_batch_size fixes the windows, and a sweep that searches batch_size sets it to the largest."""
    from dataclasses import replace

    from hpsearch.options import SweepOptions
    from hpsearch.plan import base_config
    from search_spaces import parse_space

    def val(batch_size, eval_batch_size):
        cfg = nano_config(batch_size=batch_size)
        return Run(replace(cfg, eval=replace(cfg.eval, eval_batch_size=eval_batch_size)), embedded_tokens).val_loss()

    # the same initial model (one seed): only the windows it is scored on can differ
    assert val(2, None) != val(8, None)
    assert val(2, 8) == val(4, 8) == val(8, None)

    searched = parse_space({"name": "b", "axes": {"batch_size": {"grid": [2, 8, 4]}, "peak_lr": {"grid": [1e-3, 2e-3]}}})
    ranged = parse_space({"name": "r", "axes": {"batch_size": {"int": [2, 16]}}})
    fixed = parse_space({"name": "f", "axes": {"peak_lr": {"grid": [1e-3, 2e-3]}}, "fixed": {"batch_size": 4}})
    plan = lambda space: base_config(SweepOptions(model="nano"), space).eval.eval_batch_size  # noqa: E731
    assert (plan(searched), plan(ranged), plan(fixed)) == (8, 16, None)
    pinned = parse_space({"name": "p", "axes": {"batch_size": {"grid": [2, 8]}}, "fixed": {"eval_batch_size": 4}})
    assert plan(pinned) == 4  # a value the user set is kept
