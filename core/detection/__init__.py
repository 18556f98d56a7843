"""Stage 1 of the pipeline — face detection. One module per detector, all in one registry.

To add a detector, drop a module here that subclasses :class:`Detector` and calls
``DETECTORS.register(Entry(...))``.
"""

from core.detection.base import Detector, Face
from core.registry import Registry

DETECTORS: Registry[Detector] = Registry(kind="detector", package="core.detection")

DEFAULT_DETECTOR = "mtcnn"

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detector", "Face"]
