"""Upload a clothing photo in a notebook or a Voila page and see its labels and catalogue matches.

:class:`OsoroiWidget` is an ``ipywidgets.VBox`` built on a :class:`~osoroi.matcher.Matcher`:
a file upload for one image, optional filters (gender, category, same colour) and
a match count. Each upload goes through :meth:`OsoroiWidget.show_result`, which a
headless run (papermill, tests) calls directly with a path or bytes, and
:meth:`OsoroiWidget.figure` draws the current result with matplotlib for a report.
"""

from __future__ import annotations

import html
import io
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure
from PIL import Image

from osoroi import config
from osoroi.images import ImageSource, InvalidImageError, load_image, source_name
from osoroi.match_display import CAPTION_LABELS, plot_match_result
from osoroi.matcher import Matcher, MatchItem, MatchResult

logger = logging.getLogger(__name__)

#: Maximum number of matches the count box accepts. More than a row or two of
#: thumbnails stops being a quick visual check.
MAX_MATCHES = 24

#: Filter keys of :meth:`Matcher.match` behind the gender and category dropdowns.
GENDER_KEY = "gender"
CATEGORY_KEY = "masterCategory"
COLOUR_KEY = "baseColour"

#: Width in pixels of the uploaded photo and of each match thumbnail.
PHOTO_WIDTH = 240
THUMBNAIL_WIDTH = 120

_ANY = "Any"


