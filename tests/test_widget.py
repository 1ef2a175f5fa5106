"""Tests of the upload widget, driven from Python the way a notebook user drives it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as widgets
import matplotlib
import numpy as np
import pytest
from PIL import Image

from osoroi.images import ImageSource, load_image
from osoroi.matcher import LabelScore, MatchItem, MatchResult
from osoroi.widget import OsoroiWidget, example_photo

matplotlib.use("Agg")

COLOURS = {"Blue": (40, 60, 200), "Red": (200, 30, 30), "Black": (10, 10, 10)}


class StandInMatcher:
    """Matcher double with the public interface of osoroi.matcher.Matcher over tiny JPEGs in a folder.

    It records each call of :meth:`match` so tests can check the k and filters the widget sends.
    """

    def __init__(self, folder: Path) -> None:
        self.model = SimpleNamespace(
            head_classes={
                "gender": ["Men", "Women"],
                "masterCategory": ["Apparel", "Footwear"],
                "articleType": ["Tshirts", "Shirts", "Casual Shoes"],
                "baseColour": list(COLOURS),
            }
        )
        self.items = []
        for index in range(9):
            colour = list(COLOURS)[index % 3]
            path = folder / f"{100 + index}.jpg"
            Image.new("RGB", (60, 80), COLOURS[colour]).save(path, format="JPEG")
            labels = {
                "gender": "Men" if index < 6 else "Women",
                "masterCategory": "Apparel" if index % 2 == 0 else "Footwear",
                "articleType": "Tshirts" if index % 2 == 0 else "Casual Shoes",
                "baseColour": colour,
            }
            self.items.append(
                MatchItem(id=100 + index, similarity=0.9 - index / 20, labels=labels, image_path=str(path))
            )
        self.calls: list[dict[str, Any]] = []

    def match(
        self, source: ImageSource, k: int = 4, filters: dict[str, str] | None = None, top: int = 3
    ) -> MatchResult:
        image = load_image(source)
        self.calls.append({"size": image.size, "k": k, "filters": dict(filters or {}), "top": top})
        predictions = {
            "gender": [LabelScore("Men", 0.8), LabelScore("Women", 0.2)],
            "articleType": [
                LabelScore("Tshirts", 0.6),
                LabelScore("Shirts", 0.3),
                LabelScore("Casual Shoes", 0.1),
            ],
            "baseColour": [LabelScore("Red", 0.5), LabelScore("Blue", 0.3), LabelScore("Black", 0.2)],
        }
        predictions = {column: scores[:top] for column, scores in predictions.items()}
        selected = [
            item
            for item in self.items
            if all(item.labels.get(key) == value for key, value in (filters or {}).items())
        ]
        return MatchResult(image=image, predictions=predictions, matches=selected[:k])


def jpeg_bytes(size: tuple[int, int] = (120, 160), colour: tuple[int, int, int] = (30, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def noisy_jpeg_bytes(size: tuple[int, int] = (400, 533)) -> bytes:
    """Return a JPEG of random pixels, whose pixel data is most of the file (unlike a flat colour)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def upload(widget: OsoroiWidget, content: bytes, name: str, mime_type: str = "image/jpeg") -> None:
    """Set the FileUpload value as ipywidgets 8 sets it in the kernel after the user picks one file."""
    widget.upload.value = (
        {
            "name": name,
            "type": mime_type,
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime(2024, 5, 1, tzinfo=UTC),
        },
    )


def match_images(widget: OsoroiWidget) -> list[widgets.Image]:
    return [
        card.children[0] for card in widget.matches.children if isinstance(card.children[0], widgets.Image)
    ]


def label_bars(widget: OsoroiWidget) -> list[widgets.FloatProgress]:
    bars = []
    for block in widget.labels.children:
        for row in block.children:
            if isinstance(row, widgets.HBox):
                bars.extend(child for child in row.children if isinstance(child, widgets.FloatProgress))
    return bars


def label_headers(widget: OsoroiWidget) -> list[str]:
    return [block.children[0].value for block in widget.labels.children]


