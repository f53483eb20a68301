"""The upload check and normalisation, over images generated here with Pillow."""

from __future__ import annotations

import hashlib
import io
import time
import zlib
from typing import Any

import pytest
from PIL import Image, ImageCms

from gateway.image_processing import (
    MAX_PIXELS,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    ImageTooLarge,
    UnsupportedImage,
    normalise_image,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **params)
    return out.getvalue()


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    return exif


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose pixel data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("image_format", "mode"), [("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB")])
def test_accepted_formats_become_a_jpeg(image_format: str, mode: str) -> None:
    source = Image.new(mode, (320, 200), "teal")

    result = normalise_image(encode(source, image_format))

    stored = decoded(result.data)
    assert stored.format == "JPEG"
    assert stored.mode == "RGB"
    assert (result.width, result.height) == stored.size == (320, 200)
    assert result.content_type == "image/jpeg"
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"just some text, not a picture\n" * 20, id="text"),
        pytest.param(b"", id="empty"),
        pytest.param(encode(Image.new("RGB", (40, 40), "red"), "GIF"), id="gif"),
        pytest.param(encode(Image.new("RGB", (40, 40), "red"), "TIFF"), id="tiff"),
        pytest.param(encode(Image.new("RGB", (40, 40), "red"), "BMP"), id="bmp"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", id="svg"),
    ],
)
def test_anything_but_jpeg_png_webp_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage) as refused:
        normalise_image(data)
    assert refused.value.code == "unsupported_media_type"


def test_a_truncated_jpeg_is_unsupported() -> None:
    whole = encode(Image.effect_noise((400, 300), 60).convert("RGB"), "JPEG", quality=95)

    with pytest.raises(UnsupportedImage):
        normalise_image(whole[: len(whole) // 2])


def test_a_png_with_corrupt_pixel_data_is_unsupported() -> None:
    whole = encode(Image.effect_noise((64, 64), 60), "PNG")
    corrupt = whole[:60] + bytes(b ^ 0xFF for b in whole[60:120]) + whole[120:]

    with pytest.raises(UnsupportedImage):
        normalise_image(corrupt)


def test_more_than_ten_megabytes_is_too_large_before_any_decoding() -> None:
    with pytest.raises(ImageTooLarge) as refused:
        normalise_image(b"\xff\xd8\xff" + b"\0" * MAX_UPLOAD_BYTES)
    assert refused.value.code == "too_large"


def test_a_decompression_bomb_is_refused_from_its_header_alone() -> None:
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")
    assert len(bomb) < 100_000  # tiny on disk, 400 megapixels declared

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        normalise_image(bomb)
    assert time.perf_counter() - started < 0.5


def test_a_crafted_header_declaring_huge_dimensions_is_too_large() -> None:
    with pytest.raises(ImageTooLarge):
        normalise_image(png_header_only(100_000, 100_000))


def test_just_over_forty_megapixels_is_too_large() -> None:
    # Between Pillow's warning and error thresholds: our own check must refuse it.
    width = 8000
    height = MAX_PIXELS // width + 1
    with pytest.raises(ImageTooLarge):
        normalise_image(png_header_only(width, height))


def test_exif_gps_and_every_other_metadata_are_stripped() -> None:
    source = Image.new("RGB", (300, 200), "orange")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upload = encode(
        source, "JPEG", exif=exif_with_gps(), icc_profile=srgb, comment=b"shot at home", xmp=b"<x/>"
    )
    assert decoded(upload).getexif().get_ifd(GPS_IFD)  # the upload does carry GPS

    stored = decoded(normalise_image(upload).data)

    assert len(stored.getexif()) == 0
    assert not stored.getexif().get_ifd(GPS_IFD)
    for name in ("exif", "icc_profile", "comment", "xmp"):
        assert name not in stored.info


def test_exif_orientation_is_applied() -> None:
    # Orientation 6: the camera was turned; viewers rotate 90° clockwise, so 400x200 shows as 200x400.
    source = Image.new("RGB", (400, 200), "white")
    source.paste((255, 0, 0), (0, 0, 200, 200))  # left half red

    result = normalise_image(encode(source, "JPEG", exif=exif_with_gps(orientation=6)))

    stored = decoded(result.data)
    assert (result.width, result.height) == stored.size == (200, 400)
    pixel = stored.getpixel((100, 50))  # the red half is now on top
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[1] < 60


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 3000), (1600, 1200)), ((1000, 5000), (320, 1600)), ((800, 600), (800, 600))],
)
def test_longest_side_is_at_most_1600(size: tuple[int, int], expected: tuple[int, int]) -> None:
    result = normalise_image(encode(Image.new("RGB", size, "navy"), "JPEG"))

    assert (result.width, result.height) == expected
    assert max(result.width, result.height) <= MAX_SIDE
    assert decoded(result.data).size == expected


def test_transparency_is_flattened_onto_white() -> None:
    source = Image.new("RGBA", (50, 50), (0, 0, 0, 0))

    stored = decoded(normalise_image(encode(source, "PNG")).data)

    assert stored.getpixel((25, 25)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "I;16", "CMYK"])
def test_other_pixel_modes_become_rgb(mode: str) -> None:
    image_format = "JPEG" if mode == "CMYK" else "PNG"

    stored = decoded(normalise_image(encode(Image.new(mode, (30, 20)), image_format)).data)

    assert stored.mode == "RGB"
    assert stored.size == (30, 20)


def test_a_broken_icc_profile_does_not_fail_the_upload() -> None:
    upload = encode(Image.new("RGB", (30, 20), "green"), "PNG", icc_profile=b"not a profile")

    stored = decoded(normalise_image(upload).data)

    assert "icc_profile" not in stored.info
