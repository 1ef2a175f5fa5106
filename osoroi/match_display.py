"""Show a match result as a matplotlib figure (photo, label bars, matches) or as tables."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from osoroi.matcher import MatchItem, MatchResult

logger = logging.getLogger(__name__)

#: Labels written under each match image, in this order, when the item has them.
CAPTION_LABELS = ("articleType", "baseColour", "gender")


def plot_match_result(result: MatchResult, title: str | None = None, top: int = 3) -> Figure:
    """Draw the photo, the ``top`` most probable labels of each column as bars, and the matches.

    Args:
        result: the output of :meth:`osoroi.matcher.Matcher.match`.
        title: a title for the figure, such as the photo's file name.
        top: the number of labels drawn per label column.

    Returns:
        A figure with the photo and the label bars in the upper row and one image
        per match, captioned with its labels and similarity, in the lower row.
    """
    columns = max(len(result.matches), 1)
    figure = plt.figure(figsize=(max(2.2 * columns, 9.0), 8.0), layout="constrained")
    upper, lower = figure.subfigures(2, 1, height_ratios=[1.25, 1.0])
    photo_axes, bars_axes = upper.subplots(1, 2, width_ratios=[1.0, 1.6])

    photo_axes.imshow(result.image)
    photo_axes.set_title("Photo")
    photo_axes.axis("off")
    _plot_label_bars(bars_axes, result, top)

    match_axes = np.atleast_1d(lower.subplots(1, columns))
    for axes in match_axes:
        axes.axis("off")
    if not result.matches:
        match_axes[0].text(0.5, 0.5, "No catalogue item passed the filters", ha="center", va="center")
    for axes, item in zip(match_axes, result.matches, strict=False):
        _plot_match(axes, item)
    lower.suptitle("Most similar catalogue items")
    if title:
        figure.suptitle(title)
    return figure


def label_table(result: MatchResult, top: int = 3) -> pd.DataFrame:
    """Return the ``top`` predicted labels of each column with their probabilities, one row per label."""
    rows = [
        {"column": column, "rank": rank, "label": score.label, "probability": round(score.probability, 3)}
        for column, scores in result.predictions.items()
        for rank, score in enumerate(scores[:top], start=1)
    ]
    return pd.DataFrame(rows, columns=["column", "rank", "label", "probability"])


def match_table(result: MatchResult) -> pd.DataFrame:
    """Return one row per match: rank, catalogue id, similarity and the caption labels."""
    rows = [
        {
            "rank": rank,
            "id": item.id,
            "similarity": round(item.similarity, 3),
            **{key: item.labels.get(key, "") for key in CAPTION_LABELS},
        }
        for rank, item in enumerate(result.matches, start=1)
    ]
    return pd.DataFrame(rows, columns=["rank", "id", "similarity", *CAPTION_LABELS])


def _plot_label_bars(axes: Axes, result: MatchResult, top: int) -> None:
    names: list[str] = []
    probabilities: list[float] = []
    colours: list[str] = []
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for index, (column, scores) in enumerate(result.predictions.items()):
        for score in scores[:top]:
            names.append(f"{column}: {score.label}")
            probabilities.append(score.probability)
            colours.append(palette[index % len(palette)])
    positions = np.arange(len(names))
    axes.barh(positions, probabilities, color=colours)
    axes.set_yticks(positions, names, fontsize=8)
    axes.invert_yaxis()  # the first column's best label at the top
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("probability")
    axes.set_title("Most probable labels")
    for position, probability in zip(positions, probabilities, strict=True):
        axes.text(min(probability + 0.01, 0.9), position, f"{probability:.0%}", va="center", fontsize=7)


def _plot_match(axes: Axes, item: MatchItem) -> None:
    try:
        with Image.open(Path(item.image_path)) as image:
            axes.imshow(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        logger.warning("Catalogue image of item %s could not be read: %s", item.id, error)
        axes.text(0.5, 0.5, f"image {item.id}\nmissing", ha="center", va="center")
    caption = [item.labels[key] for key in CAPTION_LABELS if item.labels.get(key)]
    caption.append(f"similarity {item.similarity:.2f}")
    axes.set_title("\n".join(caption), fontsize=8)
