"""Tests of the Fashion-MNIST IDX reader and DataModule on tiny IDX files written into tmp_path."""

from __future__ import annotations

import gzip
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch

from osoroi.download import FASHION_MNIST, DataNotFoundError
from osoroi.fashion_mnist import (
    CLASS_NAMES,
    FashionMNISTDataModule,
    IDXFormatError,
    augment_batch,
    find_fashion_mnist_file,
    load_fashion_mnist,
    read_idx_images,
    read_idx_labels,
    split_train_validation,
)

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_images_bytes(images: np.ndarray, magic: int = 2051) -> bytes:
    header = b"".join(int(value).to_bytes(4, "big") for value in (magic, *images.shape))
    return header + images.astype(np.uint8).tobytes()


def idx_labels_bytes(labels: np.ndarray, magic: int = 2049) -> bytes:
    return magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()


def write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images_stem, labels_stem = STEMS[split]
    for stem, payload in ((images_stem, idx_images_bytes(images)), (labels_stem, idx_labels_bytes(labels))):
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)


def tiny_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    return images, labels


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """Write a gzip Fashion-MNIST of 200 training and 50 test images (20 and 5 per class)."""
    write_split(tmp_path, "train", *tiny_split(200, seed=1))
    write_split(tmp_path, "test", *tiny_split(50, seed=2))
    return tmp_path


def test_reader_gzip_round_trip(tmp_path: Path) -> None:
    images, labels = tiny_split(12, seed=0)
    write_split(tmp_path, "train", images, labels)
    read_images = read_idx_images(tmp_path / "train-images-idx3-ubyte.gz")
    read_labels = read_idx_labels(tmp_path / "train-labels-idx1-ubyte.gz")
    assert read_images.shape == (12, 28, 28)
    assert read_images.dtype == np.uint8
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_loader_reads_torchvision_layout(tmp_path: Path) -> None:
    images, labels = tiny_split(30, seed=0)
    write_split(tmp_path / "FashionMNIST" / "raw", "test", images, labels, compress=False)
    path = find_fashion_mnist_file("test", "images", tmp_path)
    assert path == tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    read_images, read_labels = load_fashion_mnist("test", tmp_path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_reader_rejects_wrong_magic(tmp_path: Path) -> None:
    images, _ = tiny_split(3, seed=0)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_images_bytes(images, magic=2049))
    with pytest.raises(IDXFormatError, match="expected 2051, found 2049") as error:
        read_idx_images(path)
    assert path.name in str(error.value)


def test_label_reader_rejects_image_file(tmp_path: Path) -> None:
    images, _ = tiny_split(3, seed=0)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_images_bytes(images))
    with pytest.raises(IDXFormatError, match="expected 2049, found 2051"):
        read_idx_labels(path)


def test_reader_rejects_truncated_file(tmp_path: Path) -> None:
    images, _ = tiny_split(5, seed=0)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_images_bytes(images)[:-100])
    expected = 16 + 5 * 28 * 28
    with pytest.raises(IDXFormatError, match=f"should have {expected} bytes, found {expected - 100}") as error:
        read_idx_images(path)
    assert "(5, 28, 28)" in str(error.value)
    assert path.name in str(error.value)


def test_reader_rejects_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes((2049).to_bytes(4, "big") + b"\x00\x00")
    with pytest.raises(IDXFormatError, match="at least 8 bytes, found 6"):
        read_idx_labels(path)


def test_reader_rejects_truncated_gzip(tmp_path: Path) -> None:
    images, _ = tiny_split(20, seed=0)
    compressed = gzip.compress(idx_images_bytes(images))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(IDXFormatError, match="truncated gzip") as error:
        read_idx_images(path)
    assert f"Delete {path} and download it again" in str(error.value)
    assert "download_fashion_mnist" in str(error.value)


def test_reader_error_says_to_download_again(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"<html><body>Not Found</body></html>"))
    with pytest.raises(IDXFormatError, match="invalid IDX magic number") as error:
        read_idx_images(path)
    assert f"Delete {path} and download it again" in str(error.value)


def test_loader_rejects_count_mismatch(tmp_path: Path) -> None:
    images, labels = tiny_split(10, seed=0)
    write_split(tmp_path, "train", images, labels[:9])
    with pytest.raises(IDXFormatError, match="has 10 images but train-labels-idx1-ubyte.gz has 9 labels"):
        load_fashion_mnist("train", tmp_path)


def test_loader_rejects_label_out_of_range(tmp_path: Path) -> None:
    images, labels = tiny_split(10, seed=0)
    labels[3] = 12
    write_split(tmp_path, "train", images, labels)
    with pytest.raises(IDXFormatError, match="labels must lie in 0-9, found 12"):
        load_fashion_mnist("train", tmp_path)


