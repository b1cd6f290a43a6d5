"""A GPT-2 style language model: one file, readable in one sitting.

Token + position embeddings -> dropout -> n pre-LayerNorm blocks (causal self-attention through
``scaled_dot_product_attention`` and a 4x GELU(tanh) MLP) -> final LayerNorm -> output head (no bias).
The output head is not tied to the token embedding, as in the source documents (so "124M" counts
163M parameters).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError, did_you_mean

GPT2_VOCAB_SIZE = 50257  # tiktoken "gpt2": 50,000 merges + 256 bytes + <|endoftext|>


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = GPT2_VOCAB_SIZE
    """Output classes. 50,304 (a multiple of 64) is faster on GPUs; ids >= 50,257 never occur."""
    context_len: int = 1024
    """Longest sequence the position embedding covers (and the window length of the data)."""
    emb_dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    dropout: float = 0.1
    """Applied to embeddings, attention weights and residual branches; 0 disables it."""
    qkv_bias: bool = False
    """GPT-2 had biases on q/k/v; the source documents train without them."""

    def problems(self) -> list[str]:
        """Every way this config is invalid, as messages naming the field and the fix."""
        out = []
        for name in ("vocab_size", "context_len", "emb_dim", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"model.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            out.append(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if not out and self.emb_dim % self.n_heads:
            out.append(
                f"model.emb_dim ({self.emb_dim}) must be divisible by model.n_heads ({self.n_heads}); "
                "change one of them"
            )
        return out


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # (B, nh, T, hs); flash / memory-efficient kernels where the device has them
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


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


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        problems = cfg.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_len, cfg.emb_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.emb_dim)
        self.head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layers) so the residual stream's
        # variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.cfg.context_len:
            raise ValueError(f"sequence length {T} exceeds model.context_len {self.cfg.context_len}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, vocab)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_params(cfg: GPTConfig) -> int:
    """Parameter count of a model with this config, without allocating it."""
    C, V, L = cfg.emb_dim, cfg.vocab_size, cfg.n_layers
    qkv = C * 3 * C + (3 * C if cfg.qkv_bias else 0)
    attn = qkv + C * C + C
    mlp = C * 4 * C + 4 * C + 4 * C * C + C
    block = attn + mlp + 4 * C  # two LayerNorms
    return V * C + cfg.context_len * C + L * block + 2 * C + C * V
