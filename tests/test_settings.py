"""Tests for settings, atomic writes and the missing-data error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osoroi import config
from osoroi.atomic import atomic_open, write_json
from osoroi.download import CATALOGUE, DataNotFoundError, require_path


def test_data_dir_setting_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OSOROI_CATALOGUE_DIR", raising=False)
    assert config.catalogue_dir() == tmp_path / "fashion-product-images-small"

    monkeypatch.setenv("OSOROI_CATALOGUE_DIR", str(tmp_path / "elsewhere"))
    assert config.catalogue_dir() == tmp_path / "elsewhere"
    assert config.fashion_mnist_dir() == tmp_path / "fashion-mnist"


def test_derived_dir_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))

    path = config.derived_dir("catalogue")

    assert path == tmp_path / "derived" / "catalogue"
    assert path.is_dir()


def test_missing_data_error_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as raised:
        require_path(tmp_path / "styles.csv", CATALOGUE)

    message = str(raised.value)
    assert str(tmp_path / "styles.csv") in message
    assert "OSOROI_DATA_DIR" in message
    assert "kaggle datasets download -d paramaggarwal/fashion-product-images-small" in message


def test_atomic_open_keeps_old_content_on_error(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")

    with pytest.raises(RuntimeError), atomic_open(target) as stream:
        stream.write("half")
        raise RuntimeError("interrupted")

    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_converts_numpy(tmp_path: Path) -> None:
    import numpy as np

    path = write_json(tmp_path / "m.json", {"accuracy": np.float32(0.5), "counts": np.arange(3)})

    assert json.loads(path.read_text()) == {"accuracy": 0.5, "counts": [0, 1, 2]}
