"""Many processes (GPUs, or CPU cores with gloo) on PyTorch's own engine: ``torchrun`` starts them,
``torch.distributed`` connects them.

Training: every rank builds the same batch (same seeded sampler, same augmentation), runs the
network on its share of the rows (DistributedDataParallel), and gathers the descriptors *with
their gradients*, so the ranking losses see the whole joint batch; BatchNorm statistics are taken
over every rank's rows. N ranks with 1/N of the batch each train the model one process trains with
the whole batch. Description of large image sets is split the same way and merged in order.
"""

from __future__ import annotations

import os
import shutil
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


def world() -> tuple[int, int]:
    """(rank, number of ranks); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(processes: int) -> None:
    """Run this very command again under ``torchrun`` with ``processes`` ranks (once: the ranks see
    torchrun's variables and go on). Does nothing for one process."""
    if processes <= 1 or under_torchrun():
        return
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    module = sys.modules["__main__"].__spec__.name
    os.execv(torchrun, [torchrun, "--standalone", f"--nproc_per_node={processes}", "-m", module, *sys.argv[1:]])


def start(device: torch.device) -> torch.device:
    """Join the process group torchrun described; each rank takes its own GPU."""
    if not under_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda" and int(os.environ["WORLD_SIZE"]) > torch.cuda.device_count():
        print(f"{os.environ['WORLD_SIZE']} ranks for {torch.cuda.device_count()} GPU(s): the ranks run on the CPU")
        device = torch.device("cpu")
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (the first ranks take one more when uneven)."""
    rank, size = world()
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's ``shard(n)`` rows, in order, as one tensor; gradients flow back to each rank's
    rows (``torch.distributed.nn``: the backward pass sums them over ranks)."""
    from torch.distributed.nn.functional import all_gather

    rank, size = world()
    if size == 1:
        return local
    longest = n // size + (n % size > 0)
    padded = F.pad(local, (0, 0) * (local.dim() - 1) + (0, longest - len(local)))
    parts = all_gather(padded)
    counts = [n // size + (r < n % size) for r in range(size)]
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


class CrossRankBatchNorm(nn.BatchNorm2d):
    """BatchNorm over every rank's rows, with gradients, on any device (``nn.SyncBatchNorm`` needs a
    GPU); the same statistics one process would take over the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world()[1] > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c, xf = x.shape[1], x.float()  # statistics in float32, as BatchNorm keeps them under autocast
        count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        totals = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = totals[-1]
        mean = totals[:c] / n
        var = totals[c : 2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var.detach() * n / (n - 1), alpha=momentum)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var.clamp(min=0)[None, :, None, None] + self.eps)
        y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else y
        return y.to(x.dtype)


def cross_rank_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for ``CrossRankBatchNorm`` (same parameters and buffers, same keys)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, CrossRankBatchNorm):
            new = CrossRankBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(child.weight.device)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            cross_rank_batchnorm(child)
    return module
