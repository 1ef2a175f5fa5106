"""The train/val/test split of the clean catalogue, and the cached clean table that every notebook reads.

Files under ``derived_dir("catalogue")``:

- ``clean.csv``: the clean catalogue (labels, year and product name per kept id).
- ``split.csv``: columns ``id, split`` with split in {"train", "val", "test"}.
- ``cleaning_report.json`` and ``catalogue_report.json``: the counts behind them.

Both tables are built from the raw data when missing. With ``OSOROI_SMOKE=1`` (set by
:func:`osoroi.notebook.setup_notebook` in smoke mode, which also moves the derived
folder) only the first :data:`SMOKE_CHECK_LIMIT` images are decoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from osoroi import config
from osoroi.atomic import atomic_path, write_json
from osoroi.catalogue import LABEL_COLUMNS, CatalogueReport, load_catalogue
from osoroi.cleaning import clean_catalogue

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 0
SMOKE_CHECK_LIMIT = 2000

CLEAN_FILE = "clean.csv"
SPLIT_FILE = "split.csv"
CLEAN_COLUMNS = ("id", *LABEL_COLUMNS, "year", "productDisplayName")


def split_catalogue(
    df: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
    stratify: str = "articleType",
    groups: pd.Series | None = None,
) -> pd.DataFrame:
    """Assign each id to train, val or test, stratified on ``stratify``, and return columns id, split.

    For each class (in sorted order) the ids are sorted, shuffled with a NumPy PCG64
    generator seeded with ``seed``, and cut into parts of ``round(n * fraction)`` items
    for val and test, the rest going to train. A class of at least three items gets at
    least one item in each part. The result depends only on the ids, the classes, the
    fractions and the seed, never on row order. The output is sorted by id.

    ``groups`` (aligned with ``df``, for example a hash of each image file) keeps the
    rows of one group in the same part: the group's smallest id is split in its own
    class and every other row of the group follows it. Without it, two listings of
    the same photo could land in train and test.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"Invalid fractions={tuple(fractions)}: use three non-negative numbers that sum to 1.")
    if df["id"].duplicated().any():
        duplicates = sorted(df.loc[df["id"].duplicated(), "id"].unique().tolist())[:5]
        raise ValueError(f"Duplicate ids in the table to split, e.g. {duplicates}; clean the table first.")
    if df[stratify].isna().any():
        raise ValueError(
            f"{int(df[stratify].isna().sum())} rows have a missing {stratify}. "
            "Stratification needs it in every row: clean the table first."
        )

    if groups is not None:
        return _split_groups(df, groups, fractions, seed, stratify)

    rng = np.random.default_rng(seed)
    parts: list[pd.DataFrame] = []
    for _, ids in sorted(df.groupby(stratify)["id"], key=lambda item: str(item[0])):
        shuffled = rng.permutation(np.sort(ids.to_numpy()))
        n_val, n_test = _part_sizes(len(shuffled), fractions)
        labels = np.array(["val"] * n_val + ["test"] * n_test + ["train"] * (len(shuffled) - n_val - n_test))
        parts.append(pd.DataFrame({"id": shuffled, "split": labels}))
    if not parts:
        return pd.DataFrame({"id": pd.Series(dtype="int64"), "split": pd.Series(dtype="str")})
    return pd.concat(parts).sort_values("id").reset_index(drop=True)


def _split_groups(
    df: pd.DataFrame, groups: pd.Series, fractions: Sequence[float], seed: int, stratify: str
) -> pd.DataFrame:
    if len(groups) != len(df):
        raise ValueError(f"groups has {len(groups)} values for {len(df)} rows; pass one group key per row.")
    table = pd.DataFrame({"id": df["id"].to_numpy(), "group": np.asarray(groups), stratify: df[stratify].to_numpy()})
    leaders = table.sort_values("id").drop_duplicates("group")
    leader_split = split_catalogue(leaders[["id", stratify]], fractions=fractions, seed=seed, stratify=stratify)
    split_of_group = dict(zip(leaders["group"], leader_split.set_index("id").loc[leaders["id"], "split"]))
    followers = len(table) - len(leaders)
    if followers:
        logger.info("Kept %d rows that share an image with an earlier id in that id's part", followers)
    result = pd.DataFrame({"id": table["id"], "split": table["group"].map(split_of_group)})
    return result.sort_values("id").reset_index(drop=True)


