"""Fashion-MNIST: a validating reader for the IDX files and a LightningDataModule that serves them.

The reader accepts the official layout (the four ``*-ubyte.gz`` files directly in
:func:`osoroi.config.fashion_mnist_dir`) and the uncompressed layout that
``torchvision.datasets.FashionMNIST`` writes (``<root>/FashionMNIST/raw/*-ubyte``).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from osoroi.config import fashion_mnist_dir
from osoroi.download import FASHION_MNIST, DataNotFoundError

logger = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGES_MAGIC = 2051  # IDX header: unsigned bytes, 3 dimensions.
LABELS_MAGIC = 2049  # IDX header: unsigned bytes, 1 dimension.
IMAGE_SIZE = 28
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000

Split = Literal["train", "test"]
_FILE_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


class IDXFormatError(ValueError):
    """Error raised when an IDX file has a wrong magic number or size, or does not match its partner file."""


def _redownload_hint(path: Path) -> str:
    return (
        f"Delete {path} and download it again, for example with "
        f"osoroi.download.download_fashion_mnist({str(path.parent)!r})."
    )


def _read_bytes(path: Path) -> bytes:
    """Read ``path``, decompressing it when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (EOFError, OSError, zlib.error) as error:
        raise IDXFormatError(
            f"{path}: invalid or truncated gzip file ({error}). {_redownload_hint(path)}"
        ) from error


