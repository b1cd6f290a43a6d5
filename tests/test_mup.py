"""μP (model.parametrization: mup): width transfer, its LR groups, and that it trains like any run."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import coordinate_slopes, nano_config, straight_and_resumed, with_model

from trainables.config import AXES, PretrainConfig
from trainables.errors import CheckpointError, ConfigError
from trainables.model import GPT, GPTConfig, count_params, param_groups, preset_config
from trainables.pretrain import Run, pretrain

HIDDEN = ("attn.qkv.weight", "attn.proj.weight", "mlp.0.weight", "mlp.2.weight")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


# -- (a) coordinate check ---------------------------------------------------------------------

WIDTHS = (32, 64, 128, 256)


LLAMA = {"norm": "rmsnorm", "mlp": "swiglu", "positions": "rope", "linear_bias": False}


def width_slopes(parametrization: str, tokens: np.ndarray, **style) -> dict[str, float]:
    """The coordinate check across widths 32..256 at 4 heads (head dim 8..64), base width 32, 2 layers:
    the embedding output, every attention and MLP output, and the logits (tests/helpers.py)."""
    def make(width):
        return GPT(GPTConfig(vocab_size=512, context_len=32, emb_dim=width, n_layers=2, n_heads=4, dropout=0.0,
                             parametrization=parametrization, base_width=WIDTHS[0], **style))

    def watch(model):
        watched = {"embedding": model.drop, "logits": model.head}
        for i, block in enumerate(model.blocks):
            watched[f"attn{i}"], watched[f"mlp{i}"] = block.attn, block.mlp
        return watched

    return coordinate_slopes(make, WIDTHS, tokens, watch)


@pytest.mark.parametrize("style", [{}, LLAMA], ids=["gpt2-block", "llama-block"])
def test_coordinates_stay_put_as_width_grows_under_mup_and_blow_up_under_sp(embedded_tokens, style):
    # After a few Adam steps a hidden update adds ~lr per weight entry, aligned with its input, so
    # under SP a layer's output grows like lr * width (slope 1; the logits start at slope 0.5 from
    # the fixed-std init). μP's 1/m LRs and readout multiplier cancel that: slope 0 up to finite-width
    # noise, measured at |slope| <= 0.02 here; 0.25 leaves room for seeds and BLAS while staying far
    # below what SP shows (hidden slopes 1.5-2, logits 0.6).
    mup = width_slopes("mup", embedded_tokens, **style)
    sp = width_slopes("sp", embedded_tokens, **style)
    assert set(mup) == {"embedding", "attn0", "mlp0", "attn1", "mlp1", "logits"}
    flat = {k: round(v, 3) for k, v in mup.items()}
    # The Llama block (RMSNorm gains, SwiGLU's product of two projections) keeps a finite-width drift in
    # its MLP output at these tiny widths: measured -0.21 to -0.30, against SP's 1.7-2.6.
    limit = 0.35 if style else 0.25
    assert all(abs(v) < limit for v in mup.values()), f"μP slopes not flat: {flat}"
    assert sp["logits"] > 0.4, f"SP control: logits did not grow with width: {sp}"
    assert min(sp[k] for k in ("attn0", "mlp0", "attn1", "mlp1")) > 1.0, f"SP control: {sp}"
    assert abs(sp["embedding"]) < 0.25  # embeddings are width-independent in both


# -- (b) μP at its base width is SP -----------------------------------------------------------

def test_mup_at_base_width_trains_exactly_like_sp(embedded_tokens):
    cfg = nano_config(max_tokens=128 * 8)
    sp = pretrain(cfg, tokens=embedded_tokens, log=None)
    same = pretrain(with_model(cfg, parametrization="mup"), tokens=embedded_tokens, log=None)
    assert same.evals == sp.evals  # bit for bit with μP's defaults: every multiplier is 1, the draws shared
    zero_head = pretrain(with_model(cfg, parametrization="mup", mup_zero_readout=True), tokens=embedded_tokens, log=None)
    assert zero_head.evals != sp.evals  # the zero readout (now opt-in) is the one difference


def test_zero_readout_starts_at_the_uniform_loss():
    torch.manual_seed(0)
    model = GPT(preset_config("nano", vocab_size=512, parametrization="mup", base_width=16, mup_zero_readout=True))
    assert torch.count_nonzero(model.head.weight) == 0
    loss = F.cross_entropy(model(torch.randint(0, 512, (2, 8))).flatten(0, 1), torch.zeros(16, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(512), abs=1e-5)


# -- (c) learning rates per parameter group ---------------------------------------------------

def group_lrs(run: Run) -> dict[str, tuple[float, float]]:
    """(lr, weight_decay) of every parameter, by name."""
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in run.optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in run.model.named_parameters()}


def test_hidden_matrices_get_lr_over_width_mult_in_warmup_and_cosine(embedded_tokens):
    cfg = with_model(nano_config(max_tokens=128 * 8, weight_decay=0.1), parametrization="mup", base_width=8)
    run = Run(cfg, embedded_tokens)  # emb_dim 32 = 4 x base_width
    assert run.model.cfg.width_mult == 4.0
    n_params = sum(len(g["params"]) for g in run.optimizer.param_groups)
    assert n_params == len(list(run.model.parameters()))  # every parameter in exactly one group

    def check(step: int) -> None:
        lr = run.lr(step)
        for name, (group_lr, wd) in group_lrs(run).items():
            if name.endswith(HIDDEN):
                assert (group_lr, wd) == (pytest.approx(lr / 4), pytest.approx(0.4)), name
            else:  # embeddings, readout, LayerNorms, biases
                assert (group_lr, wd) == (pytest.approx(lr), pytest.approx(0.1)), name

    assert run.set_lr(1) == run.lr(1) < cfg.train.peak_lr  # warmup (2 steps)
    check(1)
    seen = []
    run.train(on_eval=lambda m, save: (seen.append(m["step"]), check(m["step"] - 1)), log=None)
    assert seen == [4, 8] and run.lr(7) < run.lr(3) < cfg.train.peak_lr  # cosine phase, as training set it


def test_sp_has_one_group_at_lr_scale_1(embedded_tokens):
    run = Run(nano_config(), embedded_tokens)
    (group,) = run.optimizer.param_groups
    assert group["lr_scale"] == 1.0 and group["params"] == list(run.model.parameters())


# -- (d) checkpoints, DDP, bf16, tying, config errors -----------------------------------------

@pytest.mark.parametrize("tied", [False, True])
def test_mup_resume_continues_exactly(tmp_path, embedded_tokens, tied):
    cfg = nano_config(max_tokens=128 * 16)
    cfg = PretrainConfig.from_dict({**cfg.to_dict(), "eval": {"eval_freq": 4, "eval_iter": 2, "checkpoint_freq": 4}})
    cfg = with_model(cfg, parametrization="mup", base_width=16, tie_embeddings=tied, mup_output_mult=2.0)
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path)
    assert resumed.steps == straight.steps == 16
    assert resumed.evals == straight.evals
    assert straight.evals[-1]["val_loss"] < straight.evals[0]["val_loss"]


def test_checkpoint_of_another_parametrization_is_refused(tmp_path, embedded_tokens):
    cfg = with_model(nano_config(max_tokens=128 * 4), parametrization="mup", base_width=16)
    pretrain(cfg, tokens=embedded_tokens, out_dir=tmp_path / "run", log=None)
    with pytest.raises(CheckpointError, match="parametrization: checkpoint 'mup' vs config 'sp'; "
                                              "base_width: checkpoint 16 vs config None"):
        Run(nano_config(max_tokens=128 * 4), embedded_tokens).load(tmp_path / "run")
    with pytest.raises(CheckpointError, match="tie_embeddings: checkpoint False vs config True"):
        Run(with_model(cfg, tie_embeddings=True), embedded_tokens).load(tmp_path / "run")


def test_ddp_wrapper_keeps_groups_multipliers_and_results(tmp_path, embedded_tokens):
    import torch.distributed as dist

    from trainables.ddp import _DDP, _Shard

    cfg = with_model(nano_config(max_tokens=128 * 8), parametrization="mup", base_width=8)
    bare = Run(cfg, embedded_tokens).train(log=None)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        run = Run(cfg, embedded_tokens)
        keys = list(run.model.state_dict())
        run.model = _DDP(run.model)
        run.train_loader = _Shard(run.train_loader, 0, 1)
        wrapped = run.train(log=None)
    finally:
        dist.destroy_process_group()
    assert run.model.module.readout_mult == 0.25 and list(run.model.state_dict()) == keys  # no "module." prefix
    assert sorted((g["lr_scale"], g["eps"]) for g in run.optimizer.param_groups) == [
        (0.25, 1e-8 / 4), (1.0, 1e-8 / 4), (1.0, 1e-8)]  # hidden; readout (ε / m); the rest
    assert wrapped.evals == bare.evals


def test_bf16_autocast_forward_is_finite_and_close_to_fp32(embedded_tokens):
    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_size=512, parametrization="mup", base_width=32, mup_zero_readout=False)
    model = GPT(cfg).eval()  # width_mult 2: every μP multiplier is active
    x = torch.from_numpy(embedded_tokens[: 4 * 65].astype(np.int64) % 512).view(4, 65)
    fp32 = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x[:, :-1])
    bf16 = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
    assert logits.dtype == torch.bfloat16 and math.isfinite(bf16.item())
    assert bf16.item() == pytest.approx(fp32.item(), abs=0.02)


def test_tied_embeddings_share_one_weight_and_count_once():
    cfg = preset_config("nano", tie_embeddings=True, parametrization="mup", base_width=16)
    model = GPT(cfg)
    assert model.head.weight is model.tok_emb.weight
    assert model.num_params() == count_params(cfg) == count_params(preset_config("nano")) - 32 * 50257
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)  # embedding init, not zero
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    embedding_group = next(g for g in groups if any(p is model.tok_emb.weight for p in g["params"]))
    assert embedding_group["lr_scale"] == 1.0


def test_hidden_init_std_shrinks_with_width():
    torch.manual_seed(0)
    wide = GPT(preset_config("tiny", parametrization="mup", base_width=16, init_std=0.04))  # m = 4
    assert wide.blocks[0].mlp[0].weight.std().item() == pytest.approx(0.04 / 2, rel=0.05)
    assert wide.blocks[0].mlp[2].weight.std().item() == pytest.approx(0.04 / 2 / 2, rel=0.05)  # / sqrt(2 layers * 2)
    assert wide.pos_emb.weight.std().item() == pytest.approx(0.04, rel=0.05)
    assert wide.blocks[0].attn.scale == pytest.approx(math.sqrt(8) / 32)  # sqrt(base head dim) / head dim


@pytest.mark.parametrize("key, value, expect", [
    ("parametrization", "xp", "model.parametrization must be 'sp' or 'mup', got 'xp'"),
    ("parametrization", "mupp", "model.parametrization must be 'sp' or 'mup', got 'mupp' (did you mean 'mup'?)"),
    ("base_width", 0, "model.base_width must be a positive integer (the proxy's emb_dim) or null, got 0"),
    ("base_width", 15, "model.base_width (15) must be divisible by model.n_heads (2)"),
    ("init_std", -0.02, "model.init_std must be a number > 0, got -0.02"),
    ("mup_output_mult", 0, "model.mup_output_mult must be a number > 0, got 0"),
    ("tie_embeddings", "yes", "model.tie_embeddings must be true or false, got 'yes'"),
])
def test_bad_mup_values_are_one_line_config_errors(key, value, expect):
    with pytest.raises(ConfigError) as info:
        PretrainConfig.from_dict({"model": {"preset": "nano", key: value}})
    message = str(info.value)
    assert expect in message and "\n" not in message


def test_mup_fields_are_search_axes():
    for name in ("parametrization", "base_width", "init_std", "mup_input_mult", "mup_output_mult",
                 "tie_embeddings", "mup_zero_readout"):
        assert AXES[name] == "model"
    cfg = nano_config().with_hparams({"parametrization": "mup", "base_width": 16, "mup_output_mult": 2.0})
    assert cfg.model.width_mult == 2.0 and cfg.model.parametrization == "mup"
