"""The depth rules (model.depth_rule: completep | depth-mup): coordinate check across depth, optimizer
groups, exact equality at the base depth, resume, and one-line config errors."""

import math

import numpy as np
import pytest
import torch
from helpers import coordinate_slopes, nano_config, straight_and_resumed, with_model

from trainables.config import AXES, PretrainConfig
from trainables.errors import CheckpointError, ConfigError
from trainables.model import GPT, GPTConfig, param_groups
from trainables.pretrain import Run, pretrain

DEPTHS = (2, 4, 8, 16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


# -- coordinate check across depth -------------------------------------------------------------

def depth_slopes(rule: str, tokens: np.ndarray) -> dict[str, float]:
    """The coordinate check across depths 2..16 (base depth 2), width 64 at 4 heads (tests/helpers.py):
    ``mid`` and ``last`` are the residual stream after the block halfway down and after the last block,
    ``logits`` the head's output."""
    def make(depth):
        return GPT(GPTConfig(vocab_size=512, context_len=32, emb_dim=64, n_layers=depth, n_heads=4, dropout=0.0,
                             depth_rule=rule, base_depth=DEPTHS[0]))

    def watch(model):
        return {"mid": model.blocks[len(model.blocks) // 2 - 1], "last": model.blocks[-1], "logits": model.head}

    return coordinate_slopes(make, DEPTHS, tokens, watch)


def test_residual_stream_stays_flat_across_depth_with_the_rule_and_grows_without(embedded_tokens):
    # Without a rule each of L trained branches adds an aligned O(lr) update, so the residual stream
    # grows like L (measured slope ~1.0); CompleteP's (base/L) branch multiplier cancels it (measured
    # |slope| <= 0.13 at lr 1e-2), depth-μP's (base/L)^0.5 nearly (-0.19 to -0.25). The logits stay
    # flat in all three: the final LayerNorm re-normalizes the stream before the head (measured |slope| < 0.1).
    none = depth_slopes("none", embedded_tokens)
    completep = depth_slopes("completep", embedded_tokens)
    depth_mup = depth_slopes("depth-mup", embedded_tokens)
    assert min(none["mid"], none["last"]) > 0.7, f"control without a rule did not grow: {none}"
    assert all(abs(completep[k]) < 0.25 for k in ("mid", "last", "logits")), f"completep not flat: {completep}"
    assert all(abs(depth_mup[k]) < 0.35 for k in ("mid", "last", "logits")), f"depth-mup not flat: {depth_mup}"
    assert abs(none["logits"]) < 0.25


# -- the rule's groups, and the identity at base depth ----------------------------------------

def test_at_base_depth_the_rule_changes_nothing(embedded_tokens):
    cfg = nano_config(max_tokens=128 * 8)
    plain = pretrain(cfg, tokens=embedded_tokens, log=None)
    ruled = pretrain(with_model(cfg, depth_rule="completep", base_depth=1), tokens=embedded_tokens, log=None)
    assert ruled.evals == plain.evals  # bit for bit: every factor is 1
    deeper = with_model(cfg, n_layers=2, depth_rule="completep", base_depth=1)
    assert pretrain(deeper, tokens=embedded_tokens, log=None).evals != plain.evals


@pytest.mark.parametrize("rule, alpha", [("completep", 1.0), ("depth-mup", 0.5)])
def test_groups_follow_completep_table_1(rule, alpha):
    # 8 layers over base depth 2 (L = 4), width 64 over base 16 (m = 4)
    cfg = GPTConfig(vocab_size=128, context_len=16, emb_dim=64, n_layers=8, n_heads=4, parametrization="mup",
                    base_width=16, depth_rule=rule, base_depth=2)
    model = GPT(cfg)
    assert model.blocks[0].branch_mult == pytest.approx(4 ** -alpha)
    by_id = {id(p): g for g in param_groups(model, 0.1) for p in g["params"]}
    L, m, eps = 4.0, 4.0, 1e-8
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        got = (g["lr_scale"], g["weight_decay"], g["eps"])
        if name.startswith("blocks.") and p.ndim == 2:
            want = (L ** (alpha - 1) / m, 0.1 * m, eps / (m * L ** alpha))
        elif name.startswith("blocks."):
            want = (L ** (alpha - 1), 0.1, eps / L ** alpha)
        elif name == "head.weight":
            want = (1.0, 0.1, eps / m)
        else:
            want = (1.0, 0.1, eps)
        assert got == pytest.approx(want), name


def test_residual_projection_init_keeps_the_proxys_depth():
    torch.manual_seed(0)
    deep = GPT(GPTConfig(vocab_size=128, context_len=16, emb_dim=256, n_layers=8, n_heads=4,
                         depth_rule="completep", base_depth=2))
    assert deep.blocks[0].mlp[2].weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.05)
    plain = GPT(GPTConfig(vocab_size=128, context_len=16, emb_dim=256, n_layers=8, n_heads=4))
    assert plain.blocks[0].mlp[2].weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)


def test_depth_rule_resumes_exactly_and_checkpoints_name_it(tmp_path, embedded_tokens):
    cfg = nano_config(max_tokens=128 * 16)
    cfg = PretrainConfig.from_dict({**cfg.to_dict(), "eval": {"eval_freq": 4, "eval_iter": 2, "checkpoint_freq": 4}})
    cfg = with_model(cfg, n_layers=2, depth_rule="completep", base_depth=1, parametrization="mup", base_width=16)
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path)
    assert resumed.evals == straight.evals
    with pytest.raises(CheckpointError, match="depth_rule: checkpoint 'completep' vs config 'none'"):
        Run(with_model(cfg, depth_rule="none"), embedded_tokens).load(tmp_path / "a")


@pytest.mark.parametrize("key, value, expect", [
    ("depth_rule", "complete", "model.depth_rule must be one of none, completep, depth-mup, got 'complete' "
                               "(did you mean 'completep'?)"),
    ("base_depth", 0, "model.base_depth must be a positive integer (the proxy's n_layers) or null, got 0"),
    ("base_depth", 1.5, "model.base_depth must be a positive integer (the proxy's n_layers) or null, got 1.5"),
])
def test_bad_depth_values_are_one_line_config_errors(key, value, expect):
    with pytest.raises(ConfigError) as info:
        PretrainConfig.from_dict({"model": {"preset": "nano", key: value}})
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_depth_fields_are_search_axes():
    assert AXES["depth_rule"] == AXES["base_depth"] == "model"
    cfg = nano_config().with_hparams({"n_layers": 4, "depth_rule": "completep", "base_depth": 1})
    assert cfg.model.depth_mult == 4.0 and cfg.model.depth_alpha == 1.0
