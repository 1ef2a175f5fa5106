"""Figures and summary tables of the catalogue for notebook 01."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from osoroi.catalogue import LABEL_COLUMNS


def top_n_with_other(values: pd.Series, n: int, other: str = "other") -> pd.Series:
    """Return the counts of the ``n`` most frequent values, with the rest summed as ``other``."""
    counts = values.value_counts()
    top = counts.iloc[:n]
    rest = int(counts.iloc[n:].sum())
    return pd.concat([top, pd.Series({f"{other} ({len(counts) - n} types)": rest})]) if rest else top


def plot_label_shares(df: pd.DataFrame, top_n: int = 20) -> Figure:
    """Plot the shares of masterCategory, articleType (top ``top_n`` and other) and gender."""
    figure, axes = plt.subplots(1, 3, figsize=(16, 6), gridspec_kw={"width_ratios": [1, 1.6, 1]})
    panels = (
        ("masterCategory", df["masterCategory"].value_counts()),
        (f"articleType (top {top_n})", top_n_with_other(df["articleType"], top_n)),
        ("gender", df["gender"].value_counts()),
    )
    for axis, (title, counts) in zip(axes, panels):
        shares = 100 * counts / counts.sum()
        axis.barh(shares.index[::-1], shares.to_numpy()[::-1], color="tab:blue")
        for y, share in enumerate(shares.to_numpy()[::-1]):
            axis.text(share, y, f" {share:.1f}%", va="center", fontsize=8)
        axis.set_title(title)
        axis.set_xlabel("share of items (%)")
        axis.set_xlim(0, shares.max() * 1.25)
    figure.suptitle(f"Catalogue composition ({len(df):,} items)")
    figure.tight_layout()
    return figure


def plot_label_distributions(df: pd.DataFrame, columns: Sequence[str] = LABEL_COLUMNS, top_n: int = 30) -> Figure:
    """Plot one bar chart of class counts (log scale, at most ``top_n`` classes) per label column."""
    ncols = 2
    nrows = math.ceil(len(columns) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(16, 4.2 * nrows))
    for axis, column in zip(axes.flat, columns):
        counts = df[column].value_counts(dropna=False)
        counts.index = ["(missing)" if pd.isna(label) else str(label) for label in counts.index]
        shown = counts.iloc[:top_n]
        axis.bar(range(len(shown)), shown.to_numpy(), color="tab:blue")
        axis.set_xticks(range(len(shown)), shown.index, rotation=75, ha="right", fontsize=7)
        axis.set_yscale("log")
        hidden = f", {len(counts) - top_n} smaller not shown" if len(counts) > top_n else ""
        axis.set_title(f"{column}: {len(counts)} values{hidden}")
        axis.set_ylabel("items")
    for axis in list(axes.flat)[len(columns):]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure


def class_count_thresholds(values: pd.Series, thresholds: Sequence[int]) -> pd.DataFrame:
    """Tabulate, per minimum class size, the classes and items kept and the items removed."""
    counts = values.value_counts()
    rows = []
    for minimum in thresholds:
        kept = counts[counts >= minimum]
        rows.append({
            "min_items_per_class": minimum,
            "classes_kept": len(kept),
            "items_kept": int(kept.sum()),
            "items_removed": int(counts.sum() - kept.sum()),
            "items_kept_pct": round(100 * kept.sum() / counts.sum(), 2),
        })
    return pd.DataFrame(rows)


def plot_image_grid(
    image_paths: Sequence[str],
    titles: Sequence[str],
    ncols: int = 8,
    title: str = "",
    tile_size: tuple[int, int] = (60, 80),
    inches_per_tile: float = 1.6,
) -> Figure:
    """Show the images in a grid, each with a short title above it.

    The images are pasted into one mosaic (each scaled to fit ``tile_size`` in pixels,
    keeping its aspect ratio) and drawn with a single ``imshow``, which keeps a grid of
    a hundred images fast.
    """
    if len(image_paths) != len(titles):
        raise ValueError(f"Got {len(image_paths)} images but {len(titles)} titles; pass one title per image.")
    tile_width, tile_height = tile_size
    nrows = max(1, math.ceil(len(image_paths) / ncols))
    # Each cell is the tile plus a band above it for the title, whose height grows with its lines.
    lines = max((str(label).count("\n") + 1 for label in titles), default=1)
    band = 11 * lines + 4
    cell_height = tile_height + band
    mosaic = Image.new("RGB", (ncols * tile_width, nrows * cell_height), "white")
    for index, path in enumerate(image_paths):
        with Image.open(path) as image:
            thumbnail = image.convert("RGB")
        thumbnail.thumbnail(tile_size)
        left = (index % ncols) * tile_width + (tile_width - thumbnail.width) // 2
        top = (index // ncols) * cell_height + band + (tile_height - thumbnail.height) // 2
        mosaic.paste(thumbnail, (left, top))

    # Upscale with PIL (Lanczos) to about the saved size (60 px tiles at 1.6 in and 120 dpi),
    # so imshow can draw with "nearest", several times faster than resampling in matplotlib.
    scale = 3
    mosaic = mosaic.resize((mosaic.width * scale, mosaic.height * scale), Image.Resampling.LANCZOS)
    width_inches = inches_per_tile * ncols
    figure, axis = plt.subplots(figsize=(width_inches, width_inches * mosaic.height / mosaic.width))
    axis.imshow(np.asarray(mosaic), interpolation="nearest")
    axis.axis("off")
    for index, label in enumerate(titles):
        x = (index % ncols + 0.5) * tile_width * scale
        y = ((index // ncols) * cell_height + band - 2) * scale
        axis.text(x, y, label, ha="center", va="bottom", fontsize=6.5)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def plot_examples(df: pd.DataFrame, title_columns: Sequence[str], ncols: int = 8, title: str = "") -> Figure:
    """Show every row of ``df`` (which needs ``image_path``) with the values of ``title_columns`` as title."""
    titles = ["\n".join(_short(row[column]) for column in title_columns) for _, row in df.iterrows()]
    return plot_image_grid(df["image_path"].tolist(), titles, ncols=ncols, title=title)


def plot_contact_sheet(df: pd.DataFrame, column: str = "articleType", ncols: int = 10) -> Figure:
    """Show one example image (the lowest id) per class of ``column``, classes sorted by name."""
    examples = df.sort_values("id").drop_duplicates(column).sort_values(column)
    counts = df[column].value_counts()
    titles = [f"{_short(label, 18)}\n({counts[label]:,})" for label in examples[column]]
    return plot_image_grid(
        examples["image_path"].tolist(), titles, ncols=ncols,
        title=f"One example per {column} ({len(examples)} classes, items per class in brackets)",
    )


def split_summary(df: pd.DataFrame, stratify: str = "articleType") -> pd.DataFrame:
    """Tabulate per split: items, share, number of classes present and the smallest class."""
    rows = []
    for split, part in df.groupby("split", sort=False):
        counts = part[stratify].value_counts()
        rows.append({
            "split": split,
            "items": len(part),
            "share_pct": round(100 * len(part) / len(df), 2),
            f"{stratify}_classes": len(counts),
            "smallest_class_items": int(counts.min()),
        })
    order = {"train": 0, "val": 1, "test": 2}
    return pd.DataFrame(rows).sort_values("split", key=lambda s: s.map(order)).reset_index(drop=True)


def _short(value: object, width: int = 22) -> str:
    text = "(missing)" if pd.isna(value) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def label_summary(df: pd.DataFrame, columns: Sequence[str] = LABEL_COLUMNS, min_items: int = 20) -> pd.DataFrame:
    """Tabulate per label column: classes, missing values, largest and smallest class, rare classes."""
    rows = []
    for column in columns:
        counts = df[column].value_counts()
        rows.append({
            "label": column,
            "classes": len(counts),
            "missing": int(df[column].isna().sum()),
            "largest": f"{counts.index[0]} ({counts.iloc[0]:,})",
            "smallest": f"{counts.index[-1]} ({counts.iloc[-1]:,})",
            f"classes_under_{min_items}": int((counts < min_items).sum()),
        })
    return pd.DataFrame(rows)


def select_odd_examples(df: pd.DataFrame, per_case: int = 4) -> pd.DataFrame:
    """Pick up to ``per_case`` rows for each kind of odd label, with a ``case`` column.

    ``df`` is the raw catalogue of :func:`osoroi.catalogue.load_catalogue`. Only rows
    with an image that is not known to be unreadable are picked, the rarest
    (articleType, subCategory) pairs first and then the lowest ids.
    """
    shown = df[df["image_status"].isin(["ok", "unchecked"])].sort_values("id")
    parents = shown.groupby("articleType")["subCategory"].agg(lambda s: s.value_counts().index[0])
    # Unusual pairs first: the rarer the (articleType, subCategory) pair, the earlier it is shown.
    pair_size = shown.groupby(["articleType", "subCategory"])["id"].transform("size")
    shown = shown.assign(_pair_size=pair_size).sort_values(["_pair_size", "id"]).drop(columns="_pair_size")
    cases = {
        "Free Gifts": shown["articleType"] == "Free Gifts",
        "unusual subCategory": shown["subCategory"] != shown["articleType"].map(parents),
        "subCategory Perfumes": shown["subCategory"] == "Perfumes",
        "subCategory Skin": shown["subCategory"] == "Skin",
        "rare colour": shown["baseColour"].isin(["Taupe", "Lime Green", "Fluorescent Green", "Mushroom Brown"]),
        "rare articleType": shown["articleType"].map(shown["articleType"].value_counts()) < 5,
    }
    picked = [shown[mask].head(per_case).assign(case=case) for case, mask in cases.items()]
    return pd.concat(picked, ignore_index=True)
