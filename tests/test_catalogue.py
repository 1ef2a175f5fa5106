"""Tests for osoroi.catalogue: reading styles.csv and joining it with the images."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from tiny_catalogue import CORRUPT_ID, write_tiny_catalogue

from osoroi import catalogue
from osoroi.catalogue import LABEL_COLUMNS, StylesFormatError, load_catalogue, read_styles
from osoroi.download import CATALOGUE, DataNotFoundError


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    return write_tiny_catalogue(tmp_path / "catalogue")


def test_read_styles_keeps_every_row(tiny: Path) -> None:
    table = read_styles(tiny / "styles.csv")
    assert len(table) == 7
    assert list(table.columns) == list(catalogue.STYLES_COLUMNS)
    assert table["id"].tolist() == [1, 2, 3, 4, 5, 2, 6]


def test_read_styles_name_after_ninth_comma(tiny: Path) -> None:
    names = read_styles(tiny / "styles.csv").set_index(pd.RangeIndex(7))["productDisplayName"]
    assert names[1] == "Red, Blue and Gold Heels, Set"
    assert names[3] == 'Tempo 3.5" Pink Short'
    assert names[4] == "Belt, brown"


def test_read_styles_empty_cells_and_types(tiny: Path) -> None:
    table = read_styles(tiny / "styles.csv")
    row = table.iloc[2]
    assert pd.isna(row["baseColour"])
    assert pd.isna(row["season"])
    assert pd.isna(row["year"])
    assert row["usage"] == "NA"
    assert str(table["year"].dtype) == "Int64"
    assert table["id"].dtype == "int64"
    assert table["year"].iloc[0] == 2011


def test_read_styles_invalid_header(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(StylesFormatError, match="Invalid header"):
        read_styles(path)


def test_read_styles_short_line(tiny: Path) -> None:
    path = tiny / "styles.csv"
    path.write_text(path.read_text(encoding="utf-8") + "7,Men,Apparel\n", encoding="utf-8")
    with pytest.raises(StylesFormatError, match="Line 9 .* 3 fields, expected 10"):
        read_styles(path)


def test_read_styles_invalid_year(tiny: Path) -> None:
    path = tiny / "styles.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",2016,", ",20x6,"), encoding="utf-8")
    with pytest.raises(StylesFormatError, match="Invalid year '20x6' on line 6"):
        read_styles(path)


def test_read_styles_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="Fashion Product Images") as caught:
        read_styles(tmp_path / "styles.csv")
    assert caught.value.source is CATALOGUE


def test_load_catalogue_missing_images_folder(tiny: Path) -> None:
    (tiny / "images").rename(tiny / "elsewhere")
    with pytest.raises(DataNotFoundError, match="images") as caught:
        load_catalogue(tiny)
    assert caught.value.source is CATALOGUE


def test_load_catalogue_report(tiny: Path) -> None:
    table, report = load_catalogue(tiny)
    assert len(table) == 7
    assert report.rows_read == 7
    assert report.unique_ids == 6
    assert report.duplicate_id_rows == 1
    assert report.duplicate_ids == [2]
    assert report.images_found == 6
    assert report.rows_with_image == 6
    assert report.rows_without_image == 1
    assert report.images_without_row == [99]
    assert report.images_checked == 5
    assert list(report.unreadable_images) == [CORRUPT_ID]
    frame = report.to_frame()
    assert frame.set_index("check").loc["images that fail to decode", "count"] == 1


def test_load_catalogue_image_status(tiny: Path) -> None:
    table, _ = load_catalogue(tiny)
    status = dict(zip(table["id"], table["image_status"]))
    assert status == {1: "ok", 2: "ok", 3: "ok", 4: "ok", 5: "unreadable", 6: "missing"}
    row = table[table["id"] == CORRUPT_ID].iloc[0]
    assert "OSError" in row["image_error"]
    assert Path(table["image_path"].iloc[0]).is_absolute()
    assert pd.isna(table.loc[table["id"] == 6, "image_path"].iloc[0])
    assert set(LABEL_COLUMNS) <= set(table.columns)


def test_load_catalogue_check_limit(tiny: Path) -> None:
    table, report = load_catalogue(tiny, check_limit=2)
    assert report.images_checked == 2
    status = dict(zip(table["id"], table["image_status"]))
    assert status[1] == "ok"
    assert status[3] == "unchecked"
    assert status[CORRUPT_ID] == "unchecked"


def test_image_check_cache_reused_and_invalidated(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_catalogue(tiny)
    decoded: list[Path] = []
    original = catalogue.decode_error
    monkeypatch.setattr(catalogue, "decode_error", lambda path: decoded.append(Path(path)) or original(path))
    load_catalogue(tiny)
    assert decoded == []

    image = tiny / "images" / "1.jpg"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load_catalogue(tiny)
    assert decoded == [image]


@pytest.mark.real_data
def test_real_catalogue_counts(real_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path))
    root = real_data_dir / "fashion-product-images-small"
    table = read_styles(root / "styles.csv")
    assert len(table) == 44_446
    assert table["id"].is_unique
    assert table["articleType"].nunique() == 143
    assert table["year"].isna().sum() == 1
    assert (table["productDisplayName"].str.count(",") > 0).sum() == 22

    joined, report = load_catalogue(root, check_limit=0)
    assert report.rows_with_image == 44_072
    assert report.rows_without_image == 374
    assert report.images_without_row == []
    assert joined.loc[joined["image_path"].notna(), "articleType"].nunique() == 141
