"""Tests for osoroi.images.load_image on every awkward kind of upload."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_cases import (
    animated_gif,
    cmyk_jpeg,
    encode,
    greyscale_png_16bit,
    jpeg_with_orientation,
    palette_png,
    palette_png_with_transparency,
    png_with_declared_size,
    rgb_png_16bit,
    synthetic_photo,
    truncated_jpeg,
    with_transparent_left_half,
)
from osoroi.images import MAX_PIXELS, MIN_SIDE, InvalidImageError, load_image


@pytest.fixture(params=["synthetic", pytest.param("photo", marks=pytest.mark.real_data)])
def base_image(request: pytest.FixtureRequest) -> Image.Image:
    """Return an RGB image: a synthetic catalogue-like shot, or one real clothing photo (real data)."""
    if request.param == "synthetic":
        return synthetic_photo()
    data_dir: Path = request.getfixturevalue("real_data_dir")
    photos = sorted((data_dir / "clothing-photos" / "validation" / "shirt").glob("*.jpg"))
    if not photos:
        pytest.skip("no clothing photo under clothing-photos/validation/shirt")
    with Image.open(photos[0]) as photo:
        return photo.convert("RGB").resize((120, 160))


def mean_abs_difference(first: Image.Image, second: Image.Image) -> float:
    return float(np.abs(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)).mean())


def test_plain_jpeg_bytes_and_path_decode_alike(base_image: Image.Image, tmp_path: Path) -> None:
    data = encode(base_image, "JPEG", quality=95)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)

    from_bytes = load_image(data)
    from_path = load_image(path)
    from_str = load_image(str(path))

    assert from_bytes.mode == "RGB"
    assert from_bytes.size == base_image.size
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_path))
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_str))
    assert mean_abs_difference(from_bytes, base_image) < 6


def test_empty_bytes_are_rejected() -> None:
    with pytest.raises(InvalidImageError, match=r"empty \(0 bytes\)"):
        load_image(b"")


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(path)


def test_text_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("id,gender\n15970,Men\n")
    with pytest.raises(InvalidImageError, match="text, not an image") as caught:
        load_image(path)
    assert "Supported formats are JPEG" in str(caught.value)


def test_binary_non_image_is_rejected() -> None:
    with pytest.raises(InvalidImageError, match="not an image in a supported format"):
        load_image(bytes(range(256)) * 4)


def test_heic_is_rejected_with_hint() -> None:
    header = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    with pytest.raises(InvalidImageError, match="HEIF/AVIF .*convert it to JPEG"):
        load_image(header + bytes(64))


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="was not found"):
        load_image(tmp_path / "missing.jpg")


def test_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="is a folder"):
        load_image(tmp_path)


def test_unsupported_source_type_is_rejected() -> None:
    with pytest.raises(InvalidImageError, match="source of type int"):
        load_image(42)  # type: ignore[arg-type]


def test_truncated_jpeg_is_rejected(base_image: Image.Image) -> None:
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        load_image(truncated_jpeg(base_image))


def test_jpeg_cut_inside_header_is_rejected(base_image: Image.Image) -> None:
    data = encode(base_image, "JPEG")
    with pytest.raises(InvalidImageError, match="Invalid image"):
        load_image(data[:40])


def test_cmyk_jpeg_becomes_rgb(base_image: Image.Image) -> None:
    image = load_image(cmyk_jpeg(base_image))

    assert image.mode == "RGB"
    assert image.size == base_image.size
    assert mean_abs_difference(image, base_image) < 8


def test_greyscale_jpeg_becomes_grey_rgb(base_image: Image.Image) -> None:
    grey = base_image.convert("L")
    image = load_image(encode(grey, "JPEG", quality=95))
    pixels = np.asarray(image)

    assert image.mode == "RGB"
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 1], pixels[..., 2])
    assert np.abs(pixels[..., 0].astype(int) - np.asarray(grey).astype(int)).mean() < 4


def test_greyscale_png_16bit_keeps_its_values(base_image: Image.Image) -> None:
    # A plain convert("RGB") clips 16-bit values at 255, which would give an all-white image.
    image = load_image(greyscale_png_16bit(base_image))
    expected = np.asarray(base_image.convert("L"))

    assert image.mode == "RGB"
    assert np.abs(np.asarray(image)[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_rgb_png_16bit_keeps_its_colours(base_image: Image.Image) -> None:
    image = load_image(rgb_png_16bit(base_image))

    assert image.mode == "RGB"
    assert mean_abs_difference(image, base_image) <= 1


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_transparent_pixels_become_white(base_image: Image.Image, format: str) -> None:
    transparent = with_transparent_left_half(base_image)
    options = {"lossless": True} if format == "WEBP" else {}
    image = load_image(encode(transparent, format, **options))
    pixels = np.asarray(image)
    half = pixels.shape[1] // 2

    assert image.mode == "RGB"
    assert (pixels[:, :half] == 255).all()
    assert np.abs(pixels[:, half:].astype(int) - np.asarray(base_image)[:, half:].astype(int)).max() <= 2


def test_greyscale_with_alpha_becomes_white_background(base_image: Image.Image) -> None:
    transparent = with_transparent_left_half(base_image).convert("LA")
    pixels = np.asarray(load_image(encode(transparent, "PNG")))

    assert (pixels[:, : pixels.shape[1] // 2] == 255).all()


def test_palette_png_becomes_rgb(base_image: Image.Image) -> None:
    image = load_image(palette_png(base_image))

    assert image.mode == "RGB"
    assert mean_abs_difference(image, base_image) < 12


def test_palette_png_transparency_becomes_white(base_image: Image.Image) -> None:
    image = load_image(palette_png_with_transparency(base_image))
    pixels = np.asarray(image)
    half = pixels.shape[1] // 2

    assert image.mode == "RGB"
    assert (pixels[:, :half] == 255).all()
    assert mean_abs_difference(image.crop((half, 0, *image.size)), base_image.crop((half, 0, *image.size))) < 12


def test_animated_gif_gives_first_frame() -> None:
    image = load_image(animated_gif())

    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 0, 0)


def test_exif_orientation_is_applied(base_image: Image.Image) -> None:
    marked = base_image.copy()
    marked.paste((255, 0, 0), (0, 0, 8, 8))  # red block in the top-left corner as stored
    image = load_image(jpeg_with_orientation(marked, orientation=6))
    width, height = base_image.size

    # Orientation 6 means "rotate 90 degrees clockwise to display": width and height swap
    # and the stored top-left corner ends up top-right.
    assert image.size == (height, width)
    red, green, blue = image.getpixel((height - 3, 3))
    assert red > 200
    assert green < 60
    assert blue < 60


def test_pil_image_input_is_normalised(base_image: Image.Image) -> None:
    image = load_image(with_transparent_left_half(base_image))

    assert image.mode == "RGB"
    assert (np.asarray(image)[:, : base_image.size[0] // 2] == 255).all()


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 100), (100, MIN_SIDE - 1)])
def test_tiny_image_is_rejected(size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, (10, 20, 30)), "PNG")
    with pytest.raises(InvalidImageError, match=f"too small; width and height must be at least {MIN_SIDE}"):
        load_image(data)


def test_smallest_accepted_image_decodes() -> None:
    image = load_image(encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE), (10, 20, 30)), "PNG"))
    assert image.size == (MIN_SIDE, MIN_SIDE)


@pytest.mark.parametrize(
    "size",
    [
        (9_000, 9_000),  # 81 MP: above MAX_PIXELS, below Pillow's own warning limit
        (10_000, 10_000),  # 100 MP: Pillow warns
        (50_000, 50_000),  # 2.5 GP: Pillow raises DecompressionBombError
    ],
)
def test_decompression_bomb_is_rejected_before_decoding(size: tuple[int, int]) -> None:
    data = png_with_declared_size(*size)
    assert struct.unpack(">II", data[16:24]) == size

    with pytest.raises(InvalidImageError, match=f"limit of {MAX_PIXELS:,} pixels"):
        load_image(data)


def test_custom_pixel_limit_is_enforced(base_image: Image.Image) -> None:
    data = encode(base_image, "PNG")
    with pytest.raises(InvalidImageError, match="exceeds the limit of 100 pixels"):
        load_image(data, max_pixels=100)


@pytest.mark.parametrize("size", [(10_000, 10_000), (14_000, 14_000)])
def test_pixel_limit_above_pillow_limit(size: tuple[int, int]) -> None:
    # 100 MP and 196 MP declared: above Pillow's warning limit and (196 MP) its error limit.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    data = png_with_declared_size(*size)

    # The header passes the limit, so decoding starts and fails on the missing pixel data.
    with pytest.raises(InvalidImageError, match="pixels could not be decoded") as raised:
        load_image(data, max_pixels=200_000_000)

    assert "limit" not in str(raised.value)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_pixel_limit_above_pillow_limit_rejects() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    data = png_with_declared_size(15_000, 15_000)

    with pytest.raises(InvalidImageError, match="exceeds the limit of 200,000,000 pixels"):
        load_image(data, max_pixels=200_000_000)

    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_pixel_limit_below_pillow_limit_names_it() -> None:
    data = png_with_declared_size(5_000, 5_000)

    with pytest.raises(InvalidImageError, match="exceeds the limit of 1,000,000 pixels") as raised:
        load_image(data, max_pixels=1_000_000)

    assert "89478485" not in str(raised.value)


def test_large_image_within_custom_limit_decodes() -> None:
    image = Image.new("L", (10_000, 1_000), 200)
    data = encode(image, "PNG")

    decoded = load_image(data, max_pixels=10_000_000)

    assert decoded.size == (10_000, 1_000)
    assert decoded.getpixel((5_000, 500)) == (200, 200, 200)


@pytest.mark.real_data
def test_catalogue_images_decode(real_data_dir: Path) -> None:
    images = sorted((real_data_dir / "fashion-product-images-small" / "images").glob("1*.jpg"))[:20]
    assert images, "no catalogue images found"
    for path in images:
        image = load_image(path)
        assert image.mode == "RGB"
        assert min(image.size) >= MIN_SIDE
