"""Tests of the download functions against a loopback HTTP server and of the missing-data instructions."""

from __future__ import annotations

import gzip
import http.server
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from osoroi import download
from osoroi.download import CATALOGUE, FASHION_MNIST, FASHION_MNIST_FILES, DataNotFoundError, DownloadError
from osoroi.fashion_mnist import read_idx_images, read_idx_labels

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>"


def tiny_idx(filename: str) -> bytes:
    """Return a gzip IDX file of two 28x28 images or two labels, by the official file name."""
    if "-images-" in filename:
        header = b"".join(value.to_bytes(4, "big") for value in (2051, 2, 28, 28))
        return gzip.compress(header + bytes(range(256)) * 6 + bytes(2 * 28 * 28 - 256 * 6))
    return gzip.compress((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([3, 7]))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a folder from 127.0.0.1 on a free port in a thread; yield its base URL and the folder."""
    root = tmp_path / "served"
    (root / "good").mkdir(parents=True)
    (root / "html").mkdir()
    for filename in FASHION_MNIST_FILES:
        (root / "good" / filename).write_bytes(tiny_idx(filename))
        (root / "html" / filename).write_bytes(HTML_PAGE)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_saves_valid_files(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    destination = tmp_path / "fashion-mnist"

    download.download_fashion_mnist(destination, base_url=base_url + "good/")

    assert sorted(path.name for path in destination.iterdir()) == sorted(FASHION_MNIST_FILES)
    assert read_idx_images(destination / "train-images-idx3-ubyte.gz").shape == (2, 28, 28)
    assert list(read_idx_labels(destination / "t10k-labels-idx1-ubyte.gz")) == [3, 7]


def test_download_rejects_html_page(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    destination = tmp_path / "fashion-mnist"

    with pytest.raises(DownloadError) as raised:
        download.download_fashion_mnist(destination, base_url=base_url + "html/")

    message = str(raised.value)
    assert f"{base_url}html/{FASHION_MNIST_FILES[0]}" in message
    assert str(destination / FASHION_MNIST_FILES[0]) in message
    assert "gzip magic bytes 1f 8b" in message
    assert list(destination.iterdir()) == []


def test_download_rejects_gzip_without_idx(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    (root / "good" / FASHION_MNIST_FILES[0]).write_bytes(gzip.compress(HTML_PAGE))
    destination = tmp_path / "fashion-mnist"

    with pytest.raises(DownloadError, match="invalid IDX magic number, expected 2051"):
        download.download_fashion_mnist(destination, base_url=base_url + "good/")

    assert list(destination.iterdir()) == []


def test_download_reports_missing_url(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served

    with pytest.raises(DownloadError, match=re.escape(f"{base_url}absent/{FASHION_MNIST_FILES[0]}")):
        download.download_fashion_mnist(tmp_path / "fashion-mnist", base_url=base_url + "absent/")

    assert list((tmp_path / "fashion-mnist").iterdir()) == []


def test_download_replaces_invalid_existing_file(
    served: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, _ = served
    destination = tmp_path / "fashion-mnist"
    destination.mkdir()
    stale = destination / "train-labels-idx1-ubyte.gz"
    stale.write_bytes(HTML_PAGE)

    with caplog.at_level("WARNING", logger="osoroi.download"):
        download.download_fashion_mnist(destination, base_url=base_url + "good/")

    assert list(read_idx_labels(stale)) == [3, 7]
    assert "Downloading" in caplog.text
    assert str(stale) in caplog.text


def test_download_keeps_valid_existing_file(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    destination = tmp_path / "fashion-mnist"
    destination.mkdir()
    kept = destination / "t10k-labels-idx1-ubyte.gz"
    kept.write_bytes(gzip.compress((2049).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([9])))

    download.download_fashion_mnist(destination, base_url=base_url + "good/")

    assert list(read_idx_labels(kept)) == [9]


def _suggested_call(error: DataNotFoundError) -> str:
    match = re.search(r"osoroi\.download\.(\w+)\(\)", str(error))
    assert match is not None, f"no osoroi.download call in: {error}"
    return match.group(1)


def test_fashion_mnist_instructions_call_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OSOROI_FASHION_MNIST_DIR", raising=False)
    monkeypatch.setenv("OSOROI_DATA_DIR", str(tmp_path))
    requested: list[str] = []

    def fetch(url: str) -> bytes:
        requested.append(url)
        return tiny_idx(url.rpartition("/")[2])

    monkeypatch.setattr(download, "_fetch", fetch)
    error = DataNotFoundError(tmp_path / "fashion-mnist" / FASHION_MNIST_FILES[0], FASHION_MNIST)

    result = getattr(download, _suggested_call(error))()

    assert result == tmp_path / "fashion-mnist"
    assert len(requested) == len(FASHION_MNIST_FILES)
    assert sorted(path.name for path in result.iterdir()) == sorted(FASHION_MNIST_FILES)


def test_catalogue_instructions_call_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSOROI_CATALOGUE_DIR", raising=False)
    monkeypatch.setenv("OSOROI_DATA_DIR", str(tmp_path))
    commands: list[list[str]] = []
    monkeypatch.setattr(download.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(download.subprocess, "run", lambda command, check: commands.append(command))
    error = DataNotFoundError(tmp_path / "fashion-product-images-small" / "styles.csv", CATALOGUE)

    result = getattr(download, _suggested_call(error))()

    assert result == tmp_path / "fashion-product-images-small"
    assert len(commands) == 1
    assert commands[0][commands[0].index("-p") + 1] == str(result)
