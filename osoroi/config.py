"""Locations of raw data, derived data and reports, read from environment settings.

Settings (environment variables), each optional:

- ``OSOROI_DATA_DIR``: folder holding ``fashion-product-images-small/``,
  ``fashion-mnist/`` and ``clothing-photos/``. Defaults to ``<project>/data``.
- ``OSOROI_CATALOGUE_DIR``, ``OSOROI_FASHION_MNIST_DIR``, ``OSOROI_PHOTOS_DIR``:
  override one data set's folder.
- ``OSOROI_DERIVED_DIR``: derived data (clean tables, splits, caches, models).
  Defaults to ``<project>/derived``; git-ignored and rebuildable.
- ``OSOROI_REPORTS_DIR``: executed notebooks, figures and metrics.
  Defaults to ``<project>/reports``.

Every function reads the environment when called, so a notebook or a test can
change a setting with ``os.environ`` without re-importing the package.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CATALOGUE_FOLDER = "fashion-product-images-small"
FASHION_MNIST_FOLDER = "fashion-mnist"
PHOTOS_FOLDER = "clothing-photos"


def _path_setting(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Return the folder that contains the raw data sets (``OSOROI_DATA_DIR``)."""
    return _path_setting("OSOROI_DATA_DIR", PROJECT_ROOT / "data")


def catalogue_dir() -> Path:
    """Return the Fashion Product Images folder (``OSOROI_CATALOGUE_DIR``)."""
    return _path_setting("OSOROI_CATALOGUE_DIR", data_dir() / CATALOGUE_FOLDER)


def fashion_mnist_dir() -> Path:
    """Return the Fashion-MNIST folder (``OSOROI_FASHION_MNIST_DIR``)."""
    return _path_setting("OSOROI_FASHION_MNIST_DIR", data_dir() / FASHION_MNIST_FOLDER)


def photos_dir() -> Path:
    """Return the folder of real clothing photos (``OSOROI_PHOTOS_DIR``)."""
    return _path_setting("OSOROI_PHOTOS_DIR", data_dir() / PHOTOS_FOLDER)


def derived_dir(*parts: str) -> Path:
    """Return a folder under the derived-data root (``OSOROI_DERIVED_DIR``), created if missing."""
    path = _path_setting("OSOROI_DERIVED_DIR", PROJECT_ROOT / "derived").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir(*parts: str) -> Path:
    """Return a folder under the reports root (``OSOROI_REPORTS_DIR``), created if missing."""
    path = _path_setting("OSOROI_REPORTS_DIR", PROJECT_ROOT / "reports").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    """Return ``reports/figures/``, created if missing."""
    return reports_dir("figures")


def metrics_dir() -> Path:
    """Return ``reports/metrics/``, created if missing."""
    return reports_dir("metrics")