@pytest.fixture()
def stand_in(tmp_path: Path) -> StandInMatcher:
    return StandInMatcher(tmp_path)


def test_upload_shows_labels_and_matches(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    upload(widget, jpeg_bytes(), "blue-shirt.jpg")

    assert widget.result is not None
    assert widget.error == ""
    assert len(match_images(widget)) == 4
    assert all(image.value[:2] == b"\xff\xd8" for image in match_images(widget))  # JPEG bytes
    assert widget.photo.value[:2] == b"\xff\xd8"
    assert widget.photo.layout.display != "none"
    bars = label_bars(widget)
    assert [round(bar.value, 2) for bar in bars] == [0.8, 0.2, 0.6, 0.3, 0.1, 0.5, 0.3, 0.2]
    assert label_headers(widget) == ["<b>gender</b>", "<b>articleType</b>", "<b>baseColour</b>"]
    assert "Found 4 matches for blue-shirt.jpg" in widget.status.value
    assert stand_in.calls == [{"size": (120, 160), "k": 4, "filters": {}, "top": 3}]


def test_upload_clears_value_for_next_upload(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    content = jpeg_bytes()
    upload(widget, content, "same.jpg")
    upload(widget, content, "same.jpg")

    assert widget.upload.value == ()
    assert len(stand_in.calls) == 2


def test_match_captions_show_labels_and_similarity(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    widget.show_result(jpeg_bytes())

    caption = widget.matches.children[0].children[1].value
    assert "Tshirts" in caption
    assert "Blue" in caption
    assert "similarity 0.90" in caption


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"size,colour\nM,blue\n", "it is text, not an image"),
        (b"", "empty (0 bytes)"),
        (noisy_jpeg_bytes()[:20_000], "truncated or corrupt"),
    ],
    ids=["text", "empty", "truncated"],
)
def test_bad_upload_shows_message_then_recovers(
    stand_in: StandInMatcher, content: bytes, expected: str
) -> None:
    widget = OsoroiWidget(stand_in)
    upload(widget, jpeg_bytes(), "first.jpg")
    upload(widget, content, "broken.jpg")

    assert widget.result is None
    assert expected in widget.error
    assert "broken.jpg was not matched." in widget.message.value
    assert expected in widget.message.value
    assert widget.matches.children == ()
    assert widget.labels.children == ()
    assert widget.photo.layout.display == "none"
    assert widget.upload.disabled is False

    upload(widget, jpeg_bytes(colour=(200, 30, 30)), "next.jpg")
    assert widget.result is not None
    assert widget.message.value == ""
    assert len(match_images(widget)) == 4


