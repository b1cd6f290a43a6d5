"""Llama-style blocks (model.norm rmsnorm, mlp swiglu, positions rope, no biases): the same loss and
gradients as litgpt's own Llama model with the same weights, μP's coordinate check, and training."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import nano_config

from trainables.config import PretrainConfig
from trainables.errors import ConfigError
from trainables.model import GPT, GPTConfig, count_params, param_groups, preset_config
from trainables.pretrain import pretrain

litgpt = pytest.importorskip("litgpt")


def litgpt_twin(cfg: GPTConfig):
    """litgpt's GPT with the same architecture, and the map from its parameter names to ours."""
    from litgpt.config import Config
    from litgpt.model import GPT as LitGPT

    lit = LitGPT(Config(name="twin", block_size=cfg.context_len, vocab_size=cfg.vocab_size,
                        padded_vocab_size=cfg.vocab_size, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                        n_embd=cfg.emb_dim, n_query_groups=cfg.n_heads, rotary_percentage=1.0,
                        parallel_residual=False, bias=False, norm_class_name="RMSNorm", norm_eps=1e-5,
                        mlp_class_name="LLaMAMLP", intermediate_size=cfg.hidden_dim, rope_base=int(cfg.rope_base)))
    names = {"transformer.wte.weight": "tok_emb.weight", "transformer.ln_f.weight": "ln_f.weight",
             "lm_head.weight": "head.weight"}
    for i in range(cfg.n_layers):
        for lit_name, ours in (("norm_1", "ln1"), ("norm_2", "ln2"), ("attn.qkv", "attn.qkv"),
                               ("attn.proj", "attn.proj"), ("mlp.fc_1", "mlp.fc_1"), ("mlp.fc_2", "mlp.fc_2"),
                               ("mlp.proj", "mlp.proj")):
            names[f"transformer.h.{i}.{lit_name}.weight"] = f"blocks.{i}.{ours}.weight"
    return lit, names


def test_loss_and_gradients_match_litgpts_llama():
    torch.manual_seed(0)
    cfg = preset_config("llama-nano", vocab_size=256, context_len=16, emb_dim=32, n_layers=2, n_heads=2)
    ours = GPT(cfg).double()
    lit, names = litgpt_twin(cfg)
    lit = lit.double()
    mine = dict(ours.named_parameters())
    assert set(names.values()) == set(mine), "every parameter of ours has a litgpt twin"
    with torch.no_grad():
        for lit_name, p in lit.named_parameters():
            p.copy_(mine[names[lit_name]])
    x = torch.randint(0, 256, (3, 16))
    y = torch.randint(0, 256, (3, 16))
    loss = F.cross_entropy(ours(x).flatten(0, 1), y.flatten())
    ref = F.cross_entropy(lit(x).flatten(0, 1), y.flatten())
    assert loss.item() == pytest.approx(ref.item(), abs=1e-7)  # float64 weights; both cache RoPE angles in fp32
    loss.backward()
    ref.backward()
    for lit_name, p in lit.named_parameters():  # agreement to ~1e-7 of the largest entry (the fp32 RoPE cache)
        diff = (mine[names[lit_name]].grad - p.grad).abs().max().item()
        assert diff <= 1e-6 * p.grad.abs().max().item(), (lit_name, diff)
    # the tiled loss of training (targets given) is the same cross-entropy
    assert ours(x, y).item() == pytest.approx(ref.item(), abs=1e-6)


def test_llama_block_has_no_position_table_or_biases_and_counts_its_params():
    cfg = preset_config("llama-tiny")
    model = GPT(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert model.pos_emb is None and not any(n.endswith("bias") for n in names)
    assert model.blocks[0].mlp.fc_1.weight.shape == (192, 64)  # 8/3 x 64 = 170.7, up to a multiple of 64
    assert model.num_params() == count_params(cfg)
    assert "rope_cos" not in model.state_dict()  # rebuilt from the config, never saved


@pytest.mark.parametrize("preset", ["llama-tiny", "tiny"])
def test_parameter_free_norms_have_no_gain_count_so_and_normalise_the_same(preset):
    import torch

    free = GPT(preset_config(preset, norm_gains=False))
    assert not any(".ln" in n or n.startswith("ln_f") for n, _ in free.named_parameters())
    assert free.num_params() == count_params(preset_config(preset, norm_gains=False))
    trained = GPT(preset_config(preset))  # fresh gains are 1 (and biases 0): the same function at init
    trained.load_state_dict(free.state_dict(), strict=False)
    x = torch.randint(0, 50257, (2, 16))
    assert torch.equal(free.eval()(x), trained.eval()(x))
    with pytest.raises(ConfigError, match="model.norm_gains must be"):
        PretrainConfig.from_dict({"model": {"preset": preset, "norm_gains": "no"}})


def test_llama_mup_groups_cover_the_new_parameters():
    model = GPT(preset_config("llama-tiny", parametrization="mup", base_width=16))  # m = 4
    by_id = {id(p): g for g in param_groups(model, 0.1) for p in g["params"]}
    for name, p in model.named_parameters():
        scale = by_id[id(p)]["lr_scale"]
        assert scale == (0.25 if name.startswith("blocks.") and p.ndim == 2 else 1.0), name


def test_llama_proxy_trains_and_resumes_like_any_run(embedded_tokens):
    raw = nano_config(max_tokens=128 * 8).to_dict()
    cfg = PretrainConfig.from_dict({**raw, "model": {"preset": "llama-nano"}})
    run = pretrain(cfg, tokens=embedded_tokens, log=None)
    assert run.status == "completed" and run.evals[-1]["val_loss"] < math.log(50257)


@pytest.mark.parametrize("key, value, expect", [
    ("norm", "batchnorm", "model.norm must be one of layernorm, rmsnorm, got 'batchnorm'"),
    ("mlp", "swigl", "model.mlp must be one of gelu, swiglu, got 'swigl' (did you mean 'swiglu'?)"),
    ("positions", "alibi", "model.positions must be one of learned, rope, got 'alibi'"),
    ("rope_base", 0, "model.rope_base must be a number > 1, got 0"),
    ("mlp_hidden", 0, "model.mlp_hidden must be a positive integer or null"),
])
def test_bad_llama_values_are_one_line_config_errors(key, value, expect):
    with pytest.raises(ConfigError) as info:
        PretrainConfig.from_dict({"model": {"preset": "llama-nano", key: value}})
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_rope_needs_an_even_head_dim():
    with pytest.raises(ConfigError, match="rope needs an even head dim"):
        PretrainConfig.from_dict({"model": {"preset": "llama-nano", "emb_dim": 6, "n_heads": 2}})


def test_token_ids_beyond_the_vocabulary_are_one_line_data_errors(embedded_tokens):
    from trainables.errors import DataError
    from trainables.pretrain import Run

    raw = nano_config().to_dict()
    small = PretrainConfig.from_dict({**raw, "model": {"preset": "llama-nano", "vocab_size": 512}})
    with pytest.raises(DataError, match=r"corpus: token id \d+ is not below model.vocab_size 512"):
        Run(small, embedded_tokens)
    ok = Run(small, embedded_tokens % 512)  # ids inside the vocabulary: the run builds
    assert ok.model.tok_emb.weight.shape == (512, 32)
