"""The GPT model."""

import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import PretrainConfig
from trainables.corpus import WindowLoader
from trainables.errors import ConfigError
from trainables.model import GPT, PRESETS, count_params, preset_config


def test_gpt2_124m_has_the_documents_parameter_count():
    # untied output head, as in the source documents: 163,009,536
    assert count_params(PRESETS["gpt2-124m"]) == 163_009_536


def test_count_matches_the_module():
    for name in ("nano", "tiny"):
        assert GPT(PRESETS[name]).num_params() == count_params(PRESETS[name])


def test_untrained_loss_is_close_to_uniform(embedded_tokens):
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]
    model = GPT(cfg).eval()
    loader = WindowLoader(embedded_tokens, context_len=cfg.context_len, stride=cfg.context_len,
                          batch_size=8, shuffle=False, drop_last=True)
    x, y = next(iter(loader))
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert logits.shape == (8, cfg.context_len, 50257)
    assert abs(loss - math.log(50257)) < 0.5


def test_invalid_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="divisible by model.n_heads"):
        GPT(preset_config("tiny", emb_dim=65))
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        PretrainConfig.from_dict({"model": {"preset": "tinny"}})
