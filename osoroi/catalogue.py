"""Read the Fashion Product Images catalogue: ``styles.csv`` joined with ``images/<id>.jpg``.

``styles.csv`` is read as the original distribution ships it. Some product names
contain an unquoted comma, so each line is split at its first nine commas and the
product name is everything after the ninth. Every image is decoded once with PIL to
find unreadable files, and the result is cached per file (size and modification
time) under ``derived_dir("catalogue")``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from osoroi import config
from osoroi.atomic import atomic_open
from osoroi.download import CATALOGUE, require_path

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")
STYLES_COLUMNS = ("id", *LABEL_COLUMNS[:6], "year", "usage", "productDisplayName")

# Values of the ``image_status`` column that load_catalogue adds.
IMAGE_OK = "ok"
IMAGE_MISSING = "missing"
IMAGE_UNREADABLE = "unreadable"
IMAGE_UNCHECKED = "unchecked"

IMAGE_CHECK_CACHE = "image_check.csv"


class StylesFormatError(ValueError):
    """``styles.csv`` does not have the layout of the original file."""


def read_styles(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``styles.csv`` into a DataFrame with one row per line of the file, in file order.

    The first nine commas separate the fields, so a comma inside ``productDisplayName``
    stays part of the name. Empty cells become missing values, ``id`` is int64 and
    ``year`` is Int64. Labels such as ``"NA"`` are kept as text here, because deciding
    what they mean is a cleaning rule. Duplicate ids are kept.

    Raises:
        DataNotFoundError: the file does not exist.
        StylesFormatError: the header differs from the original, or a line has fewer
            than ten fields, a non-integer id or a non-integer year.
    """
    path = require_path(Path(path), CATALOGUE)
    expected_fields = len(STYLES_COLUMNS)
    with open(path, encoding="utf-8-sig", newline="") as stream:
        header = stream.readline().rstrip("\r\n").split(",")
        if tuple(header) != STYLES_COLUMNS:
            raise StylesFormatError(
                f"Invalid header in {path}: {','.join(header)!r}. Expected {','.join(STYLES_COLUMNS)!r}."
            )
        records: list[list[str]] = []
        for line_number, line in enumerate(stream, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(",", expected_fields - 1)
            if len(fields) < expected_fields:
                raise StylesFormatError(
                    f"Line {line_number} of {path} has {len(fields)} fields, expected {expected_fields}: {line!r}"
                )
            fields[-1] = _unquote(fields[-1])
            records.append(fields)

    columns = {name: [record[i] for record in records] for i, name in enumerate(STYLES_COLUMNS)}
    table = pd.DataFrame(
        {name: [value if value != "" else None for value in values] for name, values in columns.items()}
    )
    table["id"] = _parse_integers(table["id"], "id", path, allow_missing=False).astype("int64")
    table["year"] = _parse_integers(table["year"], "year", path, allow_missing=True)
    logger.info("Read %d rows from %s", len(table), path)
    return table


def _unquote(value: str) -> str:
    # A name written with CSV quoting ("a, b") loses its quotes; a lone inch mark (3.5") stays.
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return next(csv.reader([value]))[0]
    return value


def _parse_integers(values: pd.Series, column: str, path: Path, allow_missing: bool) -> pd.Series:
    parsed = pd.to_numeric(values, errors="coerce").astype("Float64")
    invalid = (parsed.isna() & values.notna()) | (parsed.notna() & (parsed % 1 != 0))
    if not allow_missing:
        invalid |= values.isna()
    if invalid.any():
        first = invalid.to_numpy().nonzero()[0][0]
        raise StylesFormatError(
            f"Invalid {column} {values.iloc[first]!r} on line {first + 2} of {path}: expected an integer."
        )
    return parsed.astype("Int64")


def find_images(images_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """Map each id to its image ``<id>.jpg`` in ``images_dir``; other files are ignored."""
    images: dict[int, Path] = {}
    for entry in os.scandir(images_dir):
        stem, dot, extension = entry.name.partition(".")
        if dot and extension.lower() == "jpg" and stem.isdigit() and entry.is_file():
            images[int(stem)] = Path(entry.path)
    return images


def decode_error(path: str | os.PathLike[str]) -> str | None:
    """Decode the image at ``path`` fully and return the error message, or None when it decodes."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def check_images(paths: Iterable[Path], cache_path: Path | None = None) -> dict[Path, str | None]:
    """Decode every image and return its error message (None when it decodes), using a cache file.

    The cache is a CSV file (name, size, mtime_ns, error). An entry is reused only when
    the file's size and modification time are unchanged, so an edited image is decoded again.
    """
    paths = sorted(paths)
    cached = _read_check_cache(cache_path) if cache_path is not None else {}
    results: dict[Path, str | None] = {}
    to_decode: list[tuple[Path, int, int]] = []
    for path in paths:
        stat = path.stat()
        entry = cached.get(path.name)
        if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            results[path] = entry[2]
        else:
            to_decode.append((path, stat.st_size, stat.st_mtime_ns))
    logger.info("Image check: %d cached, %d to decode", len(results), len(to_decode))

    for path, size, mtime_ns in tqdm(to_decode, desc="Decoding images", unit="image", disable=not to_decode):
        error = decode_error(path)
        results[path] = error
        cached[path.name] = (size, mtime_ns, error)
    if cache_path is not None and to_decode:
        _write_check_cache(cache_path, cached)
    return results


def _read_check_cache(cache_path: Path) -> dict[str, tuple[int, int, str | None]]:
    if not cache_path.exists():
        return {}
    with open(cache_path, encoding="utf-8", newline="") as stream:
        return {
            row["name"]: (int(row["size"]), int(row["mtime_ns"]), row["error"] or None)
            for row in csv.DictReader(stream)
        }


def _write_check_cache(cache_path: Path, entries: dict[str, tuple[int, int, str | None]]) -> None:
    with atomic_open(cache_path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["name", "size", "mtime_ns", "error"])
        for name in sorted(entries):
            size, mtime_ns, error = entries[name]
            writer.writerow([name, size, mtime_ns, error or ""])


@dataclass
class CatalogueReport:
    """Counts from joining ``styles.csv`` with the image folder."""

    rows_read: int
    unique_ids: int
    duplicate_id_rows: int
    images_found: int
    rows_with_image: int
    rows_without_image: int
    images_checked: int
    images_without_row: list[int] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)
    unreadable_images: dict[int, str] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Return the counts as a two-column table (check, count)."""
        counts = {
            "rows in styles.csv": self.rows_read,
            "distinct ids": self.unique_ids,
            "rows repeating an earlier id": self.duplicate_id_rows,
            "images in images/": self.images_found,
            "rows with an image": self.rows_with_image,
            "rows without an image": self.rows_without_image,
            "images without a row": len(self.images_without_row),
            "images decoded": self.images_checked,
            "images that fail to decode": len(self.unreadable_images),
        }
        return pd.DataFrame({"check": list(counts), "count": list(counts.values())})

    def to_dict(self) -> dict[str, object]:
        """Return the counts as a JSON-ready dictionary."""
        return {
            **dict(zip(self.to_frame()["check"], self.to_frame()["count"].tolist())),
            "unreadable image ids": sorted(self.unreadable_images),
            "duplicate ids": self.duplicate_ids,
        }

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False)


def load_catalogue(
    catalogue_dir: str | os.PathLike[str] | None = None,
    check_limit: int | None = None,
    cache: bool = True,
) -> tuple[pd.DataFrame, CatalogueReport]:
    """Read ``styles.csv``, join each row with ``images/<id>.jpg`` and decode the images.

    Every row of ``styles.csv`` is kept, in file order, with three added columns.
    ``image_path`` is the absolute path, or None for a row without an image.
    ``image_status`` is "ok", "missing", "unreadable", or "unchecked" when
    ``check_limit`` skipped the image. ``image_error`` is the decoder's message for an
    unreadable image.

    Args:
        catalogue_dir: folder holding ``styles.csv`` and ``images/``; defaults to
            :func:`osoroi.config.catalogue_dir`.
        check_limit: decode only the images of the first ``check_limit`` ids in id
            order (for quick runs); None decodes all.
        cache: reuse and update the decode results cached under ``derived_dir("catalogue")``.

    Raises:
        DataNotFoundError: ``styles.csv`` or ``images/`` is missing.
    """
    root = Path(catalogue_dir) if catalogue_dir is not None else config.catalogue_dir()
    styles_path = require_path(root / "styles.csv", CATALOGUE)
    images_dir = require_path(root / "images", CATALOGUE)
    if check_limit is not None and check_limit < 0:
        raise ValueError(f"Invalid check_limit={check_limit}: use a count >= 0, or None to decode every image.")

    table = read_styles(styles_path)
    images = find_images(images_dir)
    images_root = images_dir.resolve()
    table["image_path"] = [str(images_root / images[i].name) if i in images else None for i in table["id"]]

    ids_with_image = sorted(set(table["id"]) & set(images))
    if check_limit is not None:
        ids_with_image = ids_with_image[:check_limit]
    cache_path = config.derived_dir("catalogue") / IMAGE_CHECK_CACHE if cache else None
    errors = check_images((images[i] for i in ids_with_image), cache_path)
    error_by_id = {i: errors[images[i]] for i in ids_with_image}

    table["image_error"] = [error_by_id.get(i) for i in table["id"]]
    table["image_status"] = [
        IMAGE_MISSING if i not in images
        else IMAGE_UNCHECKED if i not in error_by_id
        else IMAGE_UNREADABLE if error_by_id[i] is not None
        else IMAGE_OK
        for i in table["id"]
    ]

    duplicated = table["id"].duplicated(keep="first")
    report = CatalogueReport(
        rows_read=len(table),
        unique_ids=int(table["id"].nunique()),
        duplicate_id_rows=int(duplicated.sum()),
        images_found=len(images),
        rows_with_image=int(table["image_path"].notna().sum()),
        rows_without_image=int(table["image_path"].isna().sum()),
        images_checked=len(error_by_id),
        images_without_row=sorted(set(images) - set(table["id"])),
        duplicate_ids=sorted(set(table.loc[duplicated, "id"].tolist())),
        unreadable_images={i: e for i, e in sorted(error_by_id.items()) if e is not None},
    )
    if report.unreadable_images:
        logger.warning("%d images fail to decode", len(report.unreadable_images))
    return table, report