def test_missing_file_raises_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="Fashion-MNIST not found") as error:
        load_fashion_mnist("train", tmp_path)
    assert error.value.source is FASHION_MNIST
    assert error.value.path == tmp_path / "train-images-idx3-ubyte.gz"
    assert "download_fashion_mnist" in str(error.value)


def test_loader_uses_configured_folder(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_FASHION_MNIST_DIR", str(tiny_root))
    images, labels = load_fashion_mnist("test")
    assert images.shape == (50, 28, 28)
    assert labels.shape == (50,)


def test_split_is_stratified_and_deterministic() -> None:
    labels = np.repeat(np.arange(10), 30)
    train, val = split_train_validation(labels, val_size=50, seed=3)
    train_again, val_again = split_train_validation(labels, val_size=50, seed=3)
    np.testing.assert_array_equal(train, train_again)
    np.testing.assert_array_equal(val, val_again)
    assert len(val) == 50
    assert len(train) == 250
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.bincount(labels[val]), np.full(10, 5))


def test_datamodule_shapes_and_splits(tiny_root: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tiny_root, val_size=40, batch_size=16, seed=0)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_dataset) == 160
    assert len(datamodule.val_dataset) == 40
    assert len(datamodule.test_dataset) == 50
    assert not set(datamodule.train_indices) & set(datamodule.val_indices)
    np.testing.assert_array_equal(np.bincount(datamodule.val_labels, minlength=10), np.full(10, 4))

    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (16, 1, 28, 28)
    assert images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert labels.dtype == torch.int64
    test_images, _ = next(iter(datamodule.test_dataloader()))
    assert test_images.shape == (32, 1, 28, 28)


def test_datamodule_split_repeats_with_seed(tiny_root: Path) -> None:
    first = FashionMNISTDataModule(root=tiny_root, val_size=40, seed=5)
    second = FashionMNISTDataModule(root=tiny_root, val_size=40, seed=5)
    other = FashionMNISTDataModule(root=tiny_root, val_size=40, seed=6)
    for datamodule in (first, second, other):
        datamodule.setup("fit")
    np.testing.assert_array_equal(first.val_indices, second.val_indices)
    assert not np.array_equal(first.val_indices, other.val_indices)


def test_datamodule_subsets_keep_classes(tiny_root: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tiny_root, val_size=20, train_subset=100, test_subset=20)
    datamodule.setup("fit")
    assert len(datamodule.train_dataset) + len(datamodule.val_dataset) == 100
    assert len(datamodule.test_dataset) == 20
    np.testing.assert_array_equal(np.bincount(datamodule.test_labels, minlength=10), np.full(10, 2))


def test_datamodule_missing_data_raises(tmp_path: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tmp_path)
    with pytest.raises(DataNotFoundError):
        datamodule.prepare_data()


def test_augment_batch_shape_and_content() -> None:
    torch.manual_seed(0)
    images = torch.rand(64, 1, 28, 28)
    augmented = augment_batch(images, padding=2)
    assert augmented.shape == images.shape
    assert not torch.equal(augmented, images)
    unchanged = augment_batch(images, padding=0, flip=False)
    assert torch.equal(unchanged, images)


def test_augment_batch_flip_only_mirrors() -> None:
    torch.manual_seed(0)
    images = torch.rand(32, 1, 28, 28)
    augmented = augment_batch(images, padding=0, flip=True)
    for original, result in zip(images, augmented):
        assert torch.equal(result, original) or torch.equal(result, original.flip(-1))


def test_class_names_match_official_order() -> None:
    assert len(CLASS_NAMES) == 10
    assert CLASS_NAMES[0] == "T-shirt/top"
    assert CLASS_NAMES[6] == "Shirt"
    assert CLASS_NAMES[9] == "Ankle boot"


@pytest.mark.real_data
def test_real_fashion_mnist_files(real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSOROI_FASHION_MNIST_DIR", raising=False)
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    assert train_images.shape == (60_000, 28, 28)
    assert test_images.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(np.bincount(train_labels), np.full(10, 6_000))
    np.testing.assert_array_equal(np.bincount(test_labels), np.full(10, 1_000))


def test_datamodule_augments_only_while_training(tiny_root: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tiny_root, val_size=40, batch_size=32)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.val_dataloader()))
    torch.manual_seed(0)
    datamodule.trainer = SimpleNamespace(training=False)
    evaluated, evaluated_labels = datamodule.on_after_batch_transfer([images, labels], 0)
    assert torch.equal(evaluated, images)
    assert torch.equal(evaluated_labels, labels)
    datamodule.trainer = SimpleNamespace(training=True)
    augmented, _ = datamodule.on_after_batch_transfer([images, labels], 0)
    assert augmented.shape == images.shape
    assert not torch.equal(augmented, images)
