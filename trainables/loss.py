"""The training loss, output head included: mean next-token cross-entropy over the real vocabulary.

On a CPU the (tokens x 50,257) logits dominate small GPTs: the plain path (head -> logits -> fp32
copy -> log_softmax -> nll -> its backward) sweeps several 100 MB arrays per step through main
memory, and measured on the small preset it took as long as all the matmuls together. Here the
logits are computed once in the matmul dtype (bf16 under bf16-mixed), and the softmax runs tile by
tile in fp32 on a few rows that fit in cache, overwriting each tile with d(loss)/d(logits); the
backward is the head's two matmuls on that buffer. Same arithmetic as ``F.cross_entropy`` on fp32
logits (fp32 softmax, bf16 matmul inputs under autocast), about half the memory of the plain path.

On other devices :func:`next_token_loss` takes the plain path, which ``torch.compile`` fuses there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TILE_BYTES = 8 << 20
"""fp32 softmax tile: 8 MiB (about 40 rows of GPT-2's vocabulary) stays in a server CPU's cache."""


def next_token_loss(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean cross-entropy of the logits ``x @ weight[:vocab].T`` against ``targets``; fp32 scalar.

    x: (B, T, C) final hidden states; weight: (padded_vocab, C) the head; targets: (B, T) ids < vocab.
    """
    if x.device.type != "cpu":
        logits = F.linear(x, weight)[..., :vocab]  # (B, T, vocab); bf16 under autocast
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    return _tiled_loss(x.flatten(0, 1), weight, targets.flatten(), vocab)


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give the head's matmul here (bf16 under bf16-mixed), else x's."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


@torch.compiler.disable  # a Python loop over tiles: eager, between the compiled graphs
def _tiled_loss(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    dtype = _matmul_dtype(x)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _TiledCrossEntropy.apply(x, weight, targets, vocab, dtype)
    with torch.autocast(x.device.type, enabled=False):
        logits = x.to(dtype) @ weight.to(dtype).t()  # (N, padded_vocab)
        return _softmax_tiles(logits, targets, vocab, grad=False)


class _TiledCrossEntropy(torch.autograd.Function):
    """Forward: logits, loss and d(loss)/d(logits) in one buffer. Backward: the head's two matmuls."""

    @staticmethod
    def forward(ctx, x, weight, targets, vocab, dtype):
        with torch.autocast(x.device.type, enabled=False):
            xs, w = x.to(dtype), weight.to(dtype)  # (N, C), (padded_vocab, C)
            g = xs @ w.t()  # (N, padded_vocab) logits, then their gradient in place
            loss = _softmax_tiles(g, targets, vocab, grad=True)
        ctx.save_for_backward(g, xs, w)
        ctx.dtypes = (x.dtype, weight.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        g, xs, w = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        with torch.autocast(g.device.type, enabled=False):
            scale = grad_loss.to(xs.dtype)
            grad_x = (g @ w).to(x_dtype) * grad_loss  # (N, C)
            grad_w = (g.t() @ (xs * scale)).to(w_dtype)  # (padded_vocab, C); the scale on the small side
        return grad_x, grad_w, None, None, None


def _softmax_tiles(logits: torch.Tensor, targets: torch.Tensor, vocab: int, *, grad: bool) -> torch.Tensor:
    """Mean cross-entropy of ``logits[:, :vocab]``; with ``grad``, overwrite logits with d(loss)/d(logits).

    Each tile of rows is read into fp32 once (a view when the logits are fp32 already), and
    log-sum-exp, the target's logit and softmax - onehot run on it while it is in cache.
    """
    n, padded = logits.shape
    rows = max(1, TILE_BYTES // (4 * padded))
    total = torch.zeros((), dtype=torch.float32, device=logits.device)
    log_n = math.log(n)
    for start in range(0, n, rows):
        tile = logits[start:start + rows, :vocab]
        z = tile.float()  # (r, vocab) fp32: a copy from bf16, the logits themselves when fp32
        y = targets[start:start + rows, None]  # (r, 1)
        lse = torch.logsumexp(z, dim=1, keepdim=True)  # (r, 1)
        total += (lse - z.gather(1, y)).sum()
        if grad:
            z.sub_(lse + log_n).exp_()  # softmax / n: the mean's 1/n folded into the exponent
            z.scatter_add_(1, y, torch.full_like(y, -1.0 / n, dtype=z.dtype))  # - onehot / n
            if z.data_ptr() != tile.data_ptr():
                tile.copy_(z)
    if grad and padded > vocab:
        logits[:, vocab:] = 0  # padding rows of the head get no gradient
    return total / n
