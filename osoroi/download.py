"""Raw data sources: their origin, their download functions and the error raised when one is missing.

The download functions need internet access. Every loader in the package also
accepts files already on disk, found through the settings in :mod:`osoroi.config`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from osoroi import config

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
        "(or python -c 'import osoroi.download; osoroi.download.download_catalogue()')"
    ),
)
FASHION_MNIST = DataSource(
    name="Fashion-MNIST",
    setting="OSOROI_FASHION_MNIST_DIR",
    instructions=(
        "download the four .gz files from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into "
        "$OSOROI_DATA_DIR/fashion-mnist "
        "(or python -c 'import osoroi.download; osoroi.download.download_fashion_mnist()')"
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


class DownloadError(RuntimeError):
    """Error for a download that failed or returned a file that is not the expected data."""


GZIP_MAGIC = b"\x1f\x8b"


def download_catalogue(destination: Path | None = None) -> Path:
    """Download and unzip the Kaggle catalogue into ``destination`` with the Kaggle CLI.

    ``destination`` defaults to :func:`osoroi.config.catalogue_dir`. Needs internet
    access, ``pip install kaggle`` and an API token in ``~/.kaggle/kaggle.json``.
    """
    destination = Path(destination) if destination is not None else config.catalogue_dir()
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


def download_fashion_mnist(destination: Path | None = None, base_url: str = FASHION_MNIST_URL) -> Path:
    """Download the four official Fashion-MNIST gzip files into ``destination`` and check each one.

    ``destination`` defaults to :func:`osoroi.config.fashion_mnist_dir`. A file already
    there is kept when it passes the same check as a new download (gzip, then a valid
    IDX file) and downloaded again when it does not.

    Raises:
        DownloadError: a request failed or returned something other than a gzip IDX
            file (an HTML error page, for example). The file is then not saved.
    """
    destination = Path(destination) if destination is not None else config.fashion_mnist_dir()
    destination.mkdir(parents=True, exist_ok=True)
    for filename in FASHION_MNIST_FILES:
        target = destination / filename
        if target.exists():
            problem = check_fashion_mnist_file(target)
            if problem is None:
                logger.info("Keeping %s: it is a valid gzip IDX file", target)
                continue
            logger.warning("Downloading %s again because the file on disk is invalid: %s", target, problem)
        _download_checked(base_url + filename, target)
    return destination


def check_fashion_mnist_file(path: Path) -> str | None:
    """Check that ``path`` is a gzip file containing a valid IDX file; return the problem, or None when valid.

    ``path`` must keep its official name (``*-images-*`` or ``*-labels-*``, ending in ``.gz``),
    because the name selects the expected IDX magic number (2051 for images, 2049 for labels).
    """
    from osoroi.fashion_mnist import IDXFormatError, read_idx_images, read_idx_labels

    with path.open("rb") as stream:
        start = stream.read(len(GZIP_MAGIC))
    if start != GZIP_MAGIC:
        found = start.hex(" ") if start else "an empty file"
        return f"it does not start with the gzip magic bytes 1f 8b (found {found})"
    reader = read_idx_images if "-images-" in path.name else read_idx_labels
    try:
        reader(path)
    except IDXFormatError as error:
        return str(error)
    return None


def _fetch(url: str) -> bytes:
    """Return the body of ``url``; the only network access of this module."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download_checked(url: str, target: Path) -> None:
    """Download ``url`` into a hidden staging folder, check it, then rename it onto ``target``."""
    logger.info("Downloading %s", url)
    # The staging file keeps the official name, because the IDX reader picks the format from it.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
        staged = Path(staging) / target.name
        try:
            staged.write_bytes(_fetch(url))
        except (urllib.error.URLError, OSError) as error:
            raise DownloadError(
                f"Download of {url} into {target} failed: {error}. Check the URL and retry."
            ) from error
        problem = check_fashion_mnist_file(staged)
        if problem is not None:
            raise DownloadError(
                f"Download of {url} did not return a gzip IDX file, so {target} was not saved: {problem}. "
                "The server may have returned an error page; check the URL (base_url) and retry."
            )
        os.replace(staged, target)
