"""Published teachers describe images exactly as cnnimageretrieval-pytorch does for its checkpoints:
its trunks (AlexNet/VGG without the last max-pool, DenseNet with a final ReLU, ResNet without pool
and classifier) and its extraction (antialiased thumbnail to the longest side, ImageNet
normalisation, bilinear rescaling for each scale, scales averaged with the GeM power)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from pipeline.models import create
from pipeline.teacher.pretrained import describe_images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    "arch, last",
    [("gem_vgg11", nn.ReLU), ("gem_alexnet", nn.ReLU), ("gem_densenet121", nn.ReLU), ("gem_resnet18", nn.Sequential)],
)
def test_trunks_are_cut_where_cirtorch_cuts_them(arch, last):
    net = create(arch, 0, 3)
    assert isinstance(list(net.features.children())[-1], last)
    if arch in ("gem_vgg11", "gem_alexnet"):  # the last max-pool is gone: a larger map
        import torchvision

        full = torchvision.models.get_model(arch.removeprefix("gem_"), weights=None).features.eval()
        x = torch.zeros(1, 3, 224, 224)
        with torch.no_grad():
            assert net.features.eval()(x).shape[-1] > full(x).shape[-1]


def cirtorch_extract(net, image: Image.Image, imsize: int, scales) -> np.ndarray:
    """cnnimageretrieval-pytorch's ``extract_ms`` written out: imresize (thumbnail, ANTIALIAS),
    ToTensor + Normalize, each scale by bilinear interpolation, v += net(x)^p, v /= len, v^(1/p), norm."""
    im = image.copy()
    im.thumbnail((imsize, imsize), Image.LANCZOS)  # PIL's ANTIALIAS
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = ((x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])[None]
    msp = net.pool.p.item() if len(scales) > 1 else 1.0
    v = torch.zeros(net.dim)
    with torch.no_grad():
        for s in scales:
            xs = x.clone() if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
            v += net(xs).pow(msp).squeeze()
    v = (v / len(scales)).pow(1.0 / msp)
    return (v / v.norm()).numpy()


def test_extraction_matches_cirtorch_on_real_photos():
    from skimage import data

    torch.manual_seed(0)
    net = create("gem_resnet18", 0, 3).eval()
    photos = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in ("astronaut", "chelsea", "coffee")]
    pre = {"image_size": 160, "scales": [1.0, 0.7071, 0.5], "mean": MEAN, "std": STD}
    ours = describe_images(net, photos, pre, "cpu")
    theirs = np.stack([cirtorch_extract(net, p, 160, pre["scales"]) for p in photos])
    assert np.allclose(ours, theirs, atol=1e-5)
    bilinear = []  # the old resizing gives other descriptors: the test sees the difference
    for p in photos:
        im = p.copy()
        im.thumbnail((160, 160), Image.BILINEAR)
        bilinear.append(describe_images(net, [im], dict(pre, image_size=10_000), "cpu")[0])
    assert np.abs(np.stack(bilinear) - theirs).max() > 1e-4
