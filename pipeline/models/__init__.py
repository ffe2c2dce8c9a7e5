"""Descriptor networks: a registry of architectures, each mapping an image to an L2-normalised vector.

Importing the package fills the registry (timm-style): the small CNNs register themselves on import;
``gem_<torchvision model>`` and EfficientNet-Lite are resolved on demand (importing torchvision
costs seconds that stages which never build one should not pay)."""

from pipeline.models import cnn, students  # noqa: F401  (register on import)
from pipeline.models.registry import available, create, is_known  # noqa: F401
