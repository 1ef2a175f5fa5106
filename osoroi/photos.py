"""Real clothing photos (``clothing-photos/``) and how their ten classes map onto catalogue article types.

The photos come in ten classes that are coarser than the catalogue's article
types, so each class maps to the set of article types a correct prediction
may name (:data:`PHOTO_CLASS_ARTICLE_TYPES`). A prediction counts as a hit when
the predicted article type is in the set of the photo's class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from osoroi import config
from osoroi.download import CLOTHING_PHOTOS, require_path

PHOTO_FOLDERS = ("train", "validation")

#: Photo class -> catalogue article types that count as a correct prediction.
PHOTO_CLASS_ARTICLE_TYPES: dict[str, frozenset[str]] = {
    "t-shirt": frozenset({"Tshirts", "Tops"}),
    "shirt": frozenset({"Shirts"}),
    "longsleeve": frozenset({"Tshirts", "Tops", "Sweaters", "Sweatshirts"}),
    "outwear": frozenset({"Jackets", "Sweatshirts", "Sweaters", "Tracksuits"}),
    "pants": frozenset(
        {"Trousers", "Jeans", "Track Pants", "Lounge Pants", "Capris", "Leggings", "Jeggings", "Patiala", "Salwar",
         "Churidar"}
    ),
    "shoes": frozenset(
        {"Casual Shoes", "Sports Shoes", "Formal Shoes", "Heels", "Flats", "Sandals", "Sports Sandals", "Flip Flops"}
    ),
    "hat": frozenset({"Caps", "Hat"}),
    "dress": frozenset({"Dresses", "Nightdress", "Tunics"}),
    "skirt": frozenset({"Skirts"}),
    "shorts": frozenset({"Shorts", "Lounge Shorts"}),
}


def list_photos(folders: Sequence[str] = ("validation",), classes: Iterable[str] | None = None) -> pd.DataFrame:
    """Return one row per photo with columns ``path``, ``folder`` and ``photo_class``, sorted by path.

    Args:
        folders: which of ``train`` and ``validation`` to read.
        classes: photo classes to keep (default: all ten of :data:`PHOTO_CLASS_ARTICLE_TYPES`).
    """
    root = require_path(config.photos_dir(), CLOTHING_PHOTOS)
    wanted = set(PHOTO_CLASS_ARTICLE_TYPES if classes is None else classes)
    unknown = wanted - set(PHOTO_CLASS_ARTICLE_TYPES)
    if unknown:
        raise ValueError(f"Invalid photo classes {sorted(unknown)}. Allowed: {', '.join(PHOTO_CLASS_ARTICLE_TYPES)}.")
    rows = []
    for folder in folders:
        if folder not in PHOTO_FOLDERS:
            raise ValueError(f"Invalid photo folder {folder!r}. Only {', '.join(PHOTO_FOLDERS)} are supported.")
        for class_dir in sorted(require_path(root / folder, CLOTHING_PHOTOS).iterdir()):
            if class_dir.is_dir() and class_dir.name in wanted:
                rows.extend(
                    {"path": str(path), "folder": folder, "photo_class": class_dir.name}
                    for path in sorted(class_dir.glob("*.jpg"))
                )
    return pd.DataFrame(rows, columns=["path", "folder", "photo_class"])


def sample_photos(photos: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """Return up to ``per_class`` photos of each class, drawn with ``seed``, sorted by path."""
    parts = [
        group.sample(n=min(per_class, len(group)), random_state=seed)
        for _, group in photos.groupby("photo_class", sort=True)
    ]
    if not parts:
        return photos.iloc[:0].copy()
    return pd.concat(parts).sort_values("path").reset_index(drop=True)


def photo_hits(
    photo_classes: Sequence[str],
    ranked_article_types: Sequence[Sequence[str]],
    mapping: Mapping[str, frozenset[str]] = PHOTO_CLASS_ARTICLE_TYPES,
) -> np.ndarray:
    """Return a boolean array of shape (n,): whether any predicted type of a photo is in its class's set.

    ``ranked_article_types`` contains each photo's predicted article types, best first. Pass
    the first type of each photo for top-1 hits, or the first k for top-k hits.
    """
    if len(photo_classes) != len(ranked_article_types):
        raise ValueError(f"{len(photo_classes)} photo classes but {len(ranked_article_types)} predictions.")
    return np.array(
        [bool(set(ranked) & mapping[photo_class]) for photo_class, ranked in zip(photo_classes, ranked_article_types)],
        dtype=bool,
    )


def mapping_table(mapping: Mapping[str, frozenset[str]] = PHOTO_CLASS_ARTICLE_TYPES) -> pd.DataFrame:
    """Return the photo class -> article types mapping as a two-column table for display."""
    return pd.DataFrame(
        {"photo_class": list(mapping), "article_types": [", ".join(sorted(types)) for types in mapping.values()]}
    )
