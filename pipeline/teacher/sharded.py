"""A teacher built here, described by every rank (``runtime.processes`` > 1): rank 0 keeps the gate,
the store and the ledger, so each call is still asked and counted once; each call's images are split
across the ranks and the descriptors merged in order."""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from pipeline import distributed

_STOP = None


def _share(pixels):
    part = distributed.shard(len(pixels))
    return pixels[part] if isinstance(pixels, np.ndarray) else list(pixels)[part]


def _merge(local: np.ndarray) -> np.ndarray:
    parts = [None] * distributed.world()[1]
    dist.all_gather_object(parts, local)
    return np.concatenate(parts)


class ShardedClient:
    """Rank 0's client: each call is broadcast, every rank describes its share, rank 0 merges.
    ``group``: where the calls are broadcast, a group whose timeout outlasts any wait for the store's
    lock between two calls (``blackbox.TEACHER_WAIT``); None: the default group."""

    def __init__(self, inner, group=None):
        self.inner, self.remote, self.group = inner, inner.remote, group
        self.endpoint = f"{inner.endpoint}, on {distributed.world()[1]} ranks"

    def __call__(self, pixels) -> np.ndarray:
        dist.broadcast_object_list([pixels], src=0, group=self.group)
        return _merge(self.inner(_share(pixels)))

    def close(self) -> None:
        dist.broadcast_object_list([_STOP], src=0, group=self.group)


def serve(inner, group=None) -> None:
    """The other ranks: describe their share of each call rank 0 broadcasts, until it stops."""
    while True:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=group)
        if box[0] is _STOP:
            return
        _merge(inner(_share(box[0])))
