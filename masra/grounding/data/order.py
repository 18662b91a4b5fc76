"""Which queries a step sees: the seeded epoch order and the labelled subset.

Epoch order is a function of (seed, epoch) only, and each process takes its own slice of every
global batch, so multi-process runs need no sampler.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["epoch_batches", "label_subset"]


def label_subset(num_queries: int, fraction: float, seed: int) -> Tensor:
    """Sorted (k,) int64 rows of the queries kept as labelled, ``k = max(1, round(fraction * n))``.

    The rows are a prefix of one seeded permutation, so for one seed a smaller fraction's queries are
    among a larger one's.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    order = np.random.default_rng([int(seed), 0x1ABE1]).permutation(num_queries)
    k = max(1, round(fraction * num_queries))
    return torch.from_numpy(np.sort(order[:k]).astype(np.int64))


def epoch_batches(
    num_items: int,
    global_batch: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    shuffle: bool = True,
) -> list[Tensor]:
    """This process's index batches of one epoch; the order depends only on (seed, epoch).

    Global batch ``s`` is ``order[s * G : (s + 1) * G]``; process ``rank`` takes its ``G / world``
    contiguous share. With one process the last batch may be smaller; with several the order is
    padded by wrapping around so every process runs the same number of equal batches.
    """
    if global_batch % world:
        raise ValueError(f"batch size {global_batch} is not a multiple of the {world} processes")
    if num_items < 1:
        raise ValueError("an epoch needs at least one item")
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        order = torch.randperm(num_items, generator=gen)
    else:
        order = torch.arange(num_items)
    steps = -(-num_items // global_batch)
    if world > 1:
        need = steps * global_batch
        order = order.repeat(-(-need // num_items))[:need]
    per = global_batch // world
    out = []
    for s in range(steps):
        chunk = order[s * global_batch : (s + 1) * global_batch]
        out.append(chunk[rank * per : (rank + 1) * per] if world > 1 else chunk)
    return out
