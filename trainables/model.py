"""A GPT-2 style language model: one file, readable in one sitting.

Token + position embeddings -> dropout -> n pre-LayerNorm blocks (causal self-attention through
``scaled_dot_product_attention`` and a 4x GELU(tanh) MLP) -> final LayerNorm -> output head (no bias).
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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError, brief, did_you_mean, word
from trainables.loss import next_token_loss

GPT2_VOCAB_SIZE = 50257  # tiktoken "gpt2": 50,000 merges + 256 bytes + <|endoftext|>
PARAMETRIZATIONS = ("sp", "mup")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = GPT2_VOCAB_SIZE
    """Token ids the data holds (GPT-2's 50,257); the loss is a softmax over exactly these."""
    pad_vocab: bool = False
    """Give the embedding and the output head padded_vocab rows (the next multiple of 64: 50,304 for
    GPT-2), which GPU matmul kernels tile better. The extra rows are never looked up and their logits
    are cut off in forward, so the loss stays the one over vocab_size tokens."""
    context_len: int = 1024
    """Longest sequence the position embedding covers (and the window length of the data)."""
    emb_dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    dropout: float = 0.1
    """Applied to embeddings, attention weights and residual branches; 0 disables it."""
    qkv_bias: bool = False
    """GPT-2 had biases on q/k/v; the source documents train without them."""
    tie_embeddings: bool = False
    """The output head reuses the token embedding's weight (GPT-2 did; the source documents do not)."""
    init_std: float = 0.02
    """Std of the normal init of matrices and embeddings (GPT-2's 0.02); under μP, at base_width."""
    parametrization: str = "sp"
    """sp: GPT-2's standard parametrization. mup: μP, whose tuned LR and init transfer across emb_dim."""
    base_width: int | None = None
    """μP: the emb_dim at which μP coincides with SP (the tuned proxy's); null = this emb_dim.
    Set it to the proxy's emb_dim when exporting a tuned μP config to a wider model."""
    mup_input_mult: float = 1.0
    """μP: multiplies the embedding output (α_in of the mup package); ignored under sp."""
    mup_output_mult: float = 1.0
    """μP: the readout multiplies its input by mup_output_mult / width_mult (α_out); ignored under sp."""
    mup_zero_readout: bool = True
    """μP: start an untied head at zero (logits 0, loss log(vocab)); false keeps SP's init, so a μP
    model at base_width is exactly the SP model. Ignored under sp and with tie_embeddings."""

    @property
    def padded_vocab(self) -> int:
        """Rows of the embedding and the head: vocab_size, rounded up to a multiple of 64 with pad_vocab."""
        return -(-self.vocab_size // 64) * 64 if self.pad_vocab else self.vocab_size

    @property
    def width_mult(self) -> float:
        """m = emb_dim / base_width under μP (hidden LRs / m, readout / m); 1 under SP."""
        if self.parametrization != "mup" or self.base_width is None:
            return 1.0
        return self.emb_dim / self.base_width

    def problems(self) -> list[str]:
        """Every way this config is invalid, as messages naming the field and the fix."""
        out = []
        for name in ("vocab_size", "context_len", "emb_dim", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                out.append(f"model.{name} must be a positive integer, got {brief(value)}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            out.append(f"model.dropout must be in [0, 1), got {brief(self.dropout)}")
        for name in ("qkv_bias", "tie_embeddings", "mup_zero_readout", "pad_vocab"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"model.{name} must be true or false, got {brief(getattr(self, name))}")
        for name in ("init_std", "mup_input_mult", "mup_output_mult"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                out.append(f"model.{name} must be a number > 0, got {brief(value)}")
        if self.parametrization not in PARAMETRIZATIONS:
            out.append(f"model.parametrization must be 'sp' or 'mup', got {brief(self.parametrization)}"
                       f"{did_you_mean(word(self.parametrization), PARAMETRIZATIONS)}")
        base = self.base_width
        if base is not None and (not _is_int(base) or base < 1):
            out.append(f"model.base_width must be a positive integer (the proxy's emb_dim) or null, got {brief(base)}")
            base = None
        if not out and self.emb_dim % self.n_heads:
            out.append(
                f"model.emb_dim ({self.emb_dim}) must be divisible by model.n_heads ({self.n_heads}); "
                "change one of them"
            )
        if not out and base is not None and base % self.n_heads:
            out.append(
                f"model.base_width ({base}) must be divisible by model.n_heads ({self.n_heads}), so the base "
                "width has a whole head dim; use the proxy's emb_dim (a multiple of n_heads) or null"
            )
        return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Presets. The CPU proxies keep GPT-2's vocabulary (the output head dominates their cost) and
# shrink everything else so a trial takes seconds on a laptop core.
PRESETS: dict[str, GPTConfig] = {
    "gpt2-124m": GPTConfig(context_len=1024, emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-355m": GPTConfig(context_len=1024, emb_dim=1024, n_layers=24, n_heads=16),
    "small": GPTConfig(context_len=256, emb_dim=256, n_layers=4, n_heads=4),
    "tiny": GPTConfig(context_len=64, emb_dim=64, n_layers=2, n_heads=2),
    "nano": GPTConfig(context_len=32, emb_dim=32, n_layers=1, n_heads=2),
}

MODEL_FIELDS = tuple(f.name for f in fields(GPTConfig))


def preset_config(name: str, **overrides) -> GPTConfig:
    """The preset ``name`` with ``overrides`` applied; unknown names raise ConfigError."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown model preset '{name}'{did_you_mean(name, PRESETS)}; "
            f"choose one of: {', '.join(PRESETS)}"
        )
    return GPTConfig(**{**asdict(PRESETS[name]), **overrides})


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.emb_dim, 3 * cfg.emb_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.scale = attention_scale(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # (B, nh, T, hs); flash / memory-efficient kernels where the device has them
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True, scale=self.scale
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


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
        self.ln1 = nn.LayerNorm(cfg.emb_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.emb_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
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
        self.pos_emb = nn.Embedding(cfg.context_len, cfg.emb_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.emb_dim)
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
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))
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
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        if self.input_mult != 1.0:
            x = x * self.input_mult
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
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


def param_groups(model: GPT, weight_decay: float) -> list[dict]:
    """AdamW parameter groups, each with the ``lr_scale`` the LR schedule multiplies its LR by.

    SP: one group with every parameter, lr_scale 1 (plain GPT-2 training).
    μP (the Adam column of Tensor Programs V, Table 8, as the mup package's MuAdamW), m = width_mult:

        hidden matrices (qkv, attn proj, MLP in/out)    lr_scale 1/m   weight_decay x m
        embeddings, readout, LayerNorms, biases         lr_scale 1     weight_decay

    The readout's LR stays unscaled: its forward multiplier 1/m already shrinks its update's effect.
    Weight decay: torch's AdamW decays decoupled, p <- p * (1 - lr * wd). MuAdamW multiplies wd by m
    wherever it divides lr by m, so the decay per step (lr * wd) is the same at every width; same here.
    Parameters with equal settings share a group, so SP and μP at m = 1 get one group, in
    ``model.parameters()`` order: the optimizer (and its checkpoint) of an SP model is unchanged.
    Call it on the bare GPT (roles go by parameter name); a DDP wrapper added later shares the tensors.
    """
    mup = model.cfg.parametrization == "mup"
    m = model.cfg.width_mult
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if mup and param_role(name, p) == "hidden":
            lr_scale, wd = 1.0 / m, weight_decay * m
        else:
            lr_scale, wd = 1.0, weight_decay
        groups.setdefault((lr_scale, wd), {"params": [], "lr_scale": lr_scale, "weight_decay": wd})
        groups[(lr_scale, wd)]["params"].append(p)
    return list(groups.values())


def count_params(cfg: GPTConfig) -> int:
    """Parameter count of a model with this config, without allocating it."""
    C, V, L = cfg.emb_dim, cfg.padded_vocab, cfg.n_layers
    qkv = C * 3 * C + (3 * C if cfg.qkv_bias else 0)
    attn = qkv + C * C + C
    mlp = C * 4 * C + 4 * C + 4 * C * C + C
    block = attn + mlp + 4 * C  # two LayerNorms
    head = 0 if cfg.tie_embeddings else C * V
    return V * C + cfg.context_len * C + L * block + 2 * C + head
