"""A GPT-2 style language model, or a Llama-style one: one file, readable in one sitting.

Token + position embeddings -> dropout -> n pre-LayerNorm blocks (causal self-attention through
``scaled_dot_product_attention`` and a 4x GELU(tanh) MLP) -> final LayerNorm -> output head (no bias).
The Llama-style options (``norm: rmsnorm``, ``mlp: swiglu``, ``positions: rope``, ``linear_bias:
false``; the ``llama-*`` presets) swap in RMSNorm, a SwiGLU MLP and rotary q/k without a position table,
with litgpt's parameter names and math (tests/test_llama.py checks the loss and gradients against litgpt).
The output head is not tied to the token embedding by default, as in the source documents (so
"124M" counts 163M parameters); ``tie_embeddings`` shares it.

Two parametrizations. "sp" is GPT-2's: every matrix drawn with std ``init_std`` at any width, one
learning rate for all. "mup" is the Maximal Update Parametrization (Tensor Programs V, Table 8, the
Adam column; the reference is the ``mup`` package's MuReadout and MuAdamW), so that the best
learning rate and init of a narrow proxy stay best when the model is widened. With the width
multiplier m = emb_dim / base_width:

    hidden matrices (qkv, attn proj, MLP in/out)   init std / sqrt(m)   Adam lr / m, weight decay x m
    readout (head)                                 zero init (untied)   lr, forward x mup_output_mult / m
    embeddings (token, position)                   init std             lr, forward x mup_input_mult
    LayerNorms, biases                             as SP                lr
    attention logits                               q.k * sqrt(base_head_dim) / head_dim (1/d, not 1/sqrt(d))

At m = 1 (emb_dim == base_width) with the default multipliers, and with mup_zero_readout off, a μP
model is exactly the SP model. Width grows by emb_dim at a fixed n_heads (the head dim grows with it):
the attention calibration assumes the proxy had the same n_heads. The LR rules leave this file as
:func:`param_groups`, each group with the ``lr_scale`` the schedule multiplies in.

Depth rules (``depth_rule``; CompleteP, Dey et al. 2025, Table 1, and its reference implementation),
with the depth multiplier L = n_layers / base_depth and α = 1 (completep) or 1/2 (depth-mup):

    residual branches (attention, MLP)      forward x L^-α
    residual projections' init              std / sqrt(2 * base_depth) (GPT-2's rule at the proxy's depth)
    hidden matrices                         Adam lr x L^(α-1) (on top of μP's 1/m)
    in-block LayerNorms and biases          Adam lr x L^(α-1)
    every in-block parameter                Adam ε / L^α (its gradient shrinks with the branch multiplier)

Adam ε also follows μP's width rule (Everett et al. 2024, §3: per-layer ε scaled like the gradient):
ε / m on hidden matrices and on an untied readout. At n_layers == base_depth and m = 1 every factor is
1 and the model and optimizer are exactly the SP model's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError
from trainables.loss import next_token_loss
from trainables.model_config import (  # noqa: F401  (re-exported: the model's config lives beside it)
    DEPTH_RULES, GPT2_VOCAB_SIZE, MODEL_FIELDS, PARAMETRIZATIONS, PRESETS, GPTConfig, count_params, preset_config,
)

class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.emb_dim, 3 * cfg.emb_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.linear_bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.scale = attention_scale(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # flash / memory-efficient kernels where the device has them
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True, scale=self.scale
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


def rope_cache(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (length, head_dim), of the rotary angles pos * base^(-2i/head_dim) (RoFormer §3.4)."""
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (hd/2,)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), theta).repeat(1, 2)  # (T, hd)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hd) by the cached angles, in the "rotate half" layout of Llama and litgpt."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    T = x.size(-2)
    return (x * cos[:T] + rotated * sin[:T]).to(x.dtype)


