"""Where one budget's optimum lies: two estimators of (log LR, log batch tokens), and their bootstraps.

``near-optimal`` (DeepSeek LLM, sec. 3.1): the geometric mean of the trials within ``tol`` of the best
loss. It needs no model of the loss, but with noisy trials ``tol`` (2·√2 times the seed noise) is wide,
the set holds most of the grid, and the estimate is pulled toward the grid's centre.

``vertex``: a quadratic in (log LR, log batch tokens) fitted by least squares to every finite trial of
the budget, and its minimum over the box the grid spans (the parabola-vertex reading of Chinchilla's
Approach 2, Hoffmann et al. 2022, sec. 3.2, here in LR and batch instead of model size). Every trial
counts, so seed noise averages out instead of widening a set, and the minimum is not tied to grid
points. With fewer than 3 batch sizes a quadratic in batch is not identified: the loss is then a
quadratic in log LR plus an offset per batch size, and the best batch is one of those tried. A bowl that
opens downward, or a vertex outside the grid, is minimised over the grid's box instead (on a lattice),
so the optimum stays on the grid's edge, where the fit's notes already say it is not bracketed.
"""

from __future__ import annotations

import numpy as np

from hpsearch.scaling.laws import ScalingError

METHODS = ("near-optimal", "vertex")
DEFAULT_METHOD = "vertex"
"""Measured against near-optimal on three WSD ladders and a cosine one: bench/RESULTS.md, "Reading each budget's
optimum off a fitted quadratic"."""
LATTICE = 41
"""Points per axis of the lattice a quadratic without an inner vertex is minimised on (1/40 of the span)."""


def optimum(log_lr: np.ndarray, log_bt: np.ndarray, loss: np.ndarray, tol: float,
            method: str = DEFAULT_METHOD) -> tuple[float, float, np.ndarray]:
    """(log lr, log batch tokens, near-optimal mask) of one budget's trials by ``method``."""
    keep = loss <= loss.min() * (1.0 + tol)
    if method == "near-optimal":
        return float(log_lr[keep].mean()), float(log_bt[keep].mean()), keep
    lr, bt = _vertices(log_lr, log_bt, loss, np.ones((1, len(loss))))
    return float(lr[0]), float(bt[0]), keep


def boot_optima(log_lr: np.ndarray, log_bt: np.ndarray, loss: np.ndarray, tol: float,
                rng: np.random.Generator, n_boot: int, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """The optimum of n_boot resamples (with replacement) of one budget's trials, vectorized."""
    idx = rng.integers(0, len(loss), size=(n_boot, len(loss)))  # (n_boot, n)
    if method == "vertex":
        counts = np.zeros((n_boot, len(loss)))
        np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
        return _vertices(log_lr, log_bt, loss, counts)
    resampled = loss[idx]
    keep = resampled <= resampled.min(axis=1, keepdims=True) * (1.0 + tol)
    count = keep.sum(axis=1)
    return (log_lr[idx] * keep).sum(axis=1) / count, (log_bt[idx] * keep).sum(axis=1) / count


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ScalingError(f"the optimum method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _vertices(x: np.ndarray, y: np.ndarray, z: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The minimum over the grid's box of the weighted least-squares quadratic, one per row of ``weights``:
    its vertex where the bowl opens upward with the vertex inside the box, else the lowest lattice point."""
    batches = np.unique(y)
    features = _features(batches)
    design = features(x, y)  # (n, k)
    gram = np.einsum("bn,ni,nj->bij", weights, design, design)
    rhs = np.einsum("bn,ni,n->bi", weights, design, z)
    c = np.einsum("bij,bj->bi", np.linalg.pinv(gram), rhs)  # pinv: a resample may lack a level
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(batches) >= 3:  # grad = 0: [2 c2, c5; c5, 2 c4] (x, y) = -(c1, c3)
            det = 4 * c[:, 2] * c[:, 4] - c[:, 5] ** 2
            vx = (c[:, 5] * c[:, 3] - 2 * c[:, 4] * c[:, 1]) / det
            vy = (c[:, 5] * c[:, 1] - 2 * c[:, 2] * c[:, 3]) / det
            bowl = (c[:, 2] > 0) & (det > 0)
        else:  # a parabola in x, and the batch with the lowest offset
            vx = -c[:, 1] / (2 * c[:, 2])
            vy = batches[np.argmin(np.column_stack([np.zeros(len(c)), c[:, 3:]]), axis=1)]
            bowl = c[:, 2] > 0
    inside = bowl & (vx >= x.min()) & (vx <= x.max()) & (vy >= y.min()) & (vy <= y.max())
    lx = np.linspace(x.min(), x.max(), LATTICE)
    ly = np.linspace(y.min(), y.max(), LATTICE) if len(batches) >= 3 else batches
    gx, gy = (a.ravel() for a in np.meshgrid(lx, ly, indexing="ij"))
    best = np.argmin(features(gx, gy) @ c.T, axis=0)  # (n_boot,)
    return np.where(inside, vx, gx[best]), np.where(inside, vy, gy[best])


def _features(batches: np.ndarray):
    """The quadratic's columns: full in (x, y) with 3+ batch sizes, else in x plus a per-batch offset."""
    if len(batches) >= 3:
        return lambda x, y: np.column_stack([np.ones_like(x), x, x * x, y, y * y, x * y])
    return lambda x, y: np.column_stack([np.ones_like(x), x, x * x, *[(y == b).astype(float) for b in batches[1:]]])
