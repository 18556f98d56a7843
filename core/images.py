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
import math
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
# libjpeg decodes a JPEG directly at 1/2, 1/4 or 1/8 of its size (Pillow's ``draft``) without ever holding the
# full-size pixels, so a JPEG above the pixel limit is decoded at the first of these scales that fits it.
JPEG_SCALES = (1, 2, 4, 8)
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# Rows converted at a time when a decoded image becomes an array (a whole-image ``np.asarray`` goes through
# ``tobytes``, which holds the pixels twice more) or a 16-bit image becomes 8-bit (a float64 copy of the whole
# image would cost 8 bytes a pixel).
BAND_ROWS = 256


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


def read_file(path: Path | str) -> bytes:
    """A photo file's bytes, read only when it is a regular file and never past the byte limit.

    Every file FaceLab reads as a photo (the CLI's arguments, dataset photos) comes through here, so
    ``/dev/zero`` or a FIFO named ``photo.jpg`` gets one clear :class:`ImageError` instead of a read that
    never ends or fills the memory.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # /dev/zero, a FIFO or a folder would read forever or fail oddly
            raise ImageError(f"{path.name}: not a regular file.")
        if info.st_size > limits().max_image_bytes:
            raise ImageError(
                f"{path.name}: file is {info.st_size / 1e6:.0f} MB, above the {limits().max_image_bytes / 1e6:.0f} MB limit."
            )
        with path.open("rb") as handle:  # never more than the limit, even if the file grows meanwhile
            return handle.read(limits().max_image_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from exc


def _read_bytes(source: Path | str | bytes) -> bytes:
    data = source if isinstance(source, bytes) else read_file(source)
    if not data:
        raise ImageError("the file is empty (0 bytes).")
    if len(data) > limits().max_image_bytes:
        raise ImageError(f"file is {len(data) / 1e6:.0f} MB, above the {limits().max_image_bytes / 1e6:.0f} MB limit.")
    return data


def _damaged(exc: BaseException) -> ImageError:
    """The one message for any decoder failure: Pillow's plug-ins raise almost every exception type."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ImageError(f"the image is damaged or truncated ({detail}).")


def _jpeg_scale(image: Image.Image, max_pixels: int) -> int | None:
    """The smallest reduction (1, 2, 4 or 8; only JPEGs reduce) at which ``image`` decodes within ``max_pixels``.

    None when it exceeds the limit at every scale it can be decoded at.
    """
    width, height = image.size
    scales = JPEG_SCALES if image.format in JPEG_FORMATS else JPEG_SCALES[:1]
    return next((scale for scale in scales if math.ceil(width / scale) * math.ceil(height / scale) <= max_pixels), None)


def _too_large(width: int, height: int) -> ImageError:
    return ImageError(
        f"image is {width}×{height} pixels, above the limit of {limits().max_image_pixels / 1e6:g} megapixels "
        "FaceLab decodes (possible decompression bomb); resize it first."
    )