def _parse_idx(path: Path, expected_magic: int, dimensions: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``dimensions`` dimensions after checking its header and length."""
    data = _read_bytes(path)
    header_size = 4 * (1 + dimensions)
    if len(data) < header_size:
        raise IDXFormatError(
            f"{path}: truncated IDX header, expected at least {header_size} bytes, found {len(data)}. "
            f"{_redownload_hint(path)}"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise IDXFormatError(
            f"{path}: invalid IDX magic number, expected {expected_magic}, found {magic}. "
            f"{_redownload_hint(path)}"
        )
    shape = tuple(int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(dimensions))
    expected_size = header_size + int(np.prod(shape))
    if len(data) != expected_size:
        raise IDXFormatError(
            f"{path}: header gives shape {shape}, so the file should have {expected_size} bytes, "
            f"found {len(data)}, so the file is truncated or corrupt. {_redownload_hint(path)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX image file (gzip or uncompressed) into a uint8 ndarray of shape (n, rows, cols)."""
    return _parse_idx(Path(path), IMAGES_MAGIC, dimensions=3)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read an IDX label file (gzip or uncompressed) into a uint8 ndarray of shape (n,)."""
    return _parse_idx(Path(path), LABELS_MAGIC, dimensions=1)


def find_fashion_mnist_file(split: Split, kind: Literal["images", "labels"], root: Path | None = None) -> Path:
    """Locate one of the four files under ``root`` (default :func:`fashion_mnist_dir`).

    Looks for ``<stem>.gz`` and ``<stem>`` in ``root``, then in ``root/FashionMNIST/raw``
    (torchvision's layout). Raises :class:`DataNotFoundError` when none exists.
    """
    if (split, kind) not in _FILE_STEMS:
        raise ValueError(f"Invalid split={split!r} or kind={kind!r}: use 'train' or 'test', 'images' or 'labels'.")
    root = Path(root) if root is not None else fashion_mnist_dir()
    stem = _FILE_STEMS[(split, kind)]
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataNotFoundError(root / f"{stem}.gz", FASHION_MNIST)


def load_fashion_mnist(split: Split, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one split and return ``(images, labels)``: uint8 arrays of shape (n, 28, 28) and (n,).

    Raises :class:`IDXFormatError` when the files are invalid, when the image and
    label counts differ, or when a label lies outside 0-9.
    """
    images_path = find_fashion_mnist_file(split, "images", root)
    labels_path = find_fashion_mnist_file(split, "labels", root)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise IDXFormatError(
            f"{images_path}: expected {IMAGE_SIZE}x{IMAGE_SIZE} images, found {images.shape[1]}x{images.shape[2]}."
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels; "
            "both files must come from the same split."
        )
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise IDXFormatError(
            f"{labels_path}: labels must lie in 0-{len(CLASS_NAMES) - 1}, found {int(labels.max())}."
        )
    logger.info("Read %d %s images from %s", len(images), split, images_path.name)
    return images, labels


def split_train_validation(
    labels: np.ndarray, val_size: int | float, seed: int = 0, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train_indices, val_indices) that carve a validation set out of ``labels``.

    ``val_size`` is a count or a fraction. The same labels, size and seed give the same
    split. With ``stratify=True`` both parts keep the class shares of ``labels``.
    """
    indices = np.arange(len(labels))
    train_indices, val_indices = train_test_split(
        indices, test_size=val_size, random_state=seed, stratify=labels if stratify else None
    )
    return np.sort(train_indices), np.sort(val_indices)


def _stratified_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Return sorted indices of a stratified subset of ``size`` items, or all indices when size is None."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    subset, _ = train_test_split(np.arange(len(labels)), train_size=size, random_state=seed, stratify=labels)
    return np.sort(subset)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Convert uint8 images of shape (n, 28, 28) to a float tensor of shape (n, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def augment_batch(images: torch.Tensor, padding: int = 2, flip: bool = True) -> torch.Tensor:
    """Shift each image of a batch by a random crop of its zero-padded copy and mirror half of them.

    ``images`` has shape (n, c, h, w); the result has the same shape. Uses the torch
    global random generator, so ``seed_everything`` makes it repeatable.
    """
    n, _, height, width = images.shape
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        top = torch.randint(0, 2 * padding + 1, (n,))
        left = torch.randint(0, 2 * padding + 1, (n,))
        rows = (top[:, None] + torch.arange(height)[None, :])[:, None, :, None]
        cols = (left[:, None] + torch.arange(width)[None, :])[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        channels = torch.arange(images.shape[1])[None, :, None, None]
        images = padded[batch, channels, rows, cols]
    if flip:
        mirrored = torch.rand(n) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    return images


class FashionMNISTDataModule(pl.LightningDataModule):
    """Fashion-MNIST as train, validation and test loaders of float images in [0, 1], shape (n, 1, 28, 28).

    The validation set is carved from the official 60,000 training images (stratified,
    seeded), and the test set is the official 10,000. ``train_subset`` and ``test_subset``
    take stratified subsets (before the split) for quick runs.

    Args:
        root: folder with the IDX files; default :func:`osoroi.config.fashion_mnist_dir`.
        val_size: validation images (count or fraction of the training images).
        batch_size: images per training batch; evaluation uses twice as many.
        seed: seed of the split and the subsets.
        augment: random crop with ``padding`` and horizontal flip on training batches.
        padding: pixels of zero padding around each image before the random 28x28 crop.
        train_subset: keep this many training images before the split (None keeps all).
        test_subset: keep this many test images (None keeps all).
        num_workers: DataLoader workers; 0 is fastest for tensors already in memory.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        val_size: int | float = 6_000,
        batch_size: int = 128,
        seed: int = 0,
        augment: bool = True,
        padding: int = 2,
        train_subset: int | None = None,
        test_subset: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"Invalid batch_size={batch_size}: it must be at least 1.")
        self.root = Path(root) if root else None
        self.val_size = val_size
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.padding = padding
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.num_workers = num_workers
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None

    def prepare_data(self) -> None:
        """Check that the four files exist; raise :class:`DataNotFoundError` naming the first missing one."""
        for split, kind in _FILE_STEMS:
            find_fashion_mnist_file(split, kind, self.root)

    def setup(self, stage: str | None = None) -> None:
        """Read the files once and build the train, validation and test datasets."""
        if getattr(self, "train_dataset", None) is not None:
            return
        images, labels = load_fashion_mnist("train", self.root)
        keep = _stratified_subset(labels, self.train_subset, self.seed)
        images, labels = images[keep], labels[keep]
        train_indices, val_indices = split_train_validation(labels, self.val_size, self.seed)
        self.train_indices, self.val_indices = keep[train_indices], keep[val_indices]
        self.train_images, self.train_labels = images[train_indices], labels[train_indices]
        self.val_images, self.val_labels = images[val_indices], labels[val_indices]

        test_images, test_labels = load_fashion_mnist("test", self.root)
        keep_test = _stratified_subset(test_labels, self.test_subset, self.seed)
        self.test_images, self.test_labels = test_images[keep_test], test_labels[keep_test]

        self.train_dataset = self._dataset(self.train_images, self.train_labels)
        self.val_dataset = self._dataset(self.val_images, self.val_labels)
        self.test_dataset = self._dataset(self.test_images, self.test_labels)

    @staticmethod
    def _dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
        return TensorDataset(to_tensor(images), torch.from_numpy(labels.astype(np.int64)))

    def train_dataloader(self) -> DataLoader:
        """Return the shuffled training loader (its order follows the torch global seed)."""
        return DataLoader(
            self.train_dataset, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        """Return the validation loader in file order."""
        return DataLoader(self.val_dataset, batch_size=2 * self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        """Return the official test loader in file order."""
        return DataLoader(self.test_dataset, batch_size=2 * self.batch_size, num_workers=self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        """Return the test loader, so ``Trainer.predict`` scores the official test set."""
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: list[torch.Tensor], dataloader_idx: int) -> list[torch.Tensor]:
        """Augment training batches only (random crop with padding, horizontal flip)."""
        images, labels = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            images = augment_batch(images, padding=self.padding)
        return [images, labels]