def image_hashes(paths: Sequence[str | Path]) -> pd.Series:
    """Return the SHA-256 of each file's bytes, so identical images can be kept in one part."""
    digests = []
    for path in tqdm(paths, desc="hashing images", unit="image", disable=len(paths) < 1000):
        digests.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return pd.Series(digests)


def _part_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    _, val_fraction, test_fraction = fractions
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    while n_val + n_test > n:
        # Only reachable for tiny classes; take from the larger part.
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def build_clean_catalogue(
    check_limit: int | None = None,
    seed: int = DEFAULT_SEED,
    catalogue: tuple[pd.DataFrame, CatalogueReport] | None = None,
    **cleaning: Any,
) -> dict[str, Any]:
    """Load, clean and split the catalogue, write the derived files, and return every intermediate.

    ``cleaning`` is passed to :func:`osoroi.cleaning.clean_catalogue`. ``catalogue`` is
    the output of :func:`osoroi.catalogue.load_catalogue` when the caller already has
    it; otherwise it is loaded with ``check_limit``, which defaults to
    :data:`SMOKE_CHECK_LIMIT` when ``OSOROI_SMOKE=1``. Returns a dictionary with ``raw``
    and ``catalogue_report`` (from load_catalogue), ``clean`` (with the split column)
    and ``cleaning_report``.
    """
    if check_limit is None and _smoke():
        check_limit = SMOKE_CHECK_LIMIT
    if catalogue is None:
        catalogue = load_catalogue(check_limit=check_limit)
    raw, catalogue_report = catalogue
    clean, cleaning_report = clean_catalogue(raw, **cleaning)
    split = split_catalogue(clean, seed=seed, groups=image_hashes(clean["image_path"].tolist()))

    folder = config.derived_dir("catalogue")
    _write_csv(clean[list(CLEAN_COLUMNS)], folder / CLEAN_FILE)
    _write_csv(split, folder / SPLIT_FILE)
    write_json(folder / "cleaning_report.json", cleaning_report.to_dict())
    write_json(folder / "catalogue_report.json", catalogue_report.to_dict())
    logger.info("Wrote %d clean rows and their split to %s", len(clean), folder)

    clean = clean.merge(split, on="id", how="left", validate="one_to_one")
    return {"raw": raw, "catalogue_report": catalogue_report, "clean": clean, "cleaning_report": cleaning_report}


def load_split(rebuild: bool = False) -> pd.DataFrame:
    """Return the split table (columns id, split) from ``split.csv``, building it when missing."""
    path = config.derived_dir("catalogue") / SPLIT_FILE
    if rebuild or not path.exists():
        build_clean_catalogue()
    split = pd.read_csv(path, dtype={"id": "int64", "split": "str"})
    unknown = set(split["split"]) - set(SPLITS)
    if unknown:
        raise ValueError(f"Invalid split names {sorted(unknown)} in {path}; delete the file to rebuild it.")
    return split


def load_clean_catalogue(rebuild: bool = False) -> pd.DataFrame:
    """Return the clean catalogue with ``image_path`` and ``split``, building the cached files when missing.

    Columns: ``id`` (int64), the label columns (text, missing as NaN), ``year`` (Int64),
    ``productDisplayName``, ``image_path`` (absolute, under the current
    :func:`osoroi.config.catalogue_dir`) and ``split``.
    """
    folder = config.derived_dir("catalogue")
    clean_path = folder / CLEAN_FILE
    if rebuild or not clean_path.exists() or not (folder / SPLIT_FILE).exists():
        build_clean_catalogue()
    text_columns = [*LABEL_COLUMNS, "productDisplayName"]
    clean = pd.read_csv(
        clean_path,
        dtype={"id": "int64", "year": "Int64", **{column: "str" for column in text_columns}},
        keep_default_na=False,
        na_values=[""],
    )
    images = config.catalogue_dir().resolve() / "images"
    clean["image_path"] = [str(images / f"{item_id}.jpg") for item_id in clean["id"]]
    clean = clean.merge(load_split(), on="id", how="left", validate="one_to_one")
    if clean["split"].isna().any():
        raise ValueError(
            f"{int(clean['split'].isna().sum())} clean rows are missing from {SPLIT_FILE}. "
            "Call load_clean_catalogue(rebuild=True) to rebuild both files."
        )
    return clean


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def _smoke() -> bool:
    return os.environ.get("OSOROI_SMOKE") == "1"
