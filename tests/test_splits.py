"""Tests for osoroi.splits: the stratified split and the cached clean catalogue."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tiny_catalogue import write_tiny_catalogue

from osoroi import splits
from osoroi.catalogue import LABEL_COLUMNS
from osoroi.cleaning import clean_catalogue
from osoroi.splits import build_clean_catalogue, load_clean_catalogue, load_split, split_catalogue


def make_items(counts: dict[str, int], first_id: int = 100) -> pd.DataFrame:
    labels = [label for label, count in counts.items() for _ in range(count)]
    return pd.DataFrame({"id": range(first_id, first_id + len(labels)), "articleType": labels})


def test_split_deterministic_and_order_free() -> None:
    items = make_items({"Tshirts": 50, "Shirts": 30, "Heels": 7})
    first = split_catalogue(items, seed=3)
    shuffled = split_catalogue(items.sample(frac=1, random_state=1), seed=3)
    pd.testing.assert_frame_equal(first, shuffled)
    assert not first.equals(split_catalogue(items, seed=4))


def test_split_partitions_ids() -> None:
    items = make_items({"Tshirts": 50, "Shirts": 30, "Heels": 7})
    split = split_catalogue(items)
    assert sorted(split["id"]) == sorted(items["id"])
    assert split["id"].is_unique
    assert set(split["split"]) == {"train", "val", "test"}


def test_split_is_stratified() -> None:
    items = make_items({"Tshirts": 100, "Shirts": 40, "Heels": 3})
    merged = items.merge(split_catalogue(items), on="id")
    counts = pd.crosstab(merged["articleType"], merged["split"])
    assert counts.loc["Tshirts"].to_dict() == {"test": 15, "train": 70, "val": 15}
    assert counts.loc["Shirts"].to_dict() == {"test": 6, "train": 28, "val": 6}
    assert counts.loc["Heels"].to_dict() == {"test": 1, "train": 1, "val": 1}


def test_split_rejects_bad_input() -> None:
    items = make_items({"Tshirts": 5})
    with pytest.raises(ValueError, match="Invalid fractions"):
        split_catalogue(items, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="Duplicate ids"):
        split_catalogue(pd.concat([items, items]))


def test_split_golden_values() -> None:
    # Pins the generator: the same seed must give the same split on any machine.
    split = split_catalogue(make_items({"Tshirts": 10}, first_id=1), seed=0)
    assert split.set_index("id")["split"].to_dict() == GOLDEN_SPLIT


GOLDEN_SPLIT = {
    1: "train", 2: "train", 3: "test", 4: "train", 5: "val",
    6: "train", 7: "val", 8: "test", 9: "train", 10: "train",
}


@pytest.fixture
def tiny_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    catalogue = write_tiny_catalogue(tmp_path / "catalogue", corrupt=False)
    monkeypatch.setenv("OSOROI_CATALOGUE_DIR", str(catalogue))
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    monkeypatch.delenv("OSOROI_SMOKE", raising=False)
    return tmp_path / "derived" / "catalogue"


def test_load_clean_catalogue_builds_cache(tiny_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splits, "clean_catalogue", functools.partial(clean_catalogue, min_items_per_class=1))
    clean = load_clean_catalogue()
    assert (tiny_settings / "clean.csv").exists()
    assert (tiny_settings / "split.csv").exists()
    expected = ["id", *LABEL_COLUMNS, "year", "productDisplayName", "image_path", "split"]
    assert sorted(clean.columns) == sorted(expected)
    assert clean["id"].dtype == "int64"
    assert str(clean["year"].dtype) == "Int64"
    assert all(Path(path).is_absolute() and Path(path).exists() for path in clean["image_path"])
    assert set(clean["split"]) <= {"train", "val", "test"}
    assert pd.isna(clean.loc[clean["id"] == 3, "baseColour"].iloc[0])
    assert clean.loc[clean["id"] == 2, "productDisplayName"].iloc[0] == "Red, Blue and Gold Heels, Set"


def test_load_split_matches_clean_table(tiny_settings: Path) -> None:
    built = build_clean_catalogue(min_items_per_class=1)
    split = load_split()
    assert list(split.columns) == ["id", "split"]
    assert split["id"].tolist() == sorted(built["clean"]["id"])
    assert load_clean_catalogue()["id"].tolist() == built["clean"]["id"].tolist()


def test_split_keeps_groups_together() -> None:
    items = make_items({"Shirts": 40, "Tshirts": 40})
    # Every fourth item shares its image with the next one, across classes at the border.
    groups = pd.Series([f"image-{index // 2 if index % 4 < 2 else index}" for index in range(len(items))])

    split = split_catalogue(items, groups=groups, seed=3).set_index("id")["split"]

    for _, members in items.groupby(groups.to_numpy())["id"]:
        assert split.loc[members].nunique() == 1
    assert set(split) == {"train", "val", "test"}


def test_split_groups_length_mismatch() -> None:
    with pytest.raises(ValueError, match="groups has 2 values for 3 rows"):
        split_catalogue(make_items({"Shirts": 3}), groups=pd.Series(["a", "b"]))


def test_image_hashes_identical_files(tmp_path: Path) -> None:
    for name, content in (("1.jpg", b"same"), ("2.jpg", b"same"), ("3.jpg", b"other")):
        (tmp_path / name).write_bytes(content)

    hashes = splits.image_hashes([tmp_path / name for name in ("1.jpg", "2.jpg", "3.jpg")])

    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


@pytest.fixture(scope="module")
def real_build(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OSOROI_DERIVED_DIR", str(tmp_path_factory.mktemp("derived")))
        patch.delenv("OSOROI_CATALOGUE_DIR", raising=False)
        patch.delenv("OSOROI_SMOKE", raising=False)
        built = build_clean_catalogue()
        yield {**built, "loaded": load_clean_catalogue()}


@pytest.mark.real_data
def test_real_clean_table_sizes(real_build: dict) -> None:
    assert real_build["catalogue_report"].rows_read == 44_446
    assert real_build["catalogue_report"].rows_with_image == 44_072
    assert real_build["catalogue_report"].unreadable_images == {}
    clean = real_build["loaded"]
    assert len(clean) == 43_570
    assert clean["articleType"].nunique() == 85
    assert clean["masterCategory"].nunique() == 4
    assert clean["baseColour"].nunique() == 42
    assert clean["id"].is_unique


@pytest.mark.real_data
def test_real_split_sizes(real_build: dict) -> None:
    clean = real_build["loaded"]
    assert clean["split"].value_counts().to_dict() == {"train": 30_527, "val": 6_514, "test": 6_529}
    per_class = pd.crosstab(clean["articleType"], clean["split"])
    assert (per_class > 0).all().all()


@pytest.mark.real_data
def test_real_split_no_shared_images(real_build: dict) -> None:
    clean = real_build["loaded"]
    hashes = splits.image_hashes(clean["image_path"].tolist())

    parts_per_image = clean.groupby(hashes.to_numpy())["split"].nunique()

    assert (parts_per_image == 1).all()
