"""WSD cooldown branches (train.cooldowns): one run scores every shorter WSD run on its way."""

import pytest
from helpers import nano_config, straight_and_resumed

from trainables.config import PretrainConfig
from trainables.errors import ConfigError
from trainables.pretrain import Run, plan_run, pretrain

STEP = 4 * 32  # tokens per step of nano_config (batch 4, context 32)


def wsd(**train):
    cfg = nano_config(schedule="wsd", decay_fraction=0.25, max_tokens=STEP * 24, **train)
    base = cfg.to_dict()
    return PretrainConfig.from_dict({**base, "model": {**base["model"], "dropout": 0.1},
                                     "eval": {"eval_freq": 5, "eval_iter": 2, "checkpoint_freq": 5}})


def test_a_branch_scores_exactly_the_shorter_run_and_changes_nothing(embedded_tokens, one_thread):
    """Branches at 8 and 16 steps of a 24-step run: each branch's loss is the final loss of a WSD run
    of that budget trained on its own (same warmup, same batches, dropout RNG included), and the main
    run's evaluations are those of a run without branches (it evaluates at the branch points too)."""
    cfg = wsd(cooldowns=[STEP * 16, STEP * 8])
    run = Run(cfg, embedded_tokens)
    assert [(b.tokens, b.total_steps, b.start, b.decay_steps) for b in run.plan.branches] == \
        [(STEP * 8, 8, 6, 2), (STEP * 16, 16, 12, 4)]
    reports = []
    summary = run.train(on_eval=lambda m, save: reports.append(m), log=None)
    branched = {r["cooldown_tokens"]: (r["step"], r["cooldown_val_loss"]) for r in reports if "cooldown_tokens" in r}
    assert set(branched) == {STEP * 8, STEP * 16} and branched[STEP * 8][0] == 6 and branched[STEP * 16][0] == 12
    for tokens, (_, loss) in branched.items():
        alone = pretrain(PretrainConfig.from_dict({**cfg.to_dict(), "train": {
            **cfg.to_dict()["train"], "max_tokens": tokens, "cooldowns": None}}), tokens=embedded_tokens, log=None)
        assert loss == alone.final_val_loss
    plain = pretrain(wsd(), tokens=embedded_tokens, log=None)
    mine = {e["step"]: e for e in summary.evals}
    assert all(mine[e["step"]] == e for e in plain.evals)  # same losses at every shared evaluation
    assert summary.final_val_loss == plain.final_val_loss and set(mine) - {e["step"] for e in plain.evals} == {6, 12}


def test_a_resumed_run_scores_each_branch_once(tmp_path, embedded_tokens, one_thread):
    cfg = wsd(cooldowns=[STEP * 8, STEP * 16])
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path, stop_at=10)
    assert resumed.evals == straight.evals
    run = Run(cfg, embedded_tokens)
    run.load(tmp_path / "b")
    assert set(run.branches_done) == {STEP * 8, STEP * 16}  # the first before the stop, the second after


def test_cooldown_mistakes_are_one_line_config_errors(embedded_tokens):
    cases = (({"schedule": "cosine", "cooldowns": [STEP * 4]}, "train.cooldowns needs train.schedule: wsd"),
             ({"cooldowns": [STEP * 24]}, "train.cooldowns: 3,072 is not below train.max_tokens 3,072"),
             ({"cooldowns": [0]}, "train.cooldowns must be a list of positive token budgets"),
             ({"cooldowns": "1000"}, "train.cooldowns must be a list of positive token budgets"))
    for train, expect in cases:
        with pytest.raises(ConfigError) as info:
            PretrainConfig.from_dict({**wsd().to_dict(), "train": {**wsd().to_dict()["train"], **train}})
        assert expect in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="would start its decay at step 2, inside the warmup of 4 steps"):
        plan_run(wsd(cooldowns=[STEP * 3], warmup_steps=4), len(embedded_tokens))
