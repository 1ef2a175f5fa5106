"""Decode an uploaded image safely into an RGB PIL image, the way the catalogue images look.

:func:`load_image` accepts a path, raw bytes or a PIL image and either returns an
RGB image or raises :class:`InvalidImageError` with a message that names the
problem. It handles what phones and image editors produce: EXIF orientation,
greyscale, 16-bit, CMYK, palette and transparent images (composited on white,
the background of the catalogue photos) and animated GIFs (first frame). It
rejects empty or non-image files, truncated files, images smaller than
:data:`MIN_SIDE` pixels and images whose declared size exceeds
:data:`MAX_PIXELS` (decompression bombs) before decoding their pixels.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Smallest accepted width and height in pixels. Below 16 px an image carries too little
#: detail for a 60x80 catalogue match, and a 1x1 upload is almost always a mistake.
MIN_SIDE = 16

#: Largest accepted pixel count (width x height), checked before the pixels are decoded.
#: 64 megapixels covers the full-resolution output of current phone cameras (48-50 MP)
#: and keeps one decoded RGB image under about 200 MB.
MAX_PIXELS = 64_000_000

#: Formats that :func:`load_image` opens. Other formats that Pillow supports are rejected
#: (EPS, for one, runs Ghostscript), so an upload reaches only these decoders.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image

# Background used under transparent pixels, as in the catalogue's product shots.
_WHITE = (255, 255, 255)


class InvalidImageError(ValueError):
    """Raised for an input that cannot be used as an image. The message names the problem and the fix."""


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """Decode ``source`` into an upright RGB image, or raise :class:`InvalidImageError`.

    Args:
        source: a file path, the bytes of an image file, or a PIL image.
        max_pixels: largest accepted width x height, checked before decoding. It replaces
            Pillow's own limit ``Image.MAX_IMAGE_PIXELS`` for this call, above and below it.
        min_side: smallest accepted width and height in pixels.

    Returns:
        A fully loaded RGB image that does not depend on the source file. Transparent
        pixels are composited on white, EXIF orientation is applied, and an animated
        image gives its first frame.
    """
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "PIL image"
        _check_size(source.size, name, max_pixels, min_side)
        with _pillow_pixel_limit(max_pixels, name):
            image = _load_pixels(source, name)
        return _to_rgb(image, name)

    data, name = _read_bytes(source)
    with _pillow_pixel_limit(max_pixels, name):
        image = _open(data, name)
        _check_size(image.size, name, max_pixels, min_side)
        image = _load_pixels(image, name)
    return _to_rgb(image, name)


def source_name(source: ImageSource) -> str:
    """Return a short name for ``source`` to use in messages (file name, byte count or mode)."""
    if isinstance(source, Image.Image):
        return f"PIL image {source.mode} {source.size[0]}x{source.size[1]}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes"
    return Path(source).name


def _read_bytes(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"of {len(data)} bytes"
    elif isinstance(source, (str, os.PathLike)):
        if not os.fspath(source):
            raise InvalidImageError("Invalid image path '': it is empty. Pass the path of an image file.")
        path = Path(source)
        name = str(path)
        if not path.is_file():
            reason = "is a folder" if path.is_dir() else "was not found"
            raise InvalidImageError(f"Invalid image {name}: the file {reason}. Pass the path of an image file.")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InvalidImageError(f"Invalid image {name}: the file could not be read ({error}).") from error
    else:
        raise InvalidImageError(
            f"Invalid image source of type {type(source).__name__}: "
            "pass a file path, the bytes of an image file or a PIL image."
        )
    if not data:
        raise InvalidImageError(f"Invalid image {name}: it is empty (0 bytes). Upload a JPEG, PNG or WebP file.")
    return data, name


# Serialises the calls that change Pillow's global pixel limit, so they restore it in order.
_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int, name: str) -> Iterator[None]:
    """Make ``max_pixels`` Pillow's bomb limit inside the block, and turn Pillow's bomb check into an error.

    Pillow checks the declared size against the module global ``Image.MAX_IMAGE_PIXELS``
    (89,478,485 in Pillow 13.0) in ``Image.open`` and again for GIF frames while decoding.
    It warns above the limit and raises only above twice the limit, so its warning
    becomes an error here.
    """
    # NOTE: the global is shared by every thread, so an Image.open outside load_image that runs
    # during this block uses max_pixels as its limit. Calls of load_image wait for one another.
    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise InvalidImageError(
                f"Invalid image {name}: its declared size exceeds the limit of {max_pixels:,} pixels "
                "(possible decompression bomb). Resize it before uploading."
            ) from error
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _open(data: bytes, name: str) -> Image.Image:
    # Image.open reads only the header, so the declared size can be checked before decoding.
    try:
        return Image.open(io.BytesIO(data), formats=_registered_formats())
    except UnidentifiedImageError as error:
        raise InvalidImageError(
            f"Invalid image {name}: {_describe_unknown(data)}. "
            f"Supported formats are {', '.join(SUPPORTED_FORMATS)}."
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidImageError(f"Invalid image {name}: its header could not be read ({error}).") from error


def _registered_formats() -> list[str]:
    Image.init()  # registers every plugin, MPO included, so the formats below can be looked up
    return [name for name in SUPPORTED_FORMATS if name in Image.OPEN]


def _describe_unknown(data: bytes) -> str:
    head = data[:16]
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif"):
        return f"it is a HEIF/AVIF file ({head[8:12].decode()}), which is not supported; convert it to JPEG"
    try:
        text = data[:64].decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    # A cut inside a multi-byte character at byte 64 fails the decode, but such text is rare.
    if text and all(character.isprintable() or character in "\t\r\n" for character in text):
        return f"it is text, not an image (it starts with {text[:24]!r})"
    return f"it is not an image in a supported format (it starts with bytes {head[:8].hex(' ')})"


def _check_size(size: tuple[int, int], name: str, max_pixels: int, min_side: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InvalidImageError(
            f"Invalid image {name}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels (possible decompression bomb). Resize it before uploading."
        )
    if min(width, height) < min_side:
        raise InvalidImageError(
            f"Invalid image {name}: {width}x{height} pixels is too small; width and height must be at "
            f"least {min_side} pixels."
        )


def _load_pixels(image: Image.Image, name: str) -> Image.Image:
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # an animated GIF, WebP or PNG gives its first frame
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports a truncated file as OSError("image file is truncated ...").
        raise InvalidImageError(
            f"Invalid image {name}: its pixels could not be decoded ({error}). "
            "The file is truncated or corrupt; upload it again."
        ) from error
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"Ignored the unreadable EXIF orientation of {name} ({error}).", stacklevel=3)
        return image
    return upright if upright is not None else image


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_depth_to_l(image)
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        # A palette or a colour key with transparent entries (PNG tRNS, GIF transparency).
        image = image.convert("RGBA")
    elif image.mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")

    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, _WHITE)
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image, name)
    # NOTE: an RGB image with an embedded non-sRGB profile (Display P3 from phones) is used
    # as is, so its colours look slightly duller than on the phone.
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise InvalidImageError(
            f"Invalid image {name}: colour mode {image.mode!r} cannot be converted to RGB ({error})."
        ) from error


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    # Image.convert("L") clips 16-bit values at 255, which turns most photos white,
    # so the values are scaled to 8 bits here instead.
    pixels = np.asarray(image)
    if image.mode == "F":
        scale = 255.0 if float(np.nanmax(pixels, initial=0.0)) <= 1.0 else 1.0
        values = np.nan_to_num(pixels.astype(np.float64)) * scale
    else:
        values = pixels.astype(np.float64)
        # Mode "I" can come from an 8-bit or a 16-bit source; values above 255 mean 16-bit.
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _cmyk_to_rgb(image: Image.Image, name: str) -> Image.Image:
    # A CMYK file with an embedded ICC profile is converted through the profile; without one
    # Pillow's plain formula is the best guess.
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as error:
            logger.warning("Ignored the ICC profile of %s (%s); converting CMYK without it.", name, error)
    return image.convert("RGB")
