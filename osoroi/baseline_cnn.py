"""A small CNN for Fashion-MNIST as a LightningModule, and a function that trains and tests it on the CPU.

Logged metric names are fixed: ``train_loss``, ``train_acc``, ``val_loss``,
``val_acc`` (per epoch), ``test_loss`` and ``test_acc``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from osoroi.config import derived_dir
from osoroi.fashion_mnist import CLASS_NAMES

logger = logging.getLogger(__name__)

# Mean and standard deviation of the 60,000 official training images scaled to [0, 1],
# measured with osoroi.fashion_mnist.load_fashion_mnist("train").
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


def _conv_block(in_channels: int, out_channels: int, convolutions: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convolutions):
        layers += [
            nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class BaselineCNN(pl.LightningModule):
    """Conv blocks (3x3 convolutions, BatchNorm, ReLU, max-pool, dropout), global average pooling, a linear head.

    Input: float images of shape (n, 1, 28, 28) in [0, 1]. The module normalises them
    itself with ``mean`` and ``std``, so a checkpoint carries its preprocessing.
    Trains with AdamW and a OneCycle schedule over ``trainer.estimated_stepping_batches``.

    Args:
        channels: output channels of each block. Each block halves the resolution.
        convolutions_per_block: 3x3 convolutions in each block (one number, or one per block).
        dropout: dropout after each block and before the head.
        learning_rate: peak learning rate of the OneCycle schedule.
        weight_decay: AdamW weight decay.
        label_smoothing: label smoothing of the cross-entropy loss.
        channels_last: use the channels-last memory format for weights and activations, which
            oneDNN's CPU convolutions usually run faster.
        mean: mean pixel value used to normalise the input.
        std: pixel standard deviation used to normalise the input.
        num_classes: number of output classes.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (24, 48, 96),
        convolutions_per_block: int | tuple[int, ...] = (1, 2, 2),
        dropout: float = 0.1,
        learning_rate: float = 3e-3,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.05,
        channels_last: bool = True,
        mean: float = FASHION_MNIST_MEAN,
        std: float = FASHION_MNIST_STD,
        num_classes: int = len(CLASS_NAMES),
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("Invalid channels=(): give at least one block, for example (24, 48, 96).")
        self.save_hyperparameters()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        if isinstance(convolutions_per_block, int):
            convolutions_per_block = (convolutions_per_block,) * len(channels)
        if len(convolutions_per_block) != len(channels):
            raise ValueError(
                f"Invalid convolutions_per_block={convolutions_per_block}: give one number or one per block "
                f"({len(channels)} blocks)."
            )
        blocks = []
        in_channels = 1
        for out_channels, convolutions in zip(channels, convolutions_per_block):
            blocks.append(_conv_block(in_channels, out_channels, convolutions, dropout))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, num_classes)
        )
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(2, 1, 28, 28)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits of shape (n, num_classes) for images of shape (n, 1, 28, 28) in [0, 1]."""
        images = (images - self.mean) / self.std
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(images))

    def _step(self, batch: list[torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        # Epoch-level logging only keeps the metric names free of _step/_epoch suffixes.
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the training loss of one batch and log train_loss and train_acc."""
        return self._step(batch, "train")

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        """Log val_loss and val_acc of one batch."""
        self._step(batch, "val")

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        """Log test_loss and test_acc of one batch."""
        self._step(batch, "test")

    def predict_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the class probabilities of shape (n, num_classes) of one batch."""
        return self(batch[0]).softmax(dim=1)

    def configure_optimizers(self) -> dict:
        """Build AdamW with a OneCycle learning-rate schedule stepped every batch."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.learning_rate,
            total_steps=int(self.trainer.estimated_stepping_batches),
            pct_start=0.25,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@dataclass
class TrainingResult:
    """What :func:`train_baseline_cnn` produced: the best model, its files, time and scores."""

    model: BaselineCNN
    checkpoint_path: Path
    metrics_csv: Path
    train_seconds: float
    num_threads: int
    epochs: int
    best_val_acc: float
    test_acc: float
    test_loss: float