def _reduce_on_decode(image: Image.Image, side: int | None = None) -> None:
    """Have a large JPEG decoded at reduced scale: within the pixel limit, and (for a thumbnail of ``side``
    pixels) at the largest reduction that keeps both sides at least ``side``. Other formats are left as they are."""
    width, height = image.size
    scale = _jpeg_scale(image, limits().max_image_pixels) or 1  # None: _open refused it already
    if side is not None:
        fit = min(width // side, height // side)
        scale = max([scale, *(s for s in JPEG_SCALES if s <= fit)])
    if scale > 1:
        image.draft(None, (max(1, width // scale), max(1, height // scale)))
    if image.width * image.height > limits().max_image_pixels:  # a JPEG libjpeg could not reduce
        raise _too_large(width, height)


def _open(data: bytes) -> Image.Image:
    """Open (header only) with an allow-listed decoder; refuse images that cannot be decoded within the pixel limit.

    A JPEG counts at the reduced scale it would be decoded at (see :data:`JPEG_SCALES`).
    """
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image FaceLab reads ({FORMATS_TEXT}).") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is too large to decode safely (possible decompression bomb): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    if _jpeg_scale(image, limits().max_image_pixels) is None:
        raise _too_large(image.width, image.height)
    return image


def read_info(source: Path | str | bytes) -> ImageInfo:
    """Header facts (size, mode, format, EXIF orientation) without decoding the pixels."""
    return _info(_open(_read_bytes(source)))


def read_info_and_thumbnail(source: Path | str | bytes, max_side: int) -> tuple[ImageInfo, np.ndarray]:
    """:func:`read_info` and :func:`load_thumbnail` from one opening of the file (the Audit needs both of each photo)."""
    image = _open(_read_bytes(source))
    return _info(image), _thumbnail(image, max_side)


def _info(image: Image.Image) -> ImageInfo:
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not hide the rest of the header
        orientation = 1
    return ImageInfo(image.width, image.height, image.mode, image.format or "?", orientation)


def _rescaled(image: Image.Image) -> Image.Image:
    """A 16-bit or float image stretched to 8-bit greyscale, its darkest pixel 0 and its brightest 255.

    Rescaled a band of rows at a time: peak memory stays near the image itself.
    """
    array = np.asarray(image)
    low, high = float(array.min()), float(array.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    out = np.empty(array.shape, np.uint8)
    for top in range(0, array.shape[0], BAND_ROWS):
        rows = slice(top, top + BAND_ROWS)
        out[rows] = ((array[rows].astype(np.float64) - low) * scale).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB, compositing transparency on white and rescaling 16-bit data.

    An RGB image is returned as it is, and transparency is pasted onto one white image: each full-size
    copy of a large photo costs 4 bytes a pixel.
    """
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        image = _rescaled(image)
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        image = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image)
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _as_array(image: Image.Image) -> np.ndarray:
    """The RGB image as a (H, W, 3) uint8 array, copied a band of rows at a time."""
    width, height = image.size
    out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, BAND_ROWS):
        out[top:top + BAND_ROWS] = np.asarray(image.crop((0, top, width, min(height, top + BAND_ROWS))))
    return out


def load_image(source: Path | str | bytes) -> np.ndarray:
    """Decode a photo to an EXIF-upright RGB uint8 array of shape (H, W, 3).

    Animated images give their first frame. A JPEG above the pixel limit is decoded at 1/2, 1/4 or 1/8
    scale (still well above the 1280 pixels detectors work at); other images above it are refused from
    their header. The full-size image is held once, not once per step: transposition and conversion work
    in place where they can. Raises :class:`ImageError` for anything unusable.
    """
    image = _open(_read_bytes(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _reduce_on_decode(image)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            image = _to_rgb(image)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    return _as_array(image)


def load_thumbnail(source: Path | str | bytes, max_side: int) -> np.ndarray:
    """A small EXIF-upright RGB copy (longer side ≤ ``max_side``) for galleries and duplicate hashes.

    JPEGs are decoded at reduced scale (``draft``), so a thumbnail of a 12-megapixel photo costs a
    fraction of :func:`load_image`; every pixel is still read, so truncated files are caught.
    """
    return _thumbnail(_open(_read_bytes(source)), max_side)


def _thumbnail(image: Image.Image, max_side: int) -> np.ndarray:
    if max_side < 1:
        raise ValueError("thumbnail size must be at least 1 pixel.")
    try:
        _reduce_on_decode(image, max_side)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        image = _to_rgb(image)
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing refusal
        raise _damaged(exc) from exc
    return np.asarray(image, dtype=np.uint8)


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink an image so its longer side is at most ``max_side``; returns it and the factor applied.

    Detectors are slow and no more accurate on 12-megapixel phone photos; boxes found on the
    small image are mapped back by dividing by the factor.

    Pillow's bilinear resize is two passes, along rows then along columns; the first runs here on bands
    of rows, so the photo is never copied whole into Pillow (4 bytes a pixel). The pixels are Pillow's own,
    except in a photo several times taller than wide (Pillow then resizes columns first): a level or so.
    """
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor >= 1.0:
        return image, 1.0
    new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
    narrow = np.concatenate([
        np.asarray(Image.fromarray(band).resize((new_width, len(band)), Image.Resampling.BILINEAR))
        for band in (image[top:top + BAND_ROWS] for top in range(0, height, BAND_ROWS))])
    small = Image.fromarray(narrow).resize((new_width, new_height), Image.Resampling.BILINEAR)
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
