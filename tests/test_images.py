"""Safe decoding of every kind of photo a user can hand FaceLab, good or hostile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from core.images import ImageError, downscale, load_image, load_thumbnail, read_info
from tests.conftest import image_bytes, noise_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1", "LA"])
def test_every_mode_becomes_rgb_uint8(mode: str) -> None:
    image = Image.fromarray(noise_image(32, 24, seed=1)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray((np.arange(32 * 24, dtype=np.uint16).reshape(32, 24) * 80))
    fmt = "TIFF" if mode in {"CMYK", "I;16"} else "PNG"
    array = load_image(encode(image, fmt))
    assert array.shape == (32, 24, 3) and array.dtype == np.uint8


def test_sixteen_bit_range_is_rescaled_not_clipped() -> None:
    ramp = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    array = load_image(encode(Image.fromarray(ramp), "PNG"))
    assert array.min() == 0 and array.max() == 255


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    assert (load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")) == 255).all()


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(noise_image(20, 40, seed=2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(image, "JPEG", exif=exif)
    assert read_info(data).exif_orientation == 6
    assert load_image(data).shape == (40, 20, 3)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.fromarray(noise_image(16, 16, seed=s)).convert("P") for s in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).shape == (16, 16, 3)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"%PDF-1.4\n1 0 obj << >> endobj\n", "not an image"),
    (b"hello, I am a text file named photo.jpg", "not an image"),
])
def test_non_images_get_clear_messages(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(data)


POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
              b"(facelab-ps-was-here) (w) file closefile\n{ } loop\nshowpage\n")
REFUSED_FORMATS = ["EPS", "ICO", "TGA", "PCX", "SGI", "IM", "DDS", "QOI", "ICNS", "SPIDER", "XBM", "MSP",
                   "JPEG2000", "AVIF"]


def test_postscript_named_as_a_photo_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Pillow hands EPS to Ghostscript (an interpreter) when it may: an upload must never start a process."""
    import subprocess

    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: started.append(a))
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(POSTSCRIPT)
    for read in (load_image, read_info, lambda source: load_thumbnail(source, 32)):
        with pytest.raises(ImageError, match="not an image FaceLab reads"):
            read(photo)
    assert started == [] and sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


@pytest.mark.parametrize("fmt", REFUSED_FORMATS)
def test_formats_outside_the_allow_list_are_refused_unread(fmt: str) -> None:
    mode = {"XBM": "1", "MSP": "1", "SPIDER": "F"}.get(fmt, "RGB")
    data = encode(Image.new("RGB", (16, 16), "red").convert(mode), fmt)
    with pytest.raises(ImageError, match="not an image FaceLab reads"):
        load_image(data)


def test_every_decoder_failure_is_an_image_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plug-in bug (here: a KeyError from deep inside a decoder) is the same clear refusal, not a traceback."""
    def broken(self: Image.Image) -> None:
        raise KeyError("internal decoder state")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(image_bytes(noise_image(20, 20, seed=9), "PNG"))


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_non_regular_files_are_refused_without_reading(special: str, tmp_path) -> None:
    import os

    if special == "fifo":
        special = str(tmp_path / "pipe.jpg")
        os.mkfifo(special)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(special)


def test_truncated_jpeg_is_reported() -> None:
    data = image_bytes(noise_image(200, 200, seed=3), "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_thumbnail(bomb, 64)


def test_default_pixel_limit_refuses_the_60_megapixel_png_from_its_header() -> None:
    """The 72 KB PNG of issue 11 declared 60 megapixels and took 1.4 GB to decode; the limit is now 24."""
    bomb = encode(Image.new("1", (7745, 7745)), "PNG")
    with pytest.raises(ImageError, match=r"7745×7745 pixels, above the limit of 24 megapixels"):
        load_image(bomb)
    assert read_info(encode(Image.new("1", (6000, 4000)), "PNG")).width == 6000, "a 24-megapixel photo is fine"


def test_a_jpeg_above_the_pixel_limit_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_IMAGE_PIXELS", "1000000")
    halves = np.zeros((1600, 2000, 3), np.uint8)
    halves[:, :1000] = (220, 30, 30)
    halves[:, 1000:] = (30, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    data = encode(Image.fromarray(halves), "JPEG", exif=exif, quality=95)
    assert (read_info(data).width, read_info(data).height) == (2000, 1600), "the header's size is reported"
    array = load_image(data)
    assert array.shape == (1000, 800, 3), "decoded at half scale (800 000 pixels), then turned upright"
    assert array[100, 400, 0] > 180 and array[900, 400, 2] > 180, "red above blue once turned"
    assert load_thumbnail(data, 64).shape == (64, 51, 3)
    monkeypatch.setenv("FACELAB_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(ImageError, match="above the limit of 0.01 megapixels"):
        load_image(data)  # 250×200 at 1/8 scale is still too many


def test_sixteen_bit_images_are_rescaled_band_by_band_like_one_whole() -> None:
    tall = (np.arange(700 * 5, dtype=np.uint16).reshape(700, 5) * 17 + 300)
    expected = ((tall.astype(np.float64) - tall.min()) * (255.0 / (tall.max() - tall.min()))).astype(np.uint8)
    array = load_image(encode(Image.fromarray(tall), "PNG"))
    assert (array == expected[:, :, None]).all()


@pytest.mark.parametrize("shape", [(3000, 4000), (4000, 3000), (1080, 1920), (1920, 1080), (1000, 1001)])
def test_downscale_gives_the_pixels_of_one_pillow_resize(shape: tuple[int, int]) -> None:
    image = noise_image(*shape, seed=sum(shape))
    small, factor = downscale(image, 1280)
    size = (round(shape[1] * factor), round(shape[0] * factor))
    assert (small == np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))).all()


def test_file_size_limit(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FACELAB_MAX_IMAGE_BYTES", "1000")
    path = tmp_path / "big.png"
    path.write_bytes(image_bytes(noise_image(100, 100, seed=4)))
    with pytest.raises(ImageError, match="limit"):
        load_image(path)


def test_downscale_maps_back() -> None:
    small, factor = downscale(np.zeros((3000, 4000, 3), np.uint8), 1000)
    assert small.shape == (750, 1000, 3) and factor == 0.25
    same, factor = downscale(np.zeros((10, 10, 3), np.uint8), 1000)
    assert same.shape == (10, 10, 3) and factor == 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=2048), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM"]))
def test_decoder_never_fails_with_anything_but_image_error(noise: bytes, magic: bytes) -> None:
    """Random bytes behind real magic numbers: either a valid image or an ImageError, nothing else."""
    try:
        array = load_image(magic + noise)
    except ImageError:
        return
    assert array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
