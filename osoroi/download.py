"""Raw data sources: their origin, their download functions and the error raised when one is missing.

The download functions need internet access. Every loader in the package also
accepts files already on disk, found through the settings in :mod:`osoroi.config`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from osoroi.atomic import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """A raw data set: its folder name, its setting and how to obtain it."""

    name: str
    setting: str
    instructions: str


CATALOGUE = DataSource(
    name="Fashion Product Images (Small)",
    setting="OSOROI_CATALOGUE_DIR",
    instructions=(
        "kaggle datasets download -d paramaggarwal/fashion-product-images-small "
        "-p $OSOROI_DATA_DIR/fashion-product-images-small --unzip "
        "(or osoroi.download.download_catalogue())"
    ),
)
FASHION_MNIST = DataSource(
    name="Fashion-MNIST",
    setting="OSOROI_FASHION_MNIST_DIR",
    instructions=(
        "download the four .gz files from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into "
        "$OSOROI_DATA_DIR/fashion-mnist (or osoroi.download.download_fashion_mnist())"
    ),
)
CLOTHING_PHOTOS = DataSource(
    name="clothing dataset small",
    setting="OSOROI_PHOTOS_DIR",
    instructions=(
        "git clone https://github.com/alexeygrigorev/clothing-dataset-small "
        "$OSOROI_DATA_DIR/clothing-photos"
    ),
)

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class DataNotFoundError(FileNotFoundError):
    """Error for a missing raw data file. The message names the expected path and how to get the file."""

    def __init__(self, path: Path, source: DataSource) -> None:
        self.path = Path(path)
        self.source = source
        super().__init__(
            f"{source.name} not found: expected {self.path}. "
            f"Set OSOROI_DATA_DIR (or {source.setting}) to the folder that holds it, "
            f"or get it with: {source.instructions}"
        )


def require_path(path: Path, source: DataSource) -> Path:
    """Return ``path`` if it exists, else raise :class:`DataNotFoundError` naming ``source``."""
    if not Path(path).exists():
        raise DataNotFoundError(path, source)
    return Path(path)


def download_catalogue(destination: Path) -> Path:
    """Download and unzip the Kaggle catalogue into ``destination`` with the Kaggle CLI.

    Needs internet access, ``pip install kaggle`` and an API token in ``~/.kaggle/kaggle.json``.
    """
    if shutil.which("kaggle") is None:
        raise RuntimeError("The Kaggle CLI is not installed: run 'pip install kaggle' and add an API token.")
    destination.mkdir(parents=True, exist_ok=True)
    command = [
        "kaggle", "datasets", "download",
        "-d", "paramaggarwal/fashion-product-images-small",
        "-p", str(destination), "--unzip",
    ]
    logger.info("Running %s", " ".join(command))
    subprocess.run(command, check=True)
    return destination


def download_fashion_mnist(destination: Path, base_url: str = FASHION_MNIST_URL) -> Path:
    """Download the four official Fashion-MNIST gzip files into ``destination``; existing files are kept."""
    destination.mkdir(parents=True, exist_ok=True)
    for filename in FASHION_MNIST_FILES:
        target = destination / filename
        if target.exists():
            continue
        logger.info("Downloading %s%s", base_url, filename)
        with urllib.request.urlopen(base_url + filename, timeout=60) as response, atomic_path(target) as temporary:
            temporary.write_bytes(response.read())
    return destination
