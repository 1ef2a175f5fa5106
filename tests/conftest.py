"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
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


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send reports written by a test to a temporary folder, never to the committed ``reports/``."""
    monkeypatch.setenv("OSOROI_REPORTS_DIR", str(tmp_path_factory.mktemp("reports")))
