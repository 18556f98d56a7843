"""Stage 3 of the pipeline — representation. One module per backbone, all in one registry.

To add a backbone, drop a module here that subclasses :class:`Backbone` and calls
``BACKBONES.register(Entry(...))``.
"""

from core.pipeline.backbones.base import Backbone
from core.registry import Registry

BACKBONES: Registry[Backbone] = Registry(kind="backbone", package="core.pipeline.backbones")

__all__ = ["BACKBONES", "Backbone", "default_backbone"]


def default_backbone() -> str:
    """The most preferred backbone usable on this machine (VGG-Face when its weights are here, else dlib's ResNet)."""
    entries = sorted(BACKBONES.entries().values(), key=lambda entry: entry.factory.preference)
    usable = [entry.name for entry in entries if entry.available() is None]
    if not usable:
        raise RuntimeError("no face model (backbone) is usable on this machine: " +
                           "; ".join(f"{entry.name}: {entry.available()}" for entry in entries))
    return usable[0]
