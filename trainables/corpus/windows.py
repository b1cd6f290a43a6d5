"""Windows and batches: a flat token array as shuffled (inputs, targets) batches, nanoGPT style."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

def split_tokens(tokens: np.ndarray, train_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(tokens) * train_ratio)
    return tokens[:cut], tokens[cut:]


def window_starts(n_tokens: int, context_len: int, stride: int) -> np.ndarray:
    """Start of every window: range(0, n_tokens - context_len, stride); targets are inputs shifted by one."""
    return np.arange(0, max(n_tokens - context_len, 0), stride, dtype=np.int64)


class WindowLoader:
    """Batches of (inputs, targets) windows over a flat token array.

    Shuffled loaders permute windows with a generator seeded by (seed, epoch), so epoch e's order is
    a pure function of the seed: a resumed run skips to its batch without replaying the epoch.
    Like ``DataLoader(shuffle=..., drop_last=...)``, but gathering a batch is one numpy index.
    """

    def __init__(self, tokens: np.ndarray, *, context_len: int, stride: int, batch_size: int,
                 shuffle: bool, drop_last: bool, seed: int = 0, pin_memory: bool = False):
        self.tokens = tokens
        self.context_len = context_len
        self.batch_size = batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.pin_memory = pin_memory
        self.starts = window_starts(len(tokens), context_len, stride)
        self._offsets = np.arange(context_len + 1, dtype=np.int64)

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def __len__(self) -> int:
        n, b = self.num_windows, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.starts
        rng = np.random.default_rng([self.seed, epoch])
        return self.starts[rng.permutation(self.num_windows)]

    def batches(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        for i in range(start_batch, len(self)):
            starts = order[i * self.batch_size:(i + 1) * self.batch_size]
            block = torch.from_numpy(self.tokens[starts[:, None] + self._offsets].astype(np.int64))
            if self.pin_memory:
                block = block.pin_memory()
            yield block[:, :-1], block[:, 1:]  # (B, T) inputs, (B, T) targets

    def __iter__(self):
        return self.batches(0)
