"""Tests of the baseline CNN, its training function and the scikit-learn baselines, on tiny data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from osoroi.baseline_cnn import BaselineCNN, predict_probabilities, read_training_log, train_baseline_cnn
from osoroi.classic_baselines import default_baselines, fit_baselines, flatten_pixels
from osoroi.fashion_mnist import FashionMNISTDataModule


def write_gzip_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = b"".join(int(value).to_bytes(4, "big") for value in (magic, *array.shape))
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """Write a gzip Fashion-MNIST of 100 training and 20 test images, class k of brightness 25k."""
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    for prefix, count in (("train", 100), ("t10k", 20)):
        labels = np.arange(count) % 10
        images = np.repeat((labels * 25)[:, None, None], 28, axis=1).repeat(28, axis=2)
        write_gzip_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_gzip_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return root


def test_model_forward_shape() -> None:
    model = BaselineCNN(channels=(4, 8), convolutions_per_block=(1, 2))
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    probabilities = predict_probabilities(model, torch.rand(5, 1, 28, 28), batch_size=2)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_model_rejects_bad_block_config() -> None:
    with pytest.raises(ValueError, match="one per block"):
        BaselineCNN(channels=(4, 8), convolutions_per_block=(1, 2, 3))
    with pytest.raises(ValueError, match="at least one block"):
        BaselineCNN(channels=())


def test_training_writes_log_and_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tiny_root, val_size=20, batch_size=16)
    output_dir = tmp_path / "derived"
    result = train_baseline_cnn(
        datamodule,
        max_epochs=1,
        output_dir=output_dir,
        limit_train_batches=1,
        enable_progress_bar=False,
        channels=(4, 8),
        convolutions_per_block=1,
    )
    assert result.epochs == 1
    assert result.checkpoint_path == output_dir / "checkpoints" / "baseline-cnn-best.ckpt"
    assert result.checkpoint_path.is_file()
    assert result.metrics_csv == output_dir / "logs" / "baseline_cnn" / "metrics.csv"
    assert 0.0 <= result.test_acc <= 1.0
    assert 0.0 <= result.best_val_acc <= 1.0
    assert result.train_seconds > 0

    log = pd.read_csv(result.metrics_csv)
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc"):
        assert name in log.columns, f"{name} missing from {list(log.columns)}"
    history = read_training_log(result.metrics_csv)
    assert list(history["epoch"]) == [0]
    assert history[["train_loss", "val_acc"]].notna().all().all()

    restored = BaselineCNN.load_from_checkpoint(result.checkpoint_path)
    assert restored.hparams.channels == (4, 8)


def test_training_replaces_earlier_run(tiny_root: Path, tmp_path: Path) -> None:
    datamodule = FashionMNISTDataModule(root=tiny_root, val_size=20, batch_size=16)
    stale = tmp_path / "derived" / "checkpoints" / "old.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    train_baseline_cnn(
        datamodule, max_epochs=1, output_dir=tmp_path / "derived", limit_train_batches=1,
        enable_progress_bar=False, channels=(4,), convolutions_per_block=1,
    )
    assert not stale.exists()


def test_training_rejects_zero_epochs(tiny_root: Path) -> None:
    with pytest.raises(ValueError, match="max_epochs=0"):
        train_baseline_cnn(FashionMNISTDataModule(root=tiny_root), max_epochs=0)


def test_classic_baselines_table() -> None:
    # Class k lights row k of the image, so every model can separate the classes.
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    images = rng.integers(0, 30, size=(200, 28, 28)).astype(np.uint8)
    images[np.arange(200), labels] = 255
    specs = default_baselines(max_train=60, n_jobs=1)
    table = fit_baselines(specs, images[:150], labels[:150], images[150:], labels[150:])
    assert list(table["model"]) == ["Logistic regression", "Linear SVM", "Random forest"]
    assert list(table["n_train"]) == [60, 60, 60]
    assert (table["train_seconds"] > 0).all()
    assert (table["test_accuracy"] > 0.9).all()


def test_flatten_pixels_scale() -> None:
    images = np.full((2, 28, 28), 255, dtype=np.uint8)
    features = flatten_pixels(images)
    assert features.shape == (2, 784)
    assert features.dtype == np.float32
    assert float(features.max()) == 1.0