class SwiGLU(nn.Module):
    """Llama's MLP: proj(silu(fc_1(x)) * fc_2(x)), litgpt's parameter names."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc_1 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.linear_bias)
        self.fc_2 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.linear_bias)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=cfg.linear_bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.silu(self.fc_1(x)) * self.fc_2(x)))  # (B, T, C)


def make_norm(cfg: GPTConfig) -> nn.Module:
    affine = cfg.norm_gains  # false: no gain (and no LayerNorm bias) to train
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.emb_dim, elementwise_affine=affine)
    return nn.RMSNorm(cfg.emb_dim, eps=1e-5, elementwise_affine=affine)


def attention_scale(cfg: GPTConfig) -> float | None:
    """The q.k scale: None (SDPA's 1/sqrt(head_dim)) under SP.

    μP scales by 1/head_dim, because after training q and k are correlated and q.k grows like
    head_dim, not sqrt(head_dim). Calibrated to SP at the base width: sqrt(base_hd) / hd, written
    so that at m = 1 it is exactly 1/sqrt(hd), the same float SDPA uses by default.
    """
    if cfg.parametrization != "mup":
        return None
    hd = cfg.emb_dim // cfg.n_heads
    base_hd = (cfg.base_width or cfg.emb_dim) / cfg.n_heads
    return (1.0 / math.sqrt(hd)) * math.sqrt(base_hd / hd)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        # the depth rule's branch multiplier (base_depth / n_layers)^α: 1 without a rule or at base depth
        self.branch_mult = cfg.depth_mult ** -cfg.depth_alpha if cfg.depth_alpha is not None else 1.0
        self.ln1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        if cfg.mlp == "swiglu":
            self.mlp = SwiGLU(cfg)
        else:  # GPT-2's, as a Sequential so checkpoints keep the names mlp.0 / mlp.2
            self.mlp = nn.Sequential(
                nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.linear_bias),
                nn.GELU(approximate="tanh"),
                nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=cfg.linear_bias),
                nn.Dropout(cfg.dropout),
            )

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if self.branch_mult != 1.0:
            x = x + self.branch_mult * self.attn(self.ln1(x), rope)
            return x + self.branch_mult * self.mlp(self.ln2(x))
        x = x + self.attn(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))


def param_role(name: str, p: nn.Parameter) -> str:
    """What μP treats ``name`` as: hidden (a width x width matrix), embedding, readout or vector.

    A tied head is reached as ``tok_emb.weight`` (named_parameters lists a shared tensor once), so
    it is an embedding: embedding init and learning rate, the readout multiplier still in forward.
    """
    if name in ("tok_emb.weight", "pos_emb.weight"):
        return "embedding"
    if name == "head.weight":
        return "readout"
    return "hidden" if p.ndim == 2 else "vector"  # LayerNorm weights and biases, all biases


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        problems = cfg.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        self.cfg = cfg
        mup = cfg.parametrization == "mup"
        self.tok_emb = nn.Embedding(cfg.padded_vocab, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_len, cfg.emb_dim) if cfg.positions == "learned" else None
        if cfg.positions == "rope":  # not parameters, not saved: rebuilt from the config
            cos, sin = rope_cache(cfg.emb_dim // cfg.n_heads, cfg.context_len, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = make_norm(cfg)
        self.head = nn.Linear(cfg.emb_dim, cfg.padded_vocab, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight  # (vocab, C) serves both
        # forward multipliers: 1 under SP, and under μP at base width with the default α's
        self.input_mult = cfg.mup_input_mult if mup else 1.0
        self.readout_mult = cfg.mup_output_mult / cfg.width_mult if mup else 1.0
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """GPT-2's init, then μP's changes to it (see the module docstring).

        μP scales the SP draws instead of drawing again, so the random stream is the same and a μP
        model at m = 1 without the zero readout starts from exactly the SP weights.
        """
        cfg = self.cfg
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=cfg.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=cfg.init_std)
        # a tied head's draw above replaced the token embedding's draw, from the same law
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layers) so the residual stream's
        # variance does not grow with depth. Under a depth rule the branch multiplier does that, and
        # the init keeps the proxy's depth (base_depth), so a deeper model draws the proxy's weights.
        init_depth = cfg.n_layers / cfg.depth_mult
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):  # attn.proj, mlp.2 / mlp.proj
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * init_depth))
        if cfg.parametrization != "mup":
            return
        for name, p in self.named_parameters():
            role = param_role(name, p)
            if role == "hidden":
                p.mul_(1.0 / math.sqrt(cfg.width_mult))  # variance ~ 1/fan_in, equal to SP at base
            elif role == "readout" and cfg.mup_zero_readout:
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) of the next token; with ``targets`` (B, T), their mean cross-entropy instead
        (fp32 scalar, computed without materializing fp32 logits on CPU: trainables/loss.py)."""
        B, T = idx.shape
        if T > self.cfg.context_len:
            raise ValueError(f"sequence length {T} exceeds model.context_len {self.cfg.context_len}")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        if self.input_mult != 1.0:
            x = x * self.input_mult
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.cfg.positions == "rope" else None
        for block in self.blocks:
            x = block(x, rope)
        x = self.ln_f(x)
        if self.readout_mult != 1.0:  # μP: on the (B, T, C) input, cheaper than on the logits
            x = x * self.readout_mult
        if targets is not None:
            return next_token_loss(x, self.head.weight, targets, self.cfg.vocab_size)
        logits = self.head(x)  # (B, T, padded_vocab)
        if self.cfg.pad_vocab:
            logits = logits[..., : self.cfg.vocab_size]  # (B, T, vocab): padding rows never enter the loss
        return logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a tied weight counts once


ADAM_EPS = 1e-8
"""torch's AdamW default ε, the value at the base width and depth."""


def param_groups(model: GPT, weight_decay: float) -> list[dict]:
    """AdamW parameter groups, each with the ``lr_scale`` the LR schedule multiplies its LR by.

    SP without a depth rule: one group with every parameter, lr_scale 1, ε 1e-8 (plain GPT-2 training).
    μP (the Adam column of Tensor Programs V, Table 8, as the mup package's MuAdamW), m = width_mult,
    and a depth rule (CompleteP, Dey et al. 2025, Table 1), L = depth_mult, α its exponent:

        hidden matrices (qkv, attn proj, MLP in/out)   lr_scale L^(α-1)/m   weight_decay x m   ε / (m L^α)
        in-block LayerNorms and biases                 lr_scale L^(α-1)     weight_decay       ε / L^α
        readout (untied)                               lr_scale 1           weight_decay       ε / m
        embeddings, final LayerNorm                    lr_scale 1           weight_decay       ε

    The readout's LR stays unscaled: its forward multiplier 1/m already shrinks its update's effect.
    Weight decay: torch's AdamW decays decoupled, p <- p * (1 - lr * wd). MuAdamW multiplies wd by m
    wherever it divides lr by m, so the decay per step (lr * wd) is the same at every width; same here.
    ε follows each group's gradient scale (Everett et al. 2024; CompleteP's ε rule), so Adam's
    normalisation is not swamped by ε as gradients shrink with width and depth.
    Parameters with equal settings share a group, so SP and μP at m = 1, L = 1 get one group, in
    ``model.parameters()`` order: the optimizer (and its checkpoint) of an SP model is unchanged.
    Call it on the bare GPT (roles go by parameter name); a DDP wrapper added later shares the tensors.
    """
    cfg = model.cfg
    m = cfg.width_mult if cfg.parametrization == "mup" else 1.0
    L, alpha = cfg.depth_mult, cfg.depth_alpha or 0.0
    depth_lr, depth_eps = L ** (alpha - 1.0), L ** -alpha
    groups: dict[tuple[float, float, float], dict] = {}
    for name, p in model.named_parameters():
        role = param_role(name, p)
        in_block = name.startswith("blocks.")
        lr_scale, wd, eps = 1.0, weight_decay, ADAM_EPS
        if role == "hidden":
            lr_scale, wd, eps = depth_lr / m, weight_decay * m, ADAM_EPS * depth_eps / m
        elif in_block:
            lr_scale, eps = depth_lr, ADAM_EPS * depth_eps
        elif role == "readout":
            eps = ADAM_EPS / m
        key = (lr_scale, wd, eps)
        groups.setdefault(key, {"params": [], "lr_scale": lr_scale, "weight_decay": wd, "eps": eps})
        groups[key]["params"].append(p)
    return list(groups.values())
