"""The model's shape and parametrization: a dataclass and its presets, importable without torch.

``GPTConfig`` is what a config file's ``model:`` section holds; trainables/model.py builds the network
from it. Keeping it apart from the network lets the light commands (``hpsearch --help``, ``ls``,
``spaces``, ``results``) and config validation run without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from trainables.errors import ConfigError, brief, did_you_mean, word

GPT2_VOCAB_SIZE = 50257  # tiktoken "gpt2": 50,000 merges + 256 bytes + <|endoftext|>
PARAMETRIZATIONS = ("sp", "mup")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "rope")
DEPTH_RULES = {"none": None, "completep": 1.0, "depth-mup": 0.5}
"""model.depth_rule -> α, the exponent of the residual branch multiplier (base_depth / n_layers)^α."""


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
    linear_bias: bool = True
    """Biases on the attention output and MLP matrices (GPT-2's); Llama-style blocks have none."""
    norm: str = "layernorm"
    """layernorm (GPT-2: scale and bias) or rmsnorm (Llama: scale only, no mean subtraction)."""
    norm_gains: bool = True
    """Trainable norm gains (and LayerNorm biases). false: parameter-free norms (OLMo's non-parametric
    LayerNorm); measured for μP width transfer on the Llama-style block in bench/RESULTS.md."""
    mlp: str = "gelu"
    """gelu (GPT-2: 4d GELU(tanh) MLP) or swiglu (Llama: silu(x W1) * (x W3), then W2)."""
    mlp_hidden: int | None = None
    """The MLP's hidden size; null = 4 x emb_dim for gelu, Llama's rule for swiglu (8/3 x emb_dim
    rounded up to a multiple of 64; under μP taken at base_width and widened by m). A set value is
    widened with the model by `hpsearch export --target-width`."""
    positions: str = "learned"
    """learned (GPT-2: a context_len x emb_dim table added to the tokens) or rope (rotary q/k, no table)."""
    rope_base: float = 10000.0
    """RoPE: the base of the rotary frequencies (Llama 2: 10,000; Llama 3: 500,000)."""
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
    mup_zero_readout: bool = False
    """μP: start an untied head at zero (logits 0, loss log(vocab)). Off by default: the readout's
    forward multiplier 1/m already gives μP's readout scale, and a zero head trained 0.27 nats worse
    than SP at the proxy's own width (issue 30); off, a μP model at base_width is exactly the SP model.
    Ignored under sp and with tie_embeddings."""
    depth_rule: str = "none"
    """How hyperparameters carry across n_layers: none; completep (Dey et al. 2025: residual branches
    x (base_depth / n_layers)^1, Adam ε / depth_mult); depth-mup (α = 1/2: branches x (base/L)^0.5,
    hidden LRs x depth_mult^-0.5, ε / depth_mult^0.5). README: "What transfers"."""
    base_depth: int | None = None
    """The depth rule's reference: the tuned proxy's n_layers, where the rule changes nothing; null =
    this n_layers. Set it to the proxy's n_layers when exporting to a deeper model."""

    @property
    def padded_vocab(self) -> int:
        """Rows of the embedding and the head: vocab_size, rounded up to a multiple of 64 with pad_vocab."""
        return -(-self.vocab_size // 64) * 64 if self.pad_vocab else self.vocab_size

    @property
    def hidden_dim(self) -> int:
        """The MLP's hidden size: mlp_hidden, else 4 x emb_dim (gelu) or Llama's rule (swiglu).

        Llama's rule is 8/3 x width rounded up to a multiple of 64. Under μP it is applied at base_width
        and the result widened by m, so the MLP's ratio stays fixed across widths as μP needs (at proxy
        widths the rounding alone moves it between 2.75 and 4, which bent the coordinate check).
        """
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            base = self.base_width if self.parametrization == "mup" and self.base_width else self.emb_dim
            return round(-(-(8 * base) // (3 * 64)) * 64 * self.emb_dim / base)
        return 4 * self.emb_dim

    @property
    def width_mult(self) -> float:
        """m = emb_dim / base_width under μP (hidden LRs / m, readout / m); 1 under SP."""
        if self.parametrization != "mup" or self.base_width is None:
            return 1.0
        return self.emb_dim / self.base_width

    @property
    def depth_alpha(self) -> float | None:
        """α of the depth rule (1 for completep, 1/2 for depth-mup), None without one."""
        return DEPTH_RULES.get(self.depth_rule)

    @property
    def depth_mult(self) -> float:
        """n_layers / base_depth under a depth rule; 1 without one (or with base_depth null)."""
        if self.depth_alpha is None or self.base_depth is None:
            return 1.0
        return self.n_layers / self.base_depth

    def problems(self) -> list[str]:
        """Every way this config is invalid, as messages naming the field and the fix."""
        out = []
        for name in ("vocab_size", "context_len", "emb_dim", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                out.append(f"model.{name} must be a positive integer, got {brief(value)}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            out.append(f"model.dropout must be in [0, 1), got {brief(self.dropout)}")
        for name in ("qkv_bias", "linear_bias", "norm_gains", "tie_embeddings", "mup_zero_readout", "pad_vocab"):
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
        for name, allowed in (("norm", NORMS), ("mlp", MLPS), ("positions", POSITIONS)):
            value = getattr(self, name)
            if value not in allowed:
                out.append(f"model.{name} must be one of {', '.join(allowed)}, got {brief(value)}"
                           f"{did_you_mean(word(value), allowed)}")
        if self.mlp_hidden is not None and (not _is_int(self.mlp_hidden) or self.mlp_hidden < 1):
            out.append(f"model.mlp_hidden must be a positive integer or null (the MLP's rule), got {brief(self.mlp_hidden)}")
        if not _is_number(self.rope_base) or self.rope_base <= 1:
            out.append(f"model.rope_base must be a number > 1, got {brief(self.rope_base)}")
        if self.depth_rule not in DEPTH_RULES:
            out.append(f"model.depth_rule must be one of {', '.join(DEPTH_RULES)}, got {brief(self.depth_rule)}"
                       f"{did_you_mean(word(self.depth_rule), DEPTH_RULES)}")
        depth = self.base_depth
        if depth is not None and (not _is_int(depth) or depth < 1):
            out.append(f"model.base_depth must be a positive integer (the proxy's n_layers) or null, got {brief(depth)}")
        if not out and self.emb_dim % self.n_heads:
            out.append(
                f"model.emb_dim ({self.emb_dim}) must be divisible by model.n_heads ({self.n_heads}); "
                "change one of them"
            )
        if not out and self.positions == "rope" and (self.emb_dim // self.n_heads) % 2:
            out.append(f"model.positions rope needs an even head dim, got emb_dim {self.emb_dim} / n_heads "
                       f"{self.n_heads} = {self.emb_dim // self.n_heads}; change emb_dim or n_heads")
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
# Llama-style blocks (RMSNorm, SwiGLU, RoPE, no biases) at the proxy sizes above, and real targets'
# shapes for export (their head counts; grouped-query attention is not modelled: every head has its k/v).
_LLAMA = dict(norm="rmsnorm", mlp="swiglu", positions="rope", linear_bias=False, qkv_bias=False, dropout=0.0)
PRESETS |= {
    "llama-nano": GPTConfig(context_len=32, emb_dim=32, n_layers=1, n_heads=2, **_LLAMA),
    "llama-tiny": GPTConfig(context_len=64, emb_dim=64, n_layers=2, n_heads=2, **_LLAMA),
    "llama-small": GPTConfig(context_len=256, emb_dim=256, n_layers=4, n_heads=4, **_LLAMA),
    "tinyllama-1.1b": GPTConfig(vocab_size=32000, context_len=2048, emb_dim=2048, n_layers=22, n_heads=32,
                                mlp_hidden=5632, **_LLAMA),
    "llama-3.2-1b": GPTConfig(vocab_size=128256, context_len=8192, emb_dim=2048, n_layers=16, n_heads=32,
                              mlp_hidden=8192, rope_base=500000.0, tie_embeddings=True, **_LLAMA),
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


def count_params(cfg: GPTConfig) -> int:
    """Parameter count of a model with this config, without allocating it."""
    C, V, L, H = cfg.emb_dim, cfg.padded_vocab, cfg.n_layers, cfg.hidden_dim
    b = 1 if cfg.linear_bias else 0
    qkv = C * 3 * C + (3 * C if cfg.qkv_bias else 0)
    attn = qkv + C * C + b * C
    mlp = (3 * C * H + b * (2 * H + C)) if cfg.mlp == "swiglu" else (2 * C * H + b * (H + C))
    norm = (C * (2 if cfg.norm == "layernorm" else 1)) if cfg.norm_gains else 0
    block = attn + mlp + 2 * norm
    head = 0 if cfg.tie_embeddings else C * V
    positions = cfg.context_len * C if cfg.positions == "learned" else 0
    return V * C + positions + L * block + norm + head
