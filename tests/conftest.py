"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Return ``OSOROI_DATA_DIR`` as a Path, or skip the test when it is not set."""
    value = os.environ.get("OSOROI_DATA_DIR", "").strip()
    if not value:
        pytest.skip("OSOROI_DATA_DIR is not set; real-data tests need the raw data sets")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"OSOROI_DATA_DIR={value!r} is not a folder")
    return path


@pytest.fixture(scope="session", autouse=True)
def isolated_derived_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Send derived data of the whole session to one temporary folder, never to the project's ``derived/``.

    One folder for the session lets the tests share the clean catalogue and demo caches they build.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OSOROI_DERIVED_DIR", str(tmp_path_factory.mktemp("derived")))
        patch.delenv("OSOROI_SMOKE", raising=False)
        yield


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send reports written by a test to a temporary folder, never to the committed ``reports/``."""
    monkeypatch.setenv("OSOROI_REPORTS_DIR", str(tmp_path_factory.mktemp("reports")))
