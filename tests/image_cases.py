"""Image files of every awkward kind, built from a real RGB image for the image and matcher tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def synthetic_photo(width: int = 60, height: int = 80) -> Image.Image:
    """Return an RGB image with a dark garment-like shape on white, like a catalogue shot."""
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    body = (np.abs(xs - width / 2) < width / 3) & (ys > height / 6) & (ys < height * 5 / 6)
    pixels[body] = np.stack([(xs[body] * 3) % 200, (ys[body] * 2) % 160, np.full(body.sum(), 90)], axis=1)
    return Image.fromarray(pixels, "RGB")


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    """Return ``image`` encoded in ``format`` (JPEG, PNG, WEBP, GIF) as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def truncated_jpeg(image: Image.Image) -> bytes:
    """Return a baseline JPEG of ``image`` cut after 60% of its bytes (header intact, scan cut)."""
    data = encode(image, "JPEG", quality=95)
    return data[: int(len(data) * 0.6)]


def cmyk_jpeg(image: Image.Image) -> bytes:
    """Return ``image`` converted to CMYK and saved as a JPEG."""
    return encode(image.convert("CMYK"), "JPEG", quality=95)


def greyscale_png_16bit(image: Image.Image) -> bytes:
    """Return a 16-bit greyscale PNG whose values are the 8-bit grey values times 257."""
    grey = np.asarray(image.convert("L")).astype(np.uint16) * 257
    return encode(Image.fromarray(grey.astype("<u2")), "PNG")


def rgb_png_16bit(image: Image.Image) -> bytes:
    """Return a 16-bit-per-channel RGB PNG written chunk by chunk (Pillow cannot write one)."""
    pixels = np.asarray(image.convert("RGB")).astype(">u2") * 257
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def with_transparent_left_half(image: Image.Image) -> Image.Image:
    """Return an RGBA copy whose left half is fully transparent black."""
    rgba = image.convert("RGBA")
    pixels = np.asarray(rgba).copy()
    pixels[:, : pixels.shape[1] // 2] = (0, 0, 0, 0)
    return Image.fromarray(pixels, "RGBA")


def palette_png_with_transparency(image: Image.Image) -> bytes:
    """Return a palette PNG whose left half uses a transparent (black) palette entry."""
    palette_image = image.convert("RGB").quantize(colors=31)
    pixels = np.asarray(palette_image).copy()
    pixels[:, : pixels.shape[1] // 2] = 31  # entry 31, past the 31 quantized colours
    transparent = Image.fromarray(pixels, "P")
    transparent.putpalette(palette_image.getpalette()[: 31 * 3] + [0, 0, 0])
    return encode(transparent, "PNG", transparency=31)


def palette_png(image: Image.Image) -> bytes:
    """Return ``image`` quantized to a 64-colour palette PNG without transparency."""
    return encode(image.convert("RGB").quantize(colors=64), "PNG")


def animated_gif(width: int = 40, height: int = 40) -> bytes:
    """Return a three-frame GIF: red, then green, then blue."""
    frames = [Image.new("RGB", (width, height), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    """Return a JPEG of ``image`` carrying EXIF Orientation ``orientation`` (6: display rotated 90 deg clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def png_with_declared_size(width: int, height: int) -> bytes:
    """Return a small valid PNG whose IHDR is rewritten to declare ``width`` x ``height`` pixels."""
    data = bytearray(encode(Image.new("L", (16, 16), 128), "PNG"))
    # Bytes 8-15 are the IHDR length and type; width and height follow, then 5 bytes, then the CRC.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)
