"""Recipes of notebook 03: train a configuration, score it on a split and plot the comparison."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from osoroi.model import OsoroiModel
from osoroi.training import (
    MODES,
    CatalogueDataModule,
    MultiTaskModule,
    fit,
    head_scores,
    predict,
    read_metrics,
)

logger = logging.getLogger(__name__)


def train_recipe(
    model: OsoroiModel,
    catalogue: pd.DataFrame,
    mode: str,
    features: np.ndarray,
    run_dir: str | Path,
    max_epochs: int,
    class_weight_power: float | None = 0.5,
    train_limit: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    copy_model: bool = True,
    **module_options: Any,
) -> dict[str, Any]:
    """Train ``model`` (a copy unless ``copy_model`` is false) in ``mode`` and score it on the val split.

    ``class_weight_power`` sets the class weights (see
    :func:`osoroi.multitask.balanced_class_weights`); None trains with plain cross-entropy.
    Returns a dictionary with the trained ``model``, the ``datamodule``, the
    training ``result``, the ``val`` scores per head and ``seconds``.
    """
    model = copy.deepcopy(model) if copy_model else model
    datamodule = CatalogueDataModule(
        catalogue,
        model.head_classes,
        mode,
        features=features,
        preprocessing=model.preprocessing,
        batch_size=batch_size,
        seed=seed,
        train_limit=train_limit,
    )
    weights = None if class_weight_power is None else datamodule.class_weights(class_weight_power)
    module = MultiTaskModule(model, mode, class_weights=weights, **module_options)
    result = fit(module, datamodule, run_dir, max_epochs=max_epochs, seed=seed)
    scores = score_split(model, datamodule, features, "val")
    return {
        "model": model,
        "datamodule": datamodule,
        "result": result,
        "val": scores,
        "seconds": result.seconds,
    }


def score_split(
    model: OsoroiModel, datamodule: CatalogueDataModule, features: np.ndarray, split: str
) -> dict[str, dict[str, float]]:
    """Return accuracy and macro-F1 per head of ``model`` on one split of ``datamodule``."""
    rows = datamodule.rows[split]
    _, predictions = predict(model, MODES[datamodule.mode], features, rows)
    return head_scores(predictions, datamodule.targets[rows], datamodule.head_names)


def scores_table(results: Mapping[str, Mapping[str, Any]], metric: str = "accuracy") -> pd.DataFrame:
    """Return a table with one row per recipe: ``metric`` per head on val and the training seconds."""
    rows = []
    for name, result in results.items():
        row = {"recipe": name, **{head: values[metric] for head, values in result["val"].items()}}
        row["train_seconds"] = result["seconds"] + result.get("extract_seconds", 0.0)
        rows.append(row)
    return pd.DataFrame(rows).set_index("recipe")


def plot_accuracy_against_time(
    table: pd.DataFrame, heads: Sequence[str] = ("articleType", "baseColour")
) -> Figure:
    """Plot val accuracy of ``heads`` against seconds (extraction plus training) per recipe."""
    figure, axes = plt.subplots(1, len(heads), figsize=(5 * len(heads), 3.8), squeeze=False)
    for axis, head in zip(axes[0], heads, strict=True):
        axis.scatter(table["train_seconds"], table[head])
        for recipe, row in table.iterrows():
            axis.annotate(
                str(recipe),
                (row["train_seconds"], row[head]),
                fontsize=8,
                xytext=(4, 2),
                textcoords="offset points",
            )
        axis.set_xlabel("seconds on this machine (extraction + training)")
        axis.set_ylabel(f"val accuracy, {head}")
        axis.set_title(head)
    figure.tight_layout()
    return figure


def plot_training_curves(run_dir: str | Path, heads: Sequence[str]) -> Figure:
    """Plot train and val loss, and val accuracy per head, per epoch of one run."""
    log = read_metrics(run_dir)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    if "train_loss_epoch" in log:
        loss_axis.plot(log["epoch"], log["train_loss_epoch"], marker="o", label="train_loss")
    loss_axis.plot(log["epoch"], log["val_loss"], marker="o", label="val_loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("summed cross-entropy over heads")
    loss_axis.legend()
    for head in heads:
        accuracy_axis.plot(log["epoch"], log[f"val_acc_{head}"], marker="o", label=head)
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("val accuracy")
    accuracy_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Return (function(*args, **kwargs), seconds it took)."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def set_threads(threads: int) -> int:
    """Set the number of PyTorch CPU threads (0 keeps the default) and return the number in use."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
