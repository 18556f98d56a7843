"""FaceLab's library. For notebooks, the seven functions of :mod:`core.api` are exported here:
``core.load_image``, ``core.detect``, ``core.embed``, ``core.verify``, ``core.calibrate``,
``core.train`` and ``core.predict``.
"""

from typing import Any

_API = ("calibrate", "detect", "embed", "load_image", "pipeline", "predict", "train", "verify")


def __getattr__(name: str) -> Any:
    """Load core.api on first use: ``import core.images`` (the Dataset page) must not pay for the whole library."""
    if name in _API:
        from core import api  # lazy on purpose (start-up speed), see the docstring

        return getattr(api, name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = list(_API)
