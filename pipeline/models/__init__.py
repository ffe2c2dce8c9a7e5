"""Descriptor networks: a registry of architectures, each mapping an image to an L2-normalised vector."""
from pipeline.models.registry import available, create  # noqa: F401
