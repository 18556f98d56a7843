"""Stage 3 of the pipeline — representation. One module per backbone, all in one registry.

To add a backbone, drop a module here that subclasses :class:`Backbone` and calls
``BACKBONES.register(Entry(...))``.
"""

from core.pipeline.backbones.base import Backbone
from core.registry import Registry

BACKBONES: Registry[Backbone] = Registry(kind="backbone", package="core.pipeline.backbones")

__all__ = ["BACKBONES", "Backbone", "default_backbone"]


def default_backbone() -> str:
    """VGGFace16 when its weights are on this machine, else the offline dlib ResNet."""
    entries = BACKBONES.entries()
    if "vggface16" in entries and entries["vggface16"].available() is None:
        return "vggface16"
    return "dlib-resnet"
