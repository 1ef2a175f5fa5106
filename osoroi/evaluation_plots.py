"""Figures of notebook 04: confusion matrix, reliability diagram and image galleries."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from osoroi.images import InvalidImageError, load_image
from osoroi.metrics import ReliabilityBins


def plot_confusion(matrix: pd.DataFrame, title: str = "articleType confusion (most frequent classes)") -> Figure:
    """Draw a row-normalised confusion matrix (share of each true class) as a heatmap."""
    shares = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
    side = max(6.0, 0.45 * len(matrix.columns))
    figure, axes = plt.subplots(figsize=(side + 1.5, side))
    sns.heatmap(shares, annot=len(matrix) <= 20, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=True, ax=axes,
                annot_kws={"fontsize": 7})
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def plot_reliability(bins_by_head: dict[str, ReliabilityBins]) -> Figure:
    """Draw one reliability diagram per head: accuracy against mean confidence per bin, with the ECE."""
    count = len(bins_by_head)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (head, bins) in zip(axes.flat, bins_by_head.items()):
        centres = (bins.edges[:-1] + bins.edges[1:]) / 2
        width = bins.edges[1] - bins.edges[0]
        filled = bins.counts > 0
        axis.bar(centres[filled], bins.accuracy[filled], width=width * 0.9, color="tab:blue", alpha=0.8, label="accuracy")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{head} (ECE {bins.ece:.3f})", fontsize=10)
        axis.set_xlabel("confidence")
        axis.set_ylabel("accuracy")
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    figure.tight_layout()
    return figure


def plot_gallery(paths: Sequence[str], captions: Sequence[str], columns: int = 6, size: float = 1.9) -> Figure:
    """Draw the images at ``paths`` in a grid with one caption each (a grey tile where one fails to load)."""
    count = max(len(paths), 1)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * 1.45 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, path, caption in zip(axes.flat, paths, captions):
        try:
            axis.imshow(load_image(path))
        except InvalidImageError:
            axis.imshow(np.full((8, 6, 3), 200, dtype=np.uint8))
        axis.set_title(caption, fontsize=7)
    figure.tight_layout()
    return figure
