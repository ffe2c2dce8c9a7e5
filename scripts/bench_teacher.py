"""Seconds per photo of a published teacher's multi-scale extraction, to size a paper-scale run.

    python scripts/bench_teacher.py --arch gem_resnet101 --threads 1

Random weights and a random 1024x768 photo: the cost does not depend on either.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@click.command()
@click.option("--arch", default="gem_resnet101", show_default=True)
@click.option("--size", default=1024, show_default=True, help="longest side (teacher.image_size)")
@click.option("--scales", default="1,0.7071,0.5", show_default=True)
@click.option("--photos", default=2, show_default=True)
@click.option("--threads", default=0, help="torch CPU threads; 0 = torch's default")
@click.option("--device", default="auto", show_default=True)
def main(arch: str, size: int, scales: str, photos: int, threads: int, device: str):
    import torch
    from PIL import Image

    from pipeline.data.tensors import IMAGENET_MEAN, IMAGENET_STD, resolve_device
    from pipeline.models import create
    from pipeline.teacher.pretrained import describe_images

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model = create(arch, 0, 3).to(dev).eval()
    pre = {
        "image_size": size,
        "scales": [float(s) for s in scales.split(",")],
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size * 3 // 4, size, 3), dtype=np.uint8))
    describe_images(model, [img], pre, dev)  # warm-up
    t0 = time.perf_counter()
    describe_images(model, [img] * photos, pre, dev)
    seconds = (time.perf_counter() - t0) / photos
    click.echo(
        f"{arch}: {seconds:.2f} s per {size}x{size * 3 // 4} photo at scales {pre['scales']} on {dev} "
        f"({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
