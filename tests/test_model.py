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


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
@pytest.mark.parametrize("overrides", [{}, {"pad_vocab": True},
                                       {"tie_embeddings": True, "parametrization": "mup", "base_width": 16,
                                        "mup_zero_readout": False, "mup_output_mult": 2.0}])
def test_tiled_loss_equals_cross_entropy_of_the_logits(embedded_tokens, precision, overrides):
    """model(x, targets) (tiled fp32 softmax, gradients in one buffer) against F.cross_entropy on fp32
    logits: same loss and gradients, in fp32 to rounding, under bf16 autocast to bf16's precision."""
    import trainables.loss

    torch.manual_seed(0)
    model = GPT(preset_config("nano", dropout=0.0, **overrides))
    x = torch.from_numpy(embedded_tokens[: 6 * 33].astype("int64")).view(6, 33)
    inputs, targets = x[:, :-1], x[:, 1:]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    results = []
    for tiled in (True, False):
        model.zero_grad(set_to_none=True)
        with autocast:
            if tiled:
                loss = model(inputs, targets)
            else:
                loss = F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten())
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (tiled_loss, tiled_grads), (plain_loss, plain_grads) = results
    tol = dict(rtol=1e-4, atol=1e-6) if precision == "fp32" else dict(rtol=2e-2, atol=2e-4)
    assert tiled_loss == pytest.approx(plain_loss, rel=tol["rtol"])
    for name, grad in plain_grads.items():
        torch.testing.assert_close(tiled_grads[name], grad, **tol, msg=name)
    if overrides.get("pad_vocab"):
        assert not tiled_grads["head.weight"][50257:].any()  # padding rows get no gradient
    with torch.no_grad(), autocast:  # evaluation: the same loss without the gradient buffer
        assert model(inputs, targets).item() == pytest.approx(tiled_loss, rel=tol["rtol"])
    default = trainables.loss.TILE_BYTES
    try:  # several tiles per batch give the same loss as one
        trainables.loss.TILE_BYTES = 4 * 50304 * 7
        with torch.no_grad(), autocast:
            assert model(inputs, targets).item() == pytest.approx(tiled_loss, rel=1e-6)
    finally:
        trainables.loss.TILE_BYTES = default