class OsoroiWidget(widgets.VBox):
    """Widget that matches an uploaded clothing photo against the catalogue and shows the result.

    Args:
        matcher: the matcher that predicts labels and finds catalogue matches.
        k: number of matches shown at first (the count box can change it).
        top: number of most probable labels shown per label column.
        genders: choices of the gender filter; by default the genders of the
            indexed catalogue items.
        categories: choices of the category filter (``masterCategory``); by
            default the master categories of the indexed catalogue items.

    Attributes:
        result: the last :class:`MatchResult`, or None before the first match or
            after a rejected upload.
        error: the message shown for the last rejected upload, or "" when the
            last upload worked.
    """

    def __init__(
        self,
        matcher: Matcher,
        k: int = 4,
        top: int = 3,
        genders: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
    ) -> None:
        if not 1 <= k <= MAX_MATCHES:
            raise ValueError(f"Invalid k={k}: the number of matches must be between 1 and {MAX_MATCHES}.")
        if top < 1:
            raise ValueError(f"Invalid top={top}: show at least one label per column.")
        self.matcher = matcher
        self.top = top
        self.result: MatchResult | None = None
        self.error = ""
        self._source: ImageSource | None = None
        self._source_name = ""

        self.upload = widgets.FileUpload(
            accept="image/*",
            multiple=False,
            description="Upload photo",
            icon="upload",
            layout=widgets.Layout(width="auto"),
        )
        self.upload.add_class("osoroi-upload")
        self.gender = _filter_dropdown("Gender", genders, _filter_choices(matcher, GENDER_KEY))
        self.category = _filter_dropdown("Category", categories, _filter_choices(matcher, CATEGORY_KEY))
        self.same_colour = widgets.Checkbox(
            value=False,
            description="Same colour",
            indent=False,
            layout=widgets.Layout(width="auto"),
            tooltip="Show only catalogue items of the predicted base colour",
        )
        self.count = widgets.BoundedIntText(
            value=k,
            min=1,
            max=MAX_MATCHES,
            description="Matches",
            layout=widgets.Layout(width="150px"),
        )
        self.status = widgets.HTML(value="Upload a photo of one piece of clothing.")
        self.status.add_class("osoroi-status")
        self.message = widgets.HTML(value="")
        self.message.add_class("osoroi-message")
        self.photo = widgets.Image(
            format="jpeg",
            layout=widgets.Layout(
                width=f"{PHOTO_WIDTH}px", height="auto", object_fit="contain", display="none"
            ),
        )
        self.photo.add_class("osoroi-photo")
        # One block per label column; the blocks wrap into columns beside the photo.
        self.labels = widgets.HBox(layout=widgets.Layout(margin="0 0 0 16px", flex_flow="row wrap", flex="1"))
        self.labels.add_class("osoroi-labels")
        self.matches = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.matches.add_class("osoroi-matches")

        filters = widgets.HBox(
            [self.gender, self.category, self.same_colour, self.count],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        super().__init__(
            [
                widgets.HBox([self.upload, self.status], layout=widgets.Layout(align_items="center")),
                filters,
                self.message,
                # flex-start keeps the photo's aspect ratio instead of stretching it to the labels' height.
                widgets.HBox([self.photo, self.labels], layout=widgets.Layout(align_items="flex-start")),
                self.matches,
            ]
        )
        self.add_class("osoroi-widget")

        self.upload.observe(self._on_upload, names="value")
        for control in (self.gender, self.category, self.same_colour, self.count):
            control.observe(self._on_settings_change, names="value")

    def filters(self) -> dict[str, str]:
        """Return the gender and category filters chosen in the dropdowns ("Any" is left out)."""
        chosen = {GENDER_KEY: self.gender.value, CATEGORY_KEY: self.category.value}
        return {key: value for key, value in chosen.items() if value}

    def show_result(self, source: ImageSource, name: str | None = None) -> MatchResult | None:
        """Match a photo with the current settings, show the result in the widget and return it.

        Args:
            source: a file path, the bytes of an image file or a PIL image.
            name: the name shown in the status line; by default the file name
                or the byte count of ``source``.

        Returns:
            The match result, or None when ``source`` is not a usable image. Then the
            widget shows the reason, :attr:`error` stores it, and the widget stays
            ready for the next photo.
        """
        name = name or source_name(source)
        self._source, self._source_name = source, name
        self.upload.disabled = True
        try:
            return self._match_and_show(source, name)
        finally:
            self.upload.disabled = False

    def figure(self) -> Figure:
        """Draw the current result (photo, label bars and match images) as a matplotlib figure."""
        if self.result is None:
            reason = self.error.rstrip(".") or "no photo has been matched yet"
            raise RuntimeError(f"No result to draw: {reason}. Match an image with show_result first.")
        return plot_match_result(self.result, title=self._source_name, top=self.top)

    def _match_and_show(self, source: ImageSource, name: str) -> MatchResult | None:
        started = time.perf_counter()
        self._set_status(f"Reading {name}…", busy=True)
        try:
            image = load_image(source)
            self._show_photo(image)
            self._set_status(f"Finding matches for {name}…", busy=True)
            result = self._match(source)
        except InvalidImageError as error:
            logger.warning("Rejected %s: %s", name, error)
            self._show_error(name, str(error))
            return None
        except Exception as error:  # noqa: BLE001 - a failure must not leave the widget stuck
            # The traceback goes to the log, so a bug is not mistaken for a bad photo.
            logger.exception("Matching %s failed", name)
            self._show_error(name, f"Matching failed with {type(error).__name__}: {error}")
            return None

        self.result, self.error = result, ""
        self.message.value = ""
        self._show_labels(result)
        self._show_matches(result)
        seconds = time.perf_counter() - started
        found = _plural(len(result.matches), "match", "matches")
        self._set_status(f"Found {found} for {name} in {seconds:.1f} s.")
        return result

    def _match(self, source: ImageSource) -> MatchResult:
        filters = self.filters()
        k = int(self.count.value)
        result = self.matcher.match(source, k=k, filters=filters or None, top=self.top)
        if not self.same_colour.value:
            return result
        colours = result.predictions.get(COLOUR_KEY, [])
        if not colours:
            logger.warning("The model predicts no %s, so the same-colour filter is ignored", COLOUR_KEY)
            return result
        colour = colours[0].label
        known = _catalogue_values(self.matcher, COLOUR_KEY)
        if known is not None and colour not in known:
            # The matcher rejects a filter value that no indexed item has, so no search is needed.
            return MatchResult(image=result.image, predictions=result.predictions, matches=[])
        # The colour filter needs the prediction, so a second search runs with it.
        filters[COLOUR_KEY] = colour
        return self.matcher.match(source, k=k, filters=filters, top=self.top)

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        files = change["new"]
        if not files:  # the reset below, or the user cleared the selection
            return
        upload = files[-1]
        content = bytes(upload["content"])
        self.show_result(content, name=upload.get("name") or source_name(content))
        # An empty value lets the user upload the same file again and still get an event.
        self.upload.value = ()

    def _on_settings_change(self, change: Mapping[str, Any]) -> None:
        if self._source is not None and self.result is not None:
            self.show_result(self._source, name=self._source_name)

    def _set_status(self, text: str, busy: bool = False) -> None:
        icon = '<i class="fa fa-spinner fa-spin"></i> ' if busy else ""
        self.status.value = f"{icon}{html.escape(text)}"

    def _show_error(self, name: str, reason: str) -> None:
        self.result, self.error = None, reason
        self.message.value = (
            '<div style="color:#a31515;border-left:4px solid #a31515;padding:4px 8px">'
            f"<b>{html.escape(name)} was not matched.</b> {html.escape(reason)}</div>"
        )
        self.photo.layout.display = "none"
        self.labels.children = ()
        self.matches.children = ()
        self._set_status("Upload another photo.")

    def _show_photo(self, image: Image.Image) -> None:
        self.photo.value = _jpeg_bytes(image, PHOTO_WIDTH * 2)
        self.photo.layout.display = None
        self.labels.children = ()
        self.matches.children = ()

    def _show_labels(self, result: MatchResult) -> None:
        blocks = []
        for column, scores in result.predictions.items():
            rows = [widgets.HTML(f"<b>{html.escape(column)}</b>")]
            rows.extend(_label_bar(score.label, score.probability) for score in scores[: self.top])
            blocks.append(widgets.VBox(rows, layout=widgets.Layout(margin="0 16px 8px 0")))
        self.labels.children = tuple(blocks)

    def _show_matches(self, result: MatchResult) -> None:
        if not result.matches:
            self.message.value = (
                "No catalogue item passes these filters. Set a filter to 'Any' or clear 'Same colour'."
            )
        self.matches.children = tuple(_match_card(item) for item in result.matches)


def example_photo(split: str = "validation", photo_class: str | None = None) -> Path:
    """Return the first real clothing photo of ``split`` (of ``photo_class`` if given), sorted by path."""
    folder = config.photos_dir() / split
    pattern = f"{photo_class}/*.jpg" if photo_class else "*/*.jpg"
    photos = sorted(folder.glob(pattern))
    if not photos:
        raise FileNotFoundError(
            f"No photos match {pattern} in {folder}. Set OSOROI_DATA_DIR (or OSOROI_PHOTOS_DIR) to the "
            "folder that contains clothing-photos/, or pass a photo explicitly."
        )
    return photos[0]


def _catalogue_values(matcher: Matcher, column: str) -> list[str] | None:
    """Return the values of ``column`` among the indexed items, or None when the matcher has no index."""
    index = getattr(matcher, "index", None)
    if index is None or not hasattr(index, "allowed_values"):
        return None
    return [str(value) for value in index.allowed_values(column)]


def _filter_choices(matcher: Matcher, column: str) -> list[str]:
    """Return the choices of a filter: the indexed values, else the classes of the model's head."""
    values = _catalogue_values(matcher, column)
    if values is not None:
        return values
    model = getattr(matcher, "model", None)
    head_classes = getattr(model, "head_classes", None) or {}
    return sorted(str(name) for name in head_classes.get(column, []))


def _filter_dropdown(
    description: str, choices: Sequence[str] | None, default_choices: Sequence[str]
) -> widgets.Dropdown:
    choices = list(choices) if choices is not None else list(default_choices)
    dropdown = widgets.Dropdown(
        options=[(_ANY, "")] + [(choice, choice) for choice in choices],
        value="",
        description=description,
        layout=widgets.Layout(width="220px"),
    )
    # A column with no indexed values and no model head leaves the filter without choices.
    dropdown.disabled = not choices
    return dropdown


def _label_bar(label: str, probability: float) -> widgets.HBox:
    bar = widgets.FloatProgress(
        value=probability,
        min=0.0,
        max=1.0,
        bar_style="info",
        layout=widgets.Layout(width="160px"),
    )
    row = widgets.HBox(
        [
            widgets.Label(label, layout=widgets.Layout(width="150px")),
            bar,
            widgets.Label(f"{probability:.0%}", layout=widgets.Layout(width="48px")),
        ]
    )
    row.add_class("osoroi-label")
    return row


def _match_card(item: MatchItem) -> widgets.VBox:
    caption_lines = [html.escape(item.labels[key]) for key in CAPTION_LABELS if item.labels.get(key)]
    caption_lines.append(f"similarity {item.similarity:.2f}")
    caption = widgets.HTML(f'<div style="font-size:12px;line-height:1.3">{"<br>".join(caption_lines)}</div>')
    try:
        picture: widgets.Widget = widgets.Image(
            value=Path(item.image_path).read_bytes(),
            format="jpeg",
            layout=widgets.Layout(width=f"{THUMBNAIL_WIDTH}px"),
        )
        picture.add_class("osoroi-match-image")
    except OSError as error:
        logger.warning("Catalogue image of item %s could not be read: %s", item.id, error)
        picture = widgets.HTML(f"<i>image {item.id} missing</i>")
    card = widgets.VBox(
        [picture, caption], layout=widgets.Layout(margin="8px", width=f"{THUMBNAIL_WIDTH + 8}px")
    )
    card.add_class("osoroi-match")
    return card


def _jpeg_bytes(image: Image.Image, max_side: int) -> bytes:
    thumbnail = image.copy()
    thumbnail.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"
