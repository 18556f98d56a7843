"""Safe image decoding: every photo enters FaceLab through here.

Photos come from students' phones and webcams and from zip files of unknown
origin, so decoding must survive anything: EXIF rotation, greyscale, RGBA,
palette and 16-bit images, truncated files, files that are not images at all and
decompression bombs. Every failure becomes an :class:`ImageError` with a message
a person can act on.

Only the raster formats in :data:`DECODERS` are ever handed to Pillow: without
``formats=`` Pillow would pass a PostScript file named ``photo.jpg`` to Ghostscript
(an interpreter that reads and writes files), and exotic decoders are where
crashes and hangs live.
"""

from __future__ import annotations

import hashlib
import io
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import limits

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})
# Pillow format names FaceLab decodes, whatever the file's name says. JPEG covers phones' MPO files;
# PPM covers PGM and PBM. Everything else (EPS/PostScript, PDF, AVIF, DDS, ICO, …) is refused unread.
DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
FORMATS_TEXT = "JPEG, PNG, WebP, BMP, GIF, TIFF or PGM/PPM"


class ImageError(ValueError):
    """A photo that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class ImageInfo:
    """What can be learnt from a file's header without decoding all its pixels."""

    width: int
    height: int
    mode: str
    format: str
    exif_orientation: int


def is_image_name(name: str) -> bool:
    """True when the file name has an image extension FaceLab reads."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def content_hash(data: bytes) -> str:
    """Stable identity of a photo's bytes (used by the duplicate check and the caches)."""
    return hashlib.sha256(data).hexdigest()


def _read_bytes(source: Path | str | bytes) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # /dev/zero, a FIFO or a folder would read forever or fail oddly
                raise ImageError(f"{path.name}: not a regular file.")
            if info.st_size > limits().max_image_bytes:
                raise ImageError(
                    f"{path.name}: file is {info.st_size / 1e6:.0f} MB, above the {limits().max_image_bytes / 1e6:.0f} MB limit."
                )
            with path.open("rb") as handle:  # never more than the limit, even if the file grows meanwhile
                data = handle.read(limits().max_image_bytes + 1)
        except OSError as exc:
            raise ImageError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from exc
    if not data:
        raise ImageError("the file is empty (0 bytes).")
    if len(data) > limits().max_image_bytes:
        raise ImageError(f"file is {len(data) / 1e6:.0f} MB, above the {limits().max_image_bytes / 1e6:.0f} MB limit.")
    return data


def _damaged(exc: BaseException) -> ImageError:
    """The one message for any decoder failure: Pillow's plug-ins raise almost every exception type."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ImageError(f"the image is damaged or truncated ({detail}).")


def _open(data: bytes) -> Image.Image:
    """Open (header only) with an allow-listed decoder; refuse images whose pixel count is beyond the limit."""
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image FaceLab reads ({FORMATS_TEXT}).") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is too large to decode safely (possible decompression bomb): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    max_pixels = limits().max_image_pixels
    if image.width * image.height > max_pixels:
        raise ImageError(
            f"image is {image.width}×{image.height} pixels, above the limit of {max_pixels / 1e6:.0f} megapixels "
            "(possible decompression bomb); resize it first."
        )
    return image


def read_info(source: Path | str | bytes) -> ImageInfo:
    """Header facts (size, mode, format, EXIF orientation) without decoding the pixels."""
    image = _open(_read_bytes(source))
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not hide the rest of the header
        orientation = 1
    return ImageInfo(image.width, image.height, image.mode, image.format or "?", orientation)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB, compositing transparency on white and rescaling 16-bit data."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).astype(np.uint8), mode="L")
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(source: Path | str | bytes) -> np.ndarray:
    """Decode a photo to an EXIF-upright RGB uint8 array of shape (H, W, 3).

    Animated images give their first frame. Raises :class:`ImageError` for anything unusable.
    """
    image = _open(_read_bytes(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(image)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    return np.asarray(rgb, dtype=np.uint8)


def load_thumbnail(source: Path | str | bytes, max_side: int) -> np.ndarray:
    """A small EXIF-upright RGB copy (longer side ≤ ``max_side``) for galleries and duplicate hashes.

    JPEGs are decoded at reduced scale (``draft``), so a thumbnail of a 12-megapixel photo costs a
    fraction of :func:`load_image`; every pixel is still read, so truncated files are caught.
    """
    if max_side < 1:
        raise ValueError("thumbnail size must be at least 1 pixel.")
    image = _open(_read_bytes(source))
    try:
        image.draft(None, (max_side, max_side))
        image = ImageOps.exif_transpose(image) or image
        image = _to_rgb(image)
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    return np.asarray(image, dtype=np.uint8)


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink an image so its longer side is at most ``max_side``; returns it and the factor applied.

    Detectors are slow and no more accurate on 12-megapixel phone photos; boxes found on the
    small image are mapped back by dividing by the factor.
    """
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor >= 1.0:
        return image, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(small), factor


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB or greyscale array (for downloads and st.image)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB array (smaller than PNG for photo galleries)."""
    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
