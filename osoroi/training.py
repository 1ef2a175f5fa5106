"""Lightning training of the multi-task heads, with or without fine-tuning the end of the backbone.

Three modes share one :class:`MultiTaskModule`:

- ``"heads"``: heads only, on cached pooled features (frozen backbone; fast on CPU).
- ``"tail"``: the backbone tail (for ResNet-50 the last ``tail_blocks`` blocks of
  ``layer4``) and the heads, on cached trunk features. The trunk stays frozen.
- ``"full"``: the whole network end to end on images (GPU, or a long CPU run).

Logged metric names are stable: ``train_loss``, ``val_loss``, ``val_acc_<head>``
and ``val_macro_f1_<head>``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader, Dataset

from osoroi.atomic import write_json
from osoroi.embeddings import ImageFileDataset
from osoroi.inference import autocast_context, bfloat16_supported, precision_name
from osoroi.model import OsoroiModel
from osoroi.multitask import MISSING, balanced_class_weights, encode_targets, masked_multitask_loss

logger = logging.getLogger(__name__)

MODES = {"heads": "pooled", "tail": "trunk", "full": "images"}


class ArrayDataset(Dataset):
    """Rows of a (possibly memory-mapped) feature array with their targets; items are (features, targets)."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> None:
        if len(features) != len(targets):
            raise ValueError(f"features has {len(features)} rows but targets has {len(targets)}.")
        self.features = features
        self.targets = torch.from_numpy(targets)
        self.rows = np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[index])
        return torch.from_numpy(np.asarray(self.features[row], dtype=np.float32)), self.targets[row]


class ImageTargetDataset(Dataset):
    """Images from files with their targets, optionally flipped left-right at random for training."""

    def __init__(self, images: ImageFileDataset, targets: np.ndarray, rows: np.ndarray, flip: bool) -> None:
        self.images = images
        self.targets = torch.from_numpy(targets)
        self.rows = np.asarray(rows)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[index])
        image, _ = self.images[row]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.targets[row]


