"""Run by tests/test_distributed.py under torchrun: one training step's gradients with the batch split
across the ranks (rows sharded, descriptors gathered with their gradients, BatchNorm over every
rank, DistributedDataParallel), saved by rank 0 for comparison with one process and the whole batch."""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline import distributed
from pipeline.distill.losses import listwise_ranking_loss
from pipeline.models import create


def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 28, 28, generator=g)
    t = torch.nn.functional.normalize(torch.randn(24 + 8, 16, generator=g), dim=1)
    vi, vj = torch.randint(0, 24, (8,), generator=g), torch.randint(0, 24, (8,), generator=g)
    lam = torch.rand(8, 1, generator=g)
    return x, t, vi, vj, lam


def loss_of(forward, x, t, vi, vj, lam):
    s = forward(x)
    sv = torch.nn.functional.normalize(lam * s[vi] + (1 - lam) * s[vj], dim=1)
    return listwise_ranking_loss(t, torch.cat([s, sv]), 0.05, 0.05)


def model():
    torch.manual_seed(0)
    return create("student_cnn", 16).train()


if __name__ == "__main__":
    dist.init_process_group("gloo")
    net = distributed.cross_rank_batchnorm(model())
    ddp = DistributedDataParallel(net)
    x, t, vi, vj, lam = batch()
    loss = loss_of(lambda x: distributed.gather_rows(ddp(x[distributed.shard(len(x))]), len(x)), x, t, vi, vj, lam)
    loss.backward()
    if dist.get_rank() == 0:
        torch.save(
            {
                "loss": loss.detach(),
                "grads": {k: p.grad for k, p in net.named_parameters()},
                "buffers": dict(net.named_buffers()),
            },
            sys.argv[1],
        )
    dist.destroy_process_group()
