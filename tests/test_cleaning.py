"""Tests for osoroi.cleaning.clean_catalogue and its report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tiny_catalogue import write_tiny_catalogue

from osoroi.catalogue import load_catalogue
from osoroi.cleaning import CleaningReport, clean_catalogue


def make_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    defaults = {
        "gender": "Men", "masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Tshirts",
        "baseColour": "Black", "season": "Summer", "year": 2011, "usage": "Casual",
        "productDisplayName": "item", "image_status": "ok",
    }
    table = pd.DataFrame([{**defaults, "id": i, **row} for i, row in enumerate(rows, start=1)])
    table["year"] = table["year"].astype("Int64")
    return table


def step(report: CleaningReport, rule: str, column: str) -> tuple[int, int]:
    frame = report.to_frame().set_index(["rule", "column"])
    return int(frame.loc[(rule, column), "rows_affected"]), int(frame.loc[(rule, column), "rows_removed"])


def test_clean_tiny_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    raw, _ = load_catalogue(write_tiny_catalogue(tmp_path / "catalogue"))
    clean, report = clean_catalogue(raw, min_items_per_class=1)
    assert clean["id"].tolist() == [1, 2, 3, 4]
    assert step(report, "duplicate id", "id") == (1, 1)
    assert step(report, "no image", "image_status") == (1, 1)
    assert step(report, "image fails to decode", "image_status") == (1, 1)
    assert pd.isna(clean.loc[clean["id"] == 3, "usage"].iloc[0])
    assert step(report, "missing marker", "usage") == (1, 0)
    assert report.rows_in == 7
    assert report.rows_out == 4
    assert report.rows_removed == 3


def test_rare_article_type_removes_rows() -> None:
    table = make_table([{"articleType": "Tshirts"}] * 3 + [{"articleType": "Hat"}])
    clean, report = clean_catalogue(table, min_items_per_class=2)
    assert set(clean["articleType"]) == {"Tshirts"}
    assert step(report, "rare class", "articleType") == (1, 1)


def test_rare_colour_set_to_missing() -> None:
    table = make_table([{"baseColour": "Black"}] * 3 + [{"baseColour": "Taupe"}])
    clean, report = clean_catalogue(table, min_items_per_class=2)
    assert len(clean) == 4
    assert clean["baseColour"].isna().sum() == 1
    assert step(report, "rare class", "baseColour") == (1, 0)


def test_min_items_per_label_mapping() -> None:
    table = make_table([{"baseColour": "Black"}] * 3 + [{"baseColour": "Taupe"}])
    clean, _ = clean_catalogue(table, min_items_per_class={"articleType": 2})
    assert clean["baseColour"].tolist() == ["Black", "Black", "Black", "Taupe"]


def test_missing_marker_in_required_label_removes_row() -> None:
    table = make_table([{}, {}, {"articleType": "NA"}])
    clean, report = clean_catalogue(table, min_items_per_class=1)
    assert len(clean) == 2
    assert step(report, "missing marker", "articleType") == (1, 1)


def test_spelling_and_whitespace() -> None:
    table = make_table([
        {"subCategory": "Perfumes", "masterCategory": "Personal Care", "articleType": "Perfume"},
        {"subCategory": "Fragrance", "masterCategory": "Personal Care", "articleType": "Perfume"},
        {"gender": " Men  "},
    ])
    clean, report = clean_catalogue(table, min_items_per_class=1, fix_hierarchy=False)
    assert clean["subCategory"].tolist()[:2] == ["Fragrance", "Fragrance"]
    assert clean["gender"].iloc[2] == "Men"
    assert step(report, "spelling", "subCategory") == (1, 0)
    assert step(report, "whitespace", "gender") == (1, 0)


def test_hierarchy_takes_most_frequent_parents() -> None:
    table = make_table(
        [{"articleType": "Belts", "masterCategory": "Accessories", "subCategory": "Belts"}] * 3
        + [{"articleType": "Belts", "masterCategory": "Apparel", "subCategory": "Topwear"}]
    )
    clean, report = clean_catalogue(table, min_items_per_class=1)
    assert set(clean["masterCategory"]) == {"Accessories"}
    assert set(clean["subCategory"]) == {"Belts"}
    assert step(report, "hierarchy", "masterCategory") == (1, 0)
    assert step(report, "hierarchy", "subCategory") == (1, 0)


def test_non_visual_article_type_removed() -> None:
    table = make_table([{}, {"articleType": "Free Gifts", "masterCategory": "Free Items"}])
    clean, report = clean_catalogue(table, min_items_per_class=1)
    assert clean["id"].tolist() == [1]
    assert step(report, "no visual information", "articleType") == (1, 1)


def test_image_column_required() -> None:
    table = make_table([{}]).drop(columns="image_status")
    with pytest.raises(ValueError, match=r"lacks the columns \['image_status'\].*require_image=False"):
        clean_catalogue(table)
    clean, _ = clean_catalogue(table, min_items_per_class=1, require_image=False)
    assert len(clean) == 1


def test_invalid_min_items_per_class() -> None:
    with pytest.raises(ValueError, match="Invalid min_items_per_class for 'gender': 0"):
        clean_catalogue(make_table([{}]), min_items_per_class={"gender": 0})


def test_report_renders_as_table() -> None:
    _, report = clean_catalogue(make_table([{}, {}]), min_items_per_class=1)
    frame = report.to_frame()
    assert list(frame.columns) == ["rule", "column", "rows_affected", "rows_removed", "detail"]
    assert report.to_frame(include_empty=False).empty
    assert "<table" in report._repr_html_()
    assert report.to_dict()["rows_out"] == 2


def test_input_not_modified() -> None:
    table = make_table([{"gender": " Men"}, {"usage": "NA"}])
    before = table.copy()
    clean_catalogue(table, min_items_per_class=1)
    pd.testing.assert_frame_equal(table, before)