class CatalogueDataModule(pl.LightningDataModule):
    """Train, val and test loaders over the catalogue split, on cached features or on images.

    Args:
        catalogue: frame with the label columns, ``image_path`` and ``split``; row order matches ``features``.
        head_classes: head name -> class names (labels outside them count as missing).
        mode: "heads", "tail" or "full" (see :data:`MODES`).
        features: array of shape (len(catalogue), ...) for "heads" (pooled) and "tail" (trunk) modes.
        preprocessing: image preprocessing for "full" mode.
        batch_size: items per batch.
        seed: seed of the training shuffle.
        train_limit: use at most this many training rows (a seeded subset), None for all.
    """

    def __init__(
        self,
        catalogue: pd.DataFrame,
        head_classes: Mapping[str, Sequence[str]],
        mode: str,
        features: np.ndarray | None = None,
        preprocessing: Any = None,
        batch_size: int = 128,
        seed: int = 0,
        train_limit: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Invalid mode={mode!r}. Only {', '.join(MODES)} are supported.")
        if mode != "full" and (features is None or len(features) != len(catalogue)):
            raise ValueError(
                f"mode={mode!r} needs features with one row per catalogue row ({len(catalogue)})."
            )
        if mode == "full" and preprocessing is None:
            raise ValueError("mode='full' needs the model's preprocessing to read images.")
        self.catalogue = catalogue.reset_index(drop=True)
        self.head_names = list(head_classes)
        self.head_classes = {name: list(classes) for name, classes in head_classes.items()}
        self.targets = encode_targets(self.catalogue, head_classes)
        self.mode = mode
        self.features = features
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        split = self.catalogue["split"].to_numpy()
        self.rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
        if train_limit is not None and train_limit < len(self.rows["train"]):
            rng = np.random.default_rng(seed)
            self.rows["train"] = np.sort(rng.choice(self.rows["train"], size=train_limit, replace=False))

    def class_weights(self, power: float = 0.5, max_ratio: float | None = 10.0) -> dict[str, torch.Tensor]:
        """Return class weights per head from the training rows (see :func:`balanced_class_weights`)."""
        train = self.targets[self.rows["train"]]
        return {
            name: balanced_class_weights(train[:, column], len(self.head_classes[name]), power, max_ratio)
            for column, name in enumerate(self.head_names)
        }

    def dataset(self, split: str) -> Dataset:
        """Return the dataset of one split ("train", "val" or "test")."""
        rows = self.rows[split]
        if self.mode == "full":
            images = ImageFileDataset(self.catalogue["image_path"].tolist(), self.preprocessing)
            return ImageTargetDataset(images, self.targets, rows, flip=split == "train")
        return ArrayDataset(self.features, self.targets, rows)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class MultiTaskModule(pl.LightningModule):
    """Train an :class:`OsoroiModel`'s heads, optionally with its backbone tail or the whole backbone.

    Args:
        model: the model to train in place.
        mode: "heads", "tail" or "full".
        learning_rate: peak AdamW learning rate of the heads.
        backbone_learning_rate: peak learning rate of the trained backbone part ("tail" and "full").
        weight_decay: AdamW weight decay.
        class_weights: head name -> class weights for the loss, or None for plain cross-entropy.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        model: OsoroiModel,
        mode: str = "heads",
        learning_rate: float = 3e-3,
        backbone_learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        class_weights: Mapping[str, torch.Tensor] | None = None,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Invalid mode={mode!r}. Only {', '.join(MODES)} are supported.")
        self.save_hyperparameters(ignore=["model", "class_weights"])
        self.model = model
        self.mode = mode
        self.stage = MODES[mode]
        self.head_names = list(model.head_classes)
        self.class_weights = (
            None if class_weights is None else {k: v.clone() for k, v in class_weights.items()}
        )
        self._freeze_for_mode()
        # Checkpoints hold only the trained parameters (see on_save_checkpoint), so loading is not strict.
        self.strict_loading = False
        self._val_outputs: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []

    def _freeze_for_mode(self) -> None:
        backbone = self.model.backbone
        backbone.requires_grad_(self.mode == "full")
        if self.mode == "tail":
            backbone.tail.requires_grad_(True)

    def trained_backbone(self) -> torch.nn.Module | None:
        """Return the backbone part this mode trains, or None in "heads" mode."""
        return {"heads": None, "tail": self.model.backbone.tail, "full": self.model.backbone}[self.mode]

    def frozen_prefixes(self) -> tuple[str, ...]:
        """Return the state_dict key prefixes of the parts this mode does not train."""
        return {"heads": ("model.backbone.",), "tail": ("model.backbone.trunk.",), "full": ()}[self.mode]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen backbone (94 MB for ResNet-50) is the same in every checkpoint; leave it out.
        prefixes = self.frozen_prefixes()
        if prefixes:
            state = checkpoint["state_dict"]
            checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith(prefixes)}

    def on_train_epoch_start(self) -> None:
        # Frozen parts keep their batch-norm statistics.
        self.model.backbone.eval()
        trained = self.trained_backbone()
        if trained is not None:
            trained.train()

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (embedding, logits per head) for inputs of this mode's stage."""
        if self.stage != "pooled" and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.model.forward_from(self.stage, inputs)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        inputs, targets = batch
        _, logits = self(inputs)
        loss, _ = masked_multitask_loss(
            logits, targets, self.head_names, self.class_weights, self.hparams.label_smoothing
        )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(targets))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        inputs, targets = batch
        _, logits = self(inputs)
        loss, _ = masked_multitask_loss(logits, targets, self.head_names, None, 0.0)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(targets))
        self._val_outputs.append(({k: v.argmax(1).cpu() for k, v in logits.items()}, targets.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        predictions = {name: torch.cat([p[name] for p, _ in self._val_outputs]) for name in self.head_names}
        targets = torch.cat([t for _, t in self._val_outputs])
        self._val_outputs.clear()
        scores = head_scores(predictions, targets.numpy(), self.head_names)
        for name, values in scores.items():
            self.log(f"val_acc_{name}", values["accuracy"], prog_bar=name == "articleType")
            self.log(f"val_macro_f1_{name}", values["macro_f1"])

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": list(self.model.heads.parameters()), "lr": self.hparams.learning_rate}]
        trained = self.trained_backbone()
        if trained is not None:
            groups.append({"params": list(trained.parameters()), "lr": self.hparams.backbone_learning_rate})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in groups], total_steps=total_steps, pct_start=0.15
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def head_scores(
    predictions: Mapping[str, torch.Tensor | np.ndarray], targets: np.ndarray, head_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Return accuracy and macro-F1 per head over labelled entries.

    ``targets`` has shape (N, n_heads), with -1 where a label is missing.
    """
    scores = {}
    for column, name in enumerate(head_names):
        target = targets[:, column]
        labelled = target != MISSING
        predicted = np.asarray(predictions[name])[labelled]
        truth = target[labelled]
        if len(truth) == 0:
            scores[name] = {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
            continue
        scores[name] = {
            "accuracy": float((predicted == truth).mean()),
            "macro_f1": float(
                f1_score(truth, predicted, average="macro", labels=np.unique(truth), zero_division=0)
            ),
            "n": int(len(truth)),
        }
    return scores


@dataclass
class TrainingResult:
    """Outcome of :func:`fit`: the run folder, the best checkpoint, the metrics log and the time taken."""

    run_dir: Path
    best_checkpoint: str
    metrics_csv: Path
    seconds: float
    epochs: int


RUN_CONFIG_FILE = "run_config.json"
COMPLETED_FILE = "completed.json"


def _resumable(run_dir: Path, run_config: dict[str, Any]) -> bool:
    """Return True when ``run_dir`` contains an interrupted run with the same configuration."""
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = run_dir / RUN_CONFIG_FILE
    if not last.exists():
        return False
    if (run_dir / COMPLETED_FILE).exists():
        logger.info("The run in %s completed earlier; training again from scratch", run_dir)
        return False
    if not saved.exists() or json.loads(saved.read_text()) != run_config:
        logger.warning("The interrupted run in %s used another configuration; training from scratch", run_dir)
        return False
    return True


def fit(
    module: MultiTaskModule,
    datamodule: CatalogueDataModule,
    run_dir: str | Path,
    max_epochs: int = 10,
    patience: int = 3,
    seed: int = 0,
    resume: bool = True,
    precision: str | None = None,
    accelerator: str = "auto",
    limit_train_batches: int | float | None = None,
    enable_progress_bar: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainingResult:
    """Train ``module`` with checkpoints, early stopping on ``val_loss`` and a CSV log under ``run_dir``.

    When ``resume`` is true and ``run_dir`` contains an interrupted run (a
    ``last.ckpt`` without ``completed.json``) with the same configuration
    (epochs, seed, hyperparameters), training continues from it with
    ``ckpt_path``; otherwise the old checkpoints are removed and training
    starts from scratch. After
    training the best checkpoint's weights are loaded back into ``module``.
    ``precision`` defaults to "bf16-mixed" for backbone training on a CPU with
    bfloat16 support and "32-true" otherwise.
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    run_dir = Path(run_dir)
    if precision is None:
        on_cpu = not torch.cuda.is_available() or accelerator == "cpu"
        precision = (
            "bf16-mixed" if module.mode != "heads" and (not on_cpu or bfloat16_supported()) else "32-true"
        )
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor="val_loss", mode="min", save_last=True
    )
    # Each call logs to a new logs/version_<n>/ folder, so a resumed run keeps the earlier epochs' log.
    csv_logger = CSVLogger(save_dir=str(run_dir), name="logs")
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        callbacks=[checkpoint, EarlyStopping(monitor="val_loss", mode="min", patience=patience), *callbacks],
        logger=csv_logger,
        default_root_dir=str(run_dir),
        deterministic=False,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        limit_train_batches=limit_train_batches,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    run_config = {
        "max_epochs": max_epochs,
        "patience": patience,
        "seed": seed,
        "precision": precision,
        "limit_train_batches": limit_train_batches,
        "hparams": json.loads(json.dumps(dict(module.hparams), default=str)),
        "data": {
            "mode": getattr(datamodule, "mode", None),
            "batch_size": getattr(datamodule, "batch_size", None),
            "rows": {name: len(rows) for name, rows in getattr(datamodule, "rows", {}).items()},
        },
    }
    ckpt_path = str(last) if resume and _resumable(run_dir, run_config) else None
    if ckpt_path:
        logger.info("Resuming the interrupted run from %s", last)
    else:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / COMPLETED_FILE).unlink(missing_ok=True)
    write_json(run_dir / RUN_CONFIG_FILE, run_config)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The frozen backbone parts stay in eval mode on purpose (see on_train_epoch_start).
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start
    write_json(run_dir / COMPLETED_FILE, {"epochs": trainer.current_epoch, "seconds": seconds})
    best = checkpoint.best_model_path or str(last)
    if best and Path(best).exists():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or any(not key.startswith(module.frozen_prefixes()) for key in missing):
            raise RuntimeError(
                f"Invalid checkpoint {best}: it does not fit this module (missing keys {missing[:3]}, "
                f"unexpected keys {unexpected[:3]}). Delete {run_dir} to train from scratch."
            )
    return TrainingResult(
        run_dir, best, Path(csv_logger.log_dir) / "metrics.csv", seconds, trainer.current_epoch
    )


