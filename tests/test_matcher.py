"""Tests for osoroi.matcher.Matcher on a tiny model over synthetic catalogue JPEGs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import threadpoolctl
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
import osoroi.matcher
from osoroi.images import InvalidImageError
from osoroi.index import EmbeddingIndex, IndexMismatchError, build_catalogue_index
from osoroi.inference import bfloat16_supported
from osoroi.matcher import LabelScore, MatchItem, Matcher, MatchResult, single_threaded_blas
from tiny_model import HEAD_CLASSES, TinyModel, write_catalogue


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return write_catalogue(tmp_path_factory.mktemp("catalogue"), n_items=12)


@pytest.fixture(scope="module")
def matcher(catalogue: pd.DataFrame) -> Matcher:
    model = TinyModel()
    return Matcher(model, build_catalogue_index(model, catalogue, batch_size=8))


def catalogue_path(catalogue: pd.DataFrame, item_id: int) -> Path:
    return Path(catalogue.loc[catalogue["id"] == item_id, "image_path"].item())


def test_match_returns_predictions_per_head(matcher: Matcher) -> None:
    result = matcher.match(encode(synthetic_photo(), "JPEG"), k=4, top=2)

    assert isinstance(result, MatchResult)
    assert isinstance(result.image, Image.Image)
    assert result.image.mode == "RGB"
    assert list(result.predictions) == list(HEAD_CLASSES)
    for name, scores in result.predictions.items():
        assert len(scores) == 2
        assert all(isinstance(score, LabelScore) for score in scores)
        assert all(score.label in HEAD_CLASSES[name] for score in scores)
        assert scores[0].probability >= scores[1].probability
        assert 0.0 <= scores[1].probability <= scores[0].probability <= 1.0


def test_top_larger_than_classes_returns_all_classes(matcher: Matcher) -> None:
    result = matcher.match(encode(synthetic_photo(), "JPEG"), top=10)

    assert len(result.predictions["gender"]) == 2
    assert sum(score.probability for score in result.predictions["gender"]) == pytest.approx(1.0, abs=1e-5)


def test_match_returns_k_items_most_similar_first(matcher: Matcher, catalogue: pd.DataFrame) -> None:
    result = matcher.match(encode(synthetic_photo(), "PNG"), k=5)
    similarities = [item.similarity for item in result.matches]

    assert len(result.matches) == 5
    assert all(isinstance(item, MatchItem) for item in result.matches)
    assert similarities == sorted(similarities, reverse=True)
    first = result.matches[0]
    row = catalogue.loc[catalogue["id"] == first.id].iloc[0]
    assert first.labels["articleType"] == row["articleType"]
    assert Path(first.image_path) == Path(row["image_path"])
    assert Path(first.image_path).is_file()


def test_catalogue_path_is_not_its_own_match(matcher: Matcher, catalogue: pd.DataFrame) -> None:
    path = catalogue_path(catalogue, 1004)
    result = matcher.match(path, k=11)

    assert 1004 not in [item.id for item in result.matches]
    assert len(result.matches) == 11


def test_catalogue_bytes_are_not_their_own_match(matcher: Matcher, catalogue: pd.DataFrame) -> None:
    data = catalogue_path(catalogue, 1005).read_bytes()
    ids = [item.id for item in matcher.match(data, k=11).matches]

    assert 1005 not in ids
    assert len(ids) == 11


def test_catalogue_pil_image_is_not_its_own_match(matcher: Matcher, catalogue: pd.DataFrame) -> None:
    with Image.open(catalogue_path(catalogue, 1006)) as opened:
        image = opened.convert("RGB")  # no file name left on the converted copy
    ids = [item.id for item in matcher.match(image, k=11).matches]

    assert 1006 not in ids


def test_reencoded_copy_is_not_its_own_match(
    matcher: Matcher, catalogue: pd.DataFrame, tmp_path: Path
) -> None:
    copy = tmp_path / "download" / "images" / "1007.jpg"
    copy.parent.mkdir(parents=True)
    with Image.open(catalogue_path(catalogue, 1007)) as opened:
        opened.save(copy, quality=60)  # other pixels, so only the <id>.jpg name identifies it
    ids = [item.id for item in matcher.match(copy, k=11).matches]

    assert 1007 not in ids


def test_other_image_may_match_every_item(matcher: Matcher) -> None:
    assert len(matcher.match(encode(synthetic_photo(), "JPEG"), k=12).matches) == 12


def test_filters_keep_only_matching_items(matcher: Matcher) -> None:
    result = matcher.match(encode(synthetic_photo(), "JPEG"), k=12, filters={"gender": "Women", "articleType": "tshirts"})

    assert result.matches
    assert {item.labels["gender"] for item in result.matches} == {"Women"}
    assert {item.labels["articleType"] for item in result.matches} == {"Tshirts"}


def test_filters_with_no_items_give_no_matches(matcher: Matcher) -> None:
    # Watches are positions 2, 5, 8 and 11 and Blue is 3-5, so the only blue watch (5) is for Women.
    result = matcher.match(
        encode(synthetic_photo(), "JPEG"), filters={"articleType": "Watches", "baseColour": "Blue", "gender": "Men"}
    )
    assert result.matches == []
    assert result.predictions


def test_unknown_filter_key_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="Invalid filter key 'colour'. Allowed keys: gender, masterCategory, articleType, baseColour"):
        matcher.match(encode(synthetic_photo(), "JPEG"), filters={"colour": "Red"})


def test_unknown_filter_value_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="Invalid filter baseColour='Purple'. Allowed values: Black, Blue, Red"):
        matcher.match(encode(synthetic_photo(), "JPEG"), filters={"baseColour": "Purple"})


@pytest.mark.parametrize("k", [0, -2, 1.5, "4"])
def test_invalid_k_is_rejected(matcher: Matcher, k: object) -> None:
    with pytest.raises(ValueError, match="Invalid k"):
        matcher.match(encode(synthetic_photo(), "JPEG"), k=k)  # type: ignore[arg-type]


def test_invalid_top_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="Invalid top=0"):
        matcher.match(encode(synthetic_photo(), "JPEG"), top=0)


BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "zero bytes": (lambda: b"", "empty"),
    "text": (lambda: b"gender,articleType\nMen,Shirts\n", "text, not an image"),
    "truncated jpeg": (lambda: truncated_jpeg(synthetic_photo()), "truncated or corrupt"),
    "1x1 png": (lambda: encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
    "decompression bomb": (lambda: png_with_declared_size(20_000, 20_000), "exceeds the limit"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_raises_invalid_image(matcher: Matcher, kind: str, tmp_path: Path) -> None:
    build, message = BAD_INPUTS[kind]
    data = build()
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)

    with pytest.raises(InvalidImageError, match=message):
        matcher.match(data)
    with pytest.raises(InvalidImageError, match=message):
        matcher.match(path)


GOOD_ODD_INPUTS: dict[str, Callable[[], bytes]] = {
    "cmyk jpeg": lambda: cmyk_jpeg(synthetic_photo()),
    "greyscale jpeg": lambda: encode(synthetic_photo().convert("L"), "JPEG"),
    "16-bit greyscale png": lambda: greyscale_png_16bit(synthetic_photo()),
    "16-bit rgb png": lambda: rgb_png_16bit(synthetic_photo()),
    "transparent png": lambda: encode(with_transparent_left_half(synthetic_photo()), "PNG"),
    "transparent webp": lambda: encode(with_transparent_left_half(synthetic_photo()), "WEBP", lossless=True),
    "palette png": lambda: palette_png(synthetic_photo()),
    "palette png with transparency": lambda: palette_png_with_transparency(synthetic_photo()),
    "animated gif": animated_gif,
    "exif rotated jpeg": lambda: jpeg_with_orientation(synthetic_photo(), orientation=6),
}


@pytest.mark.parametrize("kind", list(GOOD_ODD_INPUTS))
def test_odd_input_gives_result(matcher: Matcher, kind: str) -> None:
    result = matcher.match(GOOD_ODD_INPUTS[kind](), k=3)

    assert result.image.mode == "RGB"
    assert len(result.matches) == 3
    assert all(np.isfinite(item.similarity) for item in result.matches)


def test_transparent_upload_matches_like_white_background(matcher: Matcher) -> None:
    photo = synthetic_photo()
    transparent = with_transparent_left_half(photo)
    flattened = Image.new("RGB", photo.size, (255, 255, 255))
    flattened.paste(transparent, mask=transparent.getchannel("A"))

    from_png = matcher.match(encode(transparent, "PNG"), k=3)
    from_flat = matcher.match(flattened, k=3)

    assert [item.id for item in from_png.matches] == [item.id for item in from_flat.matches]


def test_invalid_search_method_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="Invalid search_method='annoy'"):
        Matcher(matcher.model, matcher.index, search_method="annoy")


def test_empty_path_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(InvalidImageError, match="Invalid image path '': it is empty"):
        matcher.match("")


def test_empty_bytes_message(matcher: Matcher) -> None:
    with pytest.raises(InvalidImageError, match=r"^Invalid image of 0 bytes: it is empty"):
        matcher.match(b"")


def test_invalid_precision_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="Invalid precision='float16'"):
        Matcher(matcher.model, matcher.index, precision="float16")


@pytest.mark.parametrize(("precision", "channels_last"), [("float32", False), ("bfloat16", True)])
def test_match_runs_model_at_precision(
    matcher: Matcher, monkeypatch: pytest.MonkeyPatch, precision: str, channels_last: bool
) -> None:
    calls: list[tuple[str, bool]] = []
    run_model = osoroi.matcher.run_model

    def recording_run_model(model: object, batch: object, precision: str, channels_last: bool) -> object:
        calls.append((precision, channels_last))
        return run_model(model, batch, precision, channels_last)

    monkeypatch.setattr(osoroi.matcher, "run_model", recording_run_model)
    Matcher(matcher.model, matcher.index, precision=precision).match(encode(synthetic_photo(), "JPEG"), k=1)

    assert calls == [(precision, channels_last)]


def test_default_precision_follows_the_cpu(matcher: Matcher) -> None:
    expected = "bfloat16" if bfloat16_supported() else "float32"
    assert Matcher(matcher.model, matcher.index).precision == expected


def test_bfloat16_match_agrees_with_float32(matcher: Matcher) -> None:
    upload = encode(synthetic_photo(), "JPEG")
    exact = Matcher(matcher.model, matcher.index, precision="float32").match(upload, k=3)
    fast = Matcher(matcher.model, matcher.index, precision="bfloat16").match(upload, k=3)

    assert [item.id for item in fast.matches][:1] == [item.id for item in exact.matches][:1]
    for name in HEAD_CLASSES:
        expected = exact.predictions[name][0].probability
        assert fast.predictions[name][0].probability == pytest.approx(expected, abs=0.05)


def blas_threads() -> set[int]:
    if not threadpoolctl.threadpool_info():
        pytest.skip("numpy is not linked to a BLAS that threadpoolctl can see")
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def test_match_runs_numpy_blas_on_one_thread(matcher: Matcher, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[set[int]] = []
    search = matcher.index.search

    def recording_search(*args: object, **kwargs: object) -> object:
        seen.append(blas_threads())
        return search(*args, **kwargs)

    monkeypatch.setattr(matcher.index, "search", recording_search)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        matcher.match(encode(synthetic_photo(), "JPEG"), k=2)
        assert blas_threads() == {2}

    assert seen == [{1}]


def test_blas_limit_holds_until_last_match_ends() -> None:
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        first, second = single_threaded_blas(), single_threaded_blas()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert blas_threads() == {1}
        second.__exit__(None, None, None)
        assert blas_threads() == {2}


def test_index_of_other_model_is_rejected(matcher: Matcher) -> None:
    with pytest.raises(IndexMismatchError, match="rebuild the index"):
        Matcher(TinyModel(fingerprint_model="tiny@other"), matcher.index)


def test_reduced_index_matches_and_excludes_self(matcher: Matcher, catalogue: pd.DataFrame) -> None:
    reduced = Matcher(matcher.model, matcher.index.reduce(8))
    result = reduced.match(catalogue_path(catalogue, 1002), k=11)

    assert reduced.index.dim == 8
    assert len(result.matches) == 11
    assert 1002 not in [item.id for item in result.matches]


def test_model_of_other_dimension_is_rejected(matcher: Matcher) -> None:
    model = TinyModel()
    model.embedding_dim = 16
    with pytest.raises(ValueError, match="dimension 16 but the index expects 32"):
        Matcher(model, matcher.index)


def test_from_files_loads_saved_model_and_index(catalogue: pd.DataFrame, tmp_path: Path) -> None:
    from osoroi.model import build_model, save_model

    head_classes = {name: classes for name, classes in HEAD_CLASSES.items()}
    model = build_model(weights="random", resolution=32, head_classes=head_classes)
    model_path = save_model(model, tmp_path / "model.pt")
    index_path = build_catalogue_index(model, catalogue.head(5), batch_size=5).save(tmp_path / "index.npz")

    loaded = Matcher.from_files(model_path, index_path)
    result = loaded.match(catalogue_path(catalogue, 1001), k=2)

    assert len(result.matches) == 2
    assert 1001 not in [item.id for item in result.matches]
    assert loaded.model.fingerprint == EmbeddingIndex.load(index_path).fingerprint


def test_from_files_rejects_index_of_other_model(catalogue: pd.DataFrame, tmp_path: Path) -> None:
    from osoroi.model import build_model, save_model

    first = build_model(weights="random", resolution=32, head_classes=HEAD_CLASSES)
    index_path = build_catalogue_index(first, catalogue.head(3), batch_size=3).save(tmp_path / "index.npz")
    second = build_model(weights="random", resolution=32, head_classes=HEAD_CLASSES)
    model_path = save_model(second, tmp_path / "model.pt")  # saving adds a content hash to the fingerprint

    with pytest.raises(IndexMismatchError) as caught:
        Matcher.from_files(model_path, index_path)
    assert "untrained-heads" in str(caught.value)
    assert second.fingerprint["model"] in str(caught.value)


@pytest.mark.real_data
def test_demo_matcher_matches_catalogue_image(real_data_dir: Path) -> None:
    from osoroi.matcher import build_demo_matcher

    demo = build_demo_matcher()
    path = demo.index.image_path(0)
    own_id = int(demo.index.ids[0])
    result = demo.match(path, k=4)

    assert len(demo.index) == 200
    assert len(result.matches) == 4
    assert own_id not in [item.id for item in result.matches]
    assert set(result.predictions) == set(demo.model.head_classes)
    shirts = demo.match(path, k=4, filters={"articleType": "Tshirts"})
    assert {item.labels["articleType"] for item in shirts.matches} == {"Tshirts"}


@pytest.mark.real_data
def test_demo_matcher_accepts_real_photo(real_data_dir: Path, tmp_path: Path) -> None:
    from osoroi.matcher import build_demo_matcher

    photos = sorted((real_data_dir / "clothing-photos" / "validation" / "t-shirt").glob("*.jpg"))
    assert photos, "no clothing photo under clothing-photos/validation/t-shirt"
    demo = build_demo_matcher()
    data = photos[0].read_bytes()

    result = demo.match(data, k=4)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])

    assert len(result.matches) == 4
    with pytest.raises(InvalidImageError, match="truncated"):
        demo.match(cut)
    with Image.open(photos[0]) as opened:
        upright = opened.convert("RGB")
    rotated = demo.match(jpeg_with_orientation(upright, orientation=8))
    assert rotated.image.size == upright.size[::-1]