def test_bad_upload_name_is_escaped(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    upload(widget, b"not an image", "<img src=x onerror=alert(1)>.jpg")

    assert "<img" not in widget.message.value
    assert "&lt;img src=x" in widget.message.value


def test_matcher_failure_shows_message(stand_in: StandInMatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> MatchResult:
        raise RuntimeError("index file is corrupt")

    widget = OsoroiWidget(stand_in)
    monkeypatch.setattr(stand_in, "match", fail)
    assert widget.show_result(jpeg_bytes(), name="photo.jpg") is None
    assert "RuntimeError: index file is corrupt" in widget.message.value

    monkeypatch.undo()
    assert widget.show_result(jpeg_bytes(), name="photo.jpg") is not None


def test_filters_reach_matcher(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    assert list(widget.gender.options) == [("Any", ""), ("Men", "Men"), ("Women", "Women")]
    widget.gender.value = "Women"
    widget.category.value = "Apparel"
    widget.show_result(jpeg_bytes())

    assert stand_in.calls[-1]["filters"] == {"gender": "Women", "masterCategory": "Apparel"}
    assert [item.id for item in widget.result.matches] == [106, 108]
    assert len(match_images(widget)) == 2


def test_same_colour_filters_on_predicted_colour(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    widget.same_colour.value = True
    widget.show_result(jpeg_bytes())

    assert stand_in.calls[-1]["filters"] == {"baseColour": "Red"}
    assert {item.labels["baseColour"] for item in widget.result.matches} == {"Red"}


def test_settings_change_reruns_last_photo(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    widget.show_result(jpeg_bytes(), name="photo.jpg")
    widget.count.value = 6

    assert stand_in.calls[-1]["k"] == 6
    assert len(match_images(widget)) == 6
    assert "Found 6 matches for photo.jpg" in widget.status.value


def test_no_match_explains_filters(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    widget.gender.value = "Women"
    widget.category.value = "Apparel"  # items 106 (Blue) and 108 (Black), none Red
    widget.same_colour.value = True
    widget.show_result(jpeg_bytes())

    assert widget.result is not None
    assert widget.result.matches == []
    assert "No catalogue item passes these filters" in widget.message.value


def test_invalid_k_is_rejected(stand_in: StandInMatcher) -> None:
    with pytest.raises(ValueError, match="Invalid k=0"):
        OsoroiWidget(stand_in, k=0)


def test_figure_draws_photo_bars_and_matches(stand_in: StandInMatcher, tmp_path: Path) -> None:
    widget = OsoroiWidget(stand_in)
    widget.show_result(jpeg_bytes(), name="photo.jpg")
    figure = widget.figure()

    axes = figure.get_axes()
    assert len(axes) == 2 + 4  # photo, label bars, one per match
    assert len(axes[1].patches) == 8
    assert axes[2].get_title().endswith("similarity 0.90")
    figure.savefig(tmp_path / "result.png")
    assert (tmp_path / "result.png").stat().st_size > 0


def test_figure_without_result_raises(stand_in: StandInMatcher) -> None:
    widget = OsoroiWidget(stand_in)
    widget.show_result(b"")
    with pytest.raises(RuntimeError, match="No result to draw: Invalid image"):
        widget.figure()


@pytest.fixture(scope="module")
def demo_matcher(real_data_dir: Path) -> Any:
    from osoroi.matcher import build_demo_matcher

    return build_demo_matcher(n_items=40)


@pytest.mark.real_data
def test_real_photo_upload_with_demo_matcher(demo_matcher: Any, real_data_dir: Path) -> None:
    photo = example_photo()
    widget = OsoroiWidget(demo_matcher)
    upload(widget, photo.read_bytes(), photo.name)

    assert widget.error == ""
    assert widget.result is not None
    assert len(match_images(widget)) == 4
    assert len(label_bars(widget)) >= 3
    assert all(0.0 <= bar.value <= 1.0 for bar in label_bars(widget))
    for item in widget.result.matches:
        assert Path(item.image_path).is_file()


@pytest.mark.real_data
def test_real_truncated_photo_then_good_photo(demo_matcher: Any, real_data_dir: Path) -> None:
    photo = example_photo()
    content = photo.read_bytes()
    widget = OsoroiWidget(demo_matcher)
    upload(widget, content[: len(content) // 3], "cut.jpg")

    assert widget.result is None
    assert "cut.jpg was not matched." in widget.message.value

    upload(widget, content, photo.name)
    assert widget.result is not None
    assert len(match_images(widget)) == 4


@pytest.mark.real_data
def test_real_filters_come_from_index(demo_matcher: Any, real_data_dir: Path) -> None:
    widget = OsoroiWidget(demo_matcher)
    genders = [value for _, value in widget.gender.options]

    assert genders == ["", *demo_matcher.index.allowed_values("gender")]
    widget.gender.value = genders[1]
    widget.show_result(example_photo())
    assert widget.result is not None
    assert {item.labels["gender"] for item in widget.result.matches} == {genders[1]}


@pytest.mark.real_data
def test_real_same_colour_keeps_predicted_colour(demo_matcher: Any, real_data_dir: Path) -> None:
    widget = OsoroiWidget(demo_matcher)
    widget.same_colour.value = True
    widget.show_result(example_photo())

    assert widget.result is not None
    colour = widget.result.predictions["baseColour"][0].label
    if colour in demo_matcher.index.allowed_values("baseColour"):
        assert widget.result.matches
        assert {item.labels["baseColour"] for item in widget.result.matches} == {colour}
    else:  # no indexed item has the predicted colour
        assert widget.result.matches == []
        assert "No catalogue item passes these filters" in widget.message.value