@torch.inference_mode()
def predict(
    model: OsoroiModel,
    stage: str,
    inputs: np.ndarray,
    rows: np.ndarray | None = None,
    batch_size: int = 256,
    use_bfloat16: bool | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return (float32 embeddings (N, D), head name -> predicted class indices (N,)) for cached inputs."""
    if use_bfloat16 is None:
        use_bfloat16 = stage != "pooled" and bfloat16_supported()
    rows = np.arange(len(inputs)) if rows is None else np.asarray(rows)
    model.eval()
    embeddings, predictions = [], {name: [] for name in model.head_classes}
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.asarray(inputs[rows[start : start + batch_size]], dtype=np.float32))
        if batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast_context(precision_name(use_bfloat16)):
            embedding, logits = model.forward_from(stage, batch)
        embeddings.append(embedding.float().numpy())
        for name, value in logits.items():
            predictions[name].append(value.argmax(1).numpy())
    return np.concatenate(embeddings), {name: np.concatenate(values) for name, values in predictions.items()}


def read_metrics(run: str | Path) -> pd.DataFrame:
    """Return a run's CSV log with one row per epoch (train and val columns merged).

    ``run`` is a ``metrics.csv`` file or a run folder. For a folder the logs of
    every call (``logs/version_<n>/metrics.csv``) are joined, because a resumed
    run has several. Later versions win for the same epoch.
    """
    run = Path(run)
    if run.is_dir():
        files = sorted(run.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
        if not files:
            raise FileNotFoundError(
                f"No logs/version_*/metrics.csv under {run}; train with osoroi.training.fit."
            )
        log = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    else:
        log = pd.read_csv(run)
    return log.groupby("epoch").last().reset_index()
