"""Check an uploaded image and turn it into the normalised JPEG we store and serve to marketplaces.

Pure functions over bytes. Decoding is CPU-heavy and blocking: the gateway runs `normalise_image` on a
small thread pool of its own (`IMAGE_DECODE_THREADS`), never the default one logins' bcrypt would share.

Cost is bounded before a pixel is decoded, from the header alone: at most MAX_PIXELS pixels, and at most
`max_decoded_bytes` of width * height * bytes per pixel (a 78 kB 16-bit PNG can declare 36 megapixels
of 6 bytes each).

ImageRejected                 the upload is not an image we take
├── UnsupportedImage          unsupported_media_type (415): not a decodable JPEG, PNG or WebP
└── ImageTooLarge             too_large (413): over MAX_UPLOAD_BYTES, MAX_PIXELS or the decoded-bytes cap

What the upload claims (file name, multipart Content-Type) is never looked at: the bytes are decoded,
with Pillow restricted to the three formats we accept. A truncated or corrupt file of an accepted format
is `UnsupportedImage` as well: to us it is not a JPEG/PNG/WebP, whatever its first bytes say.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
#: Default cap on width * height * bytes per pixel: every 8-bit image under MAX_PIXELS fits.
MAX_DECODED_BYTES: Final = 160 * 1024 * 1024
#: Bytes Pillow holds per pixel for a decoded mode (everything else: 4).
_MODE_BYTES: Final = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
#: Channels of each PNG colour type (IHDR), for the bytes per pixel the file itself declares.
_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Longest side of the stored image: large enough for every marketplace's zoom, small enough to serve.
MAX_SIDE: Final = 1600
JPEG_QUALITY: Final = 85
CONTENT_TYPE: Final = "image/jpeg"
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP")

# Pillow refuses (DecompressionBombError) anything over twice this before allocating pixels, and warns
# above it. Process-wide on purpose: this module is the only place that decodes untrusted images, and our
# own check below refuses anything over MAX_PIXELS before a pixel is decoded either way.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_SRGB_PROFILE: Final = ImageCms.createProfile("sRGB")
_BACKGROUND: Final = (255, 255, 255)


class ImageRejected(Exception):
    """The upload is not an image we take; `code` is the problem code the gateway answers."""

    code: str = "image_rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnsupportedImage(ImageRejected):
    code = "unsupported_media_type"


class ImageTooLarge(ImageRejected):
    code = "too_large"


@dataclass(frozen=True)
class NormalisedImage:
    """The JPEG we store: RGB, upright, no metadata, longest side at most MAX_SIDE."""

    data: bytes
    width: int
    height: int
    sha256: str
    content_type: str = CONTENT_TYPE


def decoded_bytes(data: bytes, image: Image.Image) -> int:
    """Width * height * bytes per pixel of the decode, from the header: Pillow's or the file's, the larger."""
    width, height = image.size
    per_pixel = _MODE_BYTES.get(image.mode, 4)
    if image.format == "PNG" and len(data) >= 26:
        bit_depth, colour_type = data[24], data[25]
        per_pixel = max(per_pixel, -(-_PNG_CHANNELS.get(colour_type, 4) * bit_depth // 8))
    return width * height * per_pixel


def normalise_image(data: bytes, max_decoded_bytes: int = MAX_DECODED_BYTES) -> NormalisedImage:
    """Check an upload and return its normalised JPEG; raise `ImageRejected` when we do not take it."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageTooLarge(f"The image is larger than {MAX_UPLOAD_BYTES} bytes.")
    with _open_checked(data) as image:
        if image.format == "JPEG":
            # Let libjpeg scale by 1/2, 1/4 or 1/8 while decoding: far less memory and time for big photos,
            # and the result stays at least MAX_SIDE on both sides, so quality is unchanged.
            image.draft(None, (MAX_SIDE, MAX_SIDE))
        if decoded_bytes(data, image) > max_decoded_bytes:
            raise ImageTooLarge(f"The image would take more than {max_decoded_bytes} bytes to decode.")
        upright = _decode_upright(image)
    icc_profile = upright.info.get("icc_profile")
    colour_mode = upright.mode
    if colour_mode.startswith("I"):
        # High bit depth: shrink in its own mode first, so the 8-bit conversion runs on MAX_SIDE² pixels.
        upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    working = _to_rgb_or_rgba(upright)
    # Shrink before any other per-pixel work: everything after runs on at most MAX_SIDE² pixels.
    working.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    rgb = _flatten_onto_white(working)
    if colour_mode in ("RGB", "RGBA") and isinstance(icc_profile, bytes) and icc_profile:
        rgb = _to_srgb(rgb, icc_profile)
    # Nothing of the upload's metadata travels on: EXIF (GPS, camera serial), XMP, ICC, comments.
    rgb.info = {}
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    encoded = out.getvalue()
    return NormalisedImage(
        data=encoded,
        width=rgb.width,
        height=rgb.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
    )


def _open_checked(data: bytes) -> Image.Image:
    """Identify the format and read the declared size from the header only; refuse bombs here."""
    try:
        # `formats` keeps Pillow from even trying its other decoders (GIF, TIFF, PSD, EPS...).
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Raised from the header's dimensions (the warning only where warnings are errors, as in tests).
        raise ImageTooLarge(f"The image has more than {MAX_PIXELS} pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise UnsupportedImage("The file is not a JPEG, PNG or WebP image.") from None
    width, height = image.size
    if image.format not in ACCEPTED_FORMATS or width <= 0 or height <= 0:
        image.close()
        raise UnsupportedImage("The file is not a JPEG, PNG or WebP image.")
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageTooLarge(f"The image has more than {MAX_PIXELS} pixels.")
    return image


def _decode_upright(image: Image.Image) -> Image.Image:
    """Decode the pixels (the first frame of an animation) and apply the EXIF orientation."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        # Truncated or corrupt data: Pillow refuses it (we never set LOAD_TRUNCATED_IMAGES).
        raise UnsupportedImage("The image data is truncated or corrupt.") from None


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Bring any decoded mode to 8-bit RGB, or RGBA when the image has transparency."""
    if image.mode.startswith("I"):
        # 16/32-bit greyscale: scale to 8 bits instead of letting convert() clip everything above 255.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    """Composite transparency onto white: JPEG has no alpha, marketplaces show products on white."""
    if image.mode != "RGBA":
        return image
    flattened = Image.new("RGB", image.size, _BACKGROUND)
    flattened.paste(image, mask=image.getchannel("A"))
    return flattened


def _to_srgb(image: Image.Image, icc_profile: bytes) -> Image.Image:
    """Convert from the upload's embedded profile to sRGB; a broken profile is simply dropped.

    Dropping a profile such as Display P3 (phones) without converting would shift the colours.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(image, source, _SRGB_PROFILE, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image
