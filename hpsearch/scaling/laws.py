"""Compute (C = M * D FLOPs) and the reference laws a fit is compared with (DeepSeek LLM, Step Law); the
checks every scaling function applies to its inputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainables.errors import HPSearchError, first_line
from trainables.model_config import GPTConfig, count_params


class ScalingError(HPSearchError, ValueError):
    """The scaling table, or a request on it, cannot be used; the one-line message says why."""


def flops_per_token(model: GPTConfig) -> float:
    """M: non-embedding training FLOPs per token, attention included (DeepSeek LLM, eq. 2).

    M = 72 n_layers d^2 + 12 n_layers d context_len (forward + backward). Unlike 6N it counts the
    attention scores and leaves out the embeddings and output head, which is why DeepSeek found it
    predicts the optimum better across model shapes.
    """
    L, d, T = model.n_layers, model.emb_dim, model.context_len
    return float(72 * L * d * d + 12 * L * d * T)


def compute(model: GPTConfig, tokens: float) -> float:
    """C = M * D: the training FLOPs of ``tokens`` tokens on ``model`` (see flops_per_token)."""
    if not _positive(tokens):
        raise ScalingError(f"tokens must be a finite number > 0, got {first_line(repr(tokens))}")
    return flops_per_token(model) * float(tokens)


def non_embedding_params(model: GPTConfig) -> int:
    """N for Step Law: count_params less the token and position embeddings and the untied head.

    A tied head shares the token embedding's weights (``tie_embeddings``, when GPTConfig has it),
    and count_params then counts that matrix once, so only the embeddings are subtracted.
    """
    d, V = model.emb_dim, model.vocab_size
    tied = bool(getattr(model, "tie_embeddings", False))
    return count_params(model) - V * d - model.context_len * d - (0 if tied else V * d)


def deepseek_lr(c: Any) -> Any:
    """DeepSeek LLM's optimal peak LR, eta_opt = 0.3118 C^-0.1250 (C in FLOPs, M * D).

    Fitted on 1e17-3e20 FLOPs with a multi-step schedule and AdamW (beta2 0.95); at its 7B run
    (C = 8.5e22) it gives the 4.2e-4 the paper used.
    """
    return 0.3118 * np.power(np.asarray(c, dtype=float), -0.1250)


def deepseek_batch_tokens(c: Any) -> Any:
    """DeepSeek LLM's optimal batch size in tokens, B_opt = 0.2920 C^0.3271 (C in FLOPs, M * D)."""
    return 0.2920 * np.power(np.asarray(c, dtype=float), 0.3271)


def step_law_lr(n_params: Any, tokens: Any) -> Any:
    """Step Law's optimal peak LR, eta = 1.79 N^-0.713 D^0.307 (N non-embedding params, D tokens).

    Li et al. 2025 fitted it on ~3,700 runs that decay to a fixed final LR of 1e-5; it depends on
    N and D separately, where DeepSeek's law sees only their product through C.
    """
    n = np.asarray(n_params, dtype=float)
    return 1.79 * np.power(n, -0.713) * np.power(np.asarray(tokens, dtype=float), 0.307)


def step_law_batch_tokens(tokens: Any) -> Any:
    """Step Law's optimal batch size in tokens, B = 0.58 D^0.571 (independent of model size)."""
    return 0.58 * np.power(np.asarray(tokens, dtype=float), 0.571)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x: Any) -> bool:
    return _finite(x) and x > 0