def train_baseline_cnn(
    datamodule: pl.LightningDataModule,
    max_epochs: int = 15,
    output_dir: Path | None = None,
    seed: int = 0,
    limit_train_batches: int | float | None = None,
    enable_progress_bar: bool = True,
    num_threads: int | None = None,
    **model_kwargs: object,
) -> TrainingResult:
    """Train :class:`BaselineCNN` on the CPU, keep the checkpoint with the best val_acc and test it.

    Writes ``<output_dir>/logs/baseline_cnn/metrics.csv`` (CSVLogger) and
    ``<output_dir>/checkpoints/baseline-cnn-best.ckpt``, replacing an earlier run.
    ``output_dir`` defaults to ``derived_dir("fashion_mnist")``. ``train_seconds`` is the
    wall time of ``Trainer.fit`` (training and the validation after each epoch).
    ``num_threads`` sets ``torch.set_num_threads`` for the rest of the process (None keeps
    PyTorch's default, one thread per core). Other keyword arguments go to :class:`BaselineCNN`.
    """
    if max_epochs < 1:
        raise ValueError(f"Invalid max_epochs={max_epochs}: it must be at least 1.")
    output_dir = Path(output_dir) if output_dir is not None else derived_dir("fashion_mnist")
    log_dir = output_dir / "logs" / "baseline_cnn"
    checkpoint_dir = output_dir / "checkpoints"
    # Start from empty folders so the log and the best checkpoint belong to this run only.
    for folder in (log_dir, checkpoint_dir):
        shutil.rmtree(folder, ignore_errors=True)

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    pl.seed_everything(seed, workers=True, verbose=False)
    model = BaselineCNN(**model_kwargs)
    checkpoint = ModelCheckpoint(
        dirpath=checkpoint_dir, filename="baseline-cnn-best", monitor="val_acc", mode="max", save_top_k=1
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=limit_train_batches,
        logger=CSVLogger(output_dir, name="logs", version="baseline_cnn"),
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch")],
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=10,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    logger.info(
        "Trained %d epochs in %.1f s on %d CPU threads", trainer.current_epoch, train_seconds, torch.get_num_threads()
    )

    best = BaselineCNN.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu")
    best.eval()
    (test_metrics,) = trainer.test(best, datamodule=datamodule, verbose=False)
    return TrainingResult(
        model=best,
        checkpoint_path=Path(checkpoint.best_model_path),
        metrics_csv=Path(trainer.logger.log_dir) / "metrics.csv",
        train_seconds=train_seconds,
        num_threads=torch.get_num_threads(),
        epochs=trainer.current_epoch,
        best_val_acc=float(checkpoint.best_model_score),
        test_acc=float(test_metrics["test_acc"]),
        test_loss=float(test_metrics["test_loss"]),
    )


def read_training_log(metrics_csv: str | Path) -> pd.DataFrame:
    """Return one row per epoch of a CSVLogger ``metrics.csv``: epoch, train_loss, train_acc, val_loss, val_acc."""
    log = pd.read_csv(metrics_csv)
    columns = [name for name in ("train_loss", "train_acc", "val_loss", "val_acc") if name in log.columns]
    # CSVLogger writes training and validation metrics of one epoch on separate rows.
    history = log.groupby("epoch")[columns].first().reset_index()
    history = history.dropna(subset=columns, how="all")
    history["epoch"] = history["epoch"].astype(int)
    return history.reset_index(drop=True)


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Return class probabilities, ndarray of shape (n, num_classes), for images of shape (n, 1, 28, 28)."""
    model.eval()
    outputs = [model(images[i : i + batch_size]).softmax(dim=1) for i in range(0, len(images), batch_size)]
    return torch.cat(outputs).numpy()


def comparison_table(classic: pd.DataFrame, result: TrainingResult, n_train: int) -> pd.DataFrame:
    """Append the CNN to the table of :func:`osoroi.classic_baselines.fit_baselines`, adding an epochs column."""
    cnn = pd.DataFrame(
        {
            "model": ["Baseline CNN"],
            "n_train": [n_train],
            "train_seconds": [result.train_seconds],
            "test_accuracy": [result.test_acc],
            "epochs": [result.epochs],
        }
    )
    table = pd.concat([classic.assign(epochs=pd.NA), cnn], ignore_index=True)
    table["epochs"] = table["epochs"].astype("Int64")
    return table


def comparison_metrics(table: pd.DataFrame, result: TrainingResult, smoke: bool, seed: int) -> dict:
    """Return the metrics dictionary of notebook 02: one entry per model plus the CNN's run details."""
    models = {}
    for row in table.itertuples(index=False):
        models[row.model] = {
            "test_accuracy": round(float(row.test_accuracy), 4),
            "train_seconds": round(float(row.train_seconds), 1),
            "n_train": int(row.n_train),
            "epochs": None if pd.isna(row.epochs) else int(row.epochs),
        }
    return {
        "smoke": smoke,
        "seed": seed,
        "models": models,
        "cnn": {
            "best_val_acc": round(result.best_val_acc, 4),
            "test_acc": round(result.test_acc, 4),
            "test_loss": round(result.test_loss, 4),
            "epochs": result.epochs,
            "train_seconds": round(result.train_seconds, 1),
            "num_threads": result.num_threads,
            "hyperparameters": {key: _plain(value) for key, value in result.model.hparams.items()},
            "checkpoint": result.checkpoint_path.name,
        },
    }


def _plain(value: object) -> object:
    """Return ``value`` as a JSON-friendly value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value
