"""Figures of notebook 02: sample grid, model comparison, learning curves, confusion matrix, mistakes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from osoroi.fashion_mnist import CLASS_NAMES

# The four upper-body classes that look alike at 28x28 pixels.
UPPER_BODY_CLASSES = ("T-shirt/top", "Pullover", "Coat", "Shirt")


def plot_class_samples(images: np.ndarray, labels: np.ndarray, per_class: int = 8, seed: int = 0) -> Figure:
    """Draw a grid with one row per class of ``per_class`` random images, shape (n, 28, 28)."""
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(
        len(CLASS_NAMES), per_class, figsize=(per_class * 0.9, len(CLASS_NAMES) * 0.95), layout="constrained"
    )
    for label, name in enumerate(CLASS_NAMES):
        candidates = np.flatnonzero(labels == label)
        chosen = rng.choice(candidates, size=min(per_class, len(candidates)), replace=False)
        for column in range(per_class):
            axis = axes[label, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(chosen):
                axis.imshow(images[chosen[column]], cmap="gray_r", vmin=0, vmax=255)
        axes[label, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle("Fashion-MNIST training images, one row per class")
    return figure


def plot_model_comparison(table: pd.DataFrame, time_label: str = "training time (s)") -> Figure:
    """Draw test accuracy and training time side by side for a table with model, test_accuracy, train_seconds."""
    figure, (accuracy_axis, time_axis) = plt.subplots(1, 2, figsize=(11, 3.6))
    colours = plt.get_cmap("tab10")(np.arange(len(table)))
    accuracy_axis.barh(table["model"], table["test_accuracy"] * 100, color=colours)
    low = max(0.0, float(table["test_accuracy"].min()) * 100 - 5)
    accuracy_axis.set_xlim(low, 100)
    accuracy_axis.set_xlabel("test accuracy (%)")
    accuracy_axis.invert_yaxis()
    for position, value in enumerate(table["test_accuracy"] * 100):
        accuracy_axis.text(value + 0.2, position, f"{value:.2f}", va="center", fontsize=9)
    time_axis.barh(table["model"], table["train_seconds"], color=colours)
    time_axis.set_xlabel(time_label)
    time_axis.invert_yaxis()
    time_axis.set_yticklabels([])
    figure.suptitle("Fashion-MNIST official test set: accuracy and training time")
    return figure


def plot_learning_curves(history: pd.DataFrame) -> Figure:
    """Draw loss and accuracy per epoch from :func:`osoroi.baseline_cnn.read_training_log` output."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 3.6))
    epochs = history["epoch"] + 1
    loss_axis.plot(epochs, history["train_loss"], marker="o", label="train (augmented)")
    loss_axis.plot(epochs, history["val_loss"], marker="o", label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("cross-entropy (label smoothing)")
    loss_axis.legend()
    accuracy_axis.plot(epochs, history["train_acc"] * 100, marker="o", label="train (augmented)")
    accuracy_axis.plot(epochs, history["val_acc"] * 100, marker="o", label="validation")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("accuracy (%)")
    accuracy_axis.legend()
    figure.suptitle("Baseline CNN learning curves")
    return figure


def plot_confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> Figure:
    """Draw the row-normalised confusion matrix (% of each true class) of integer labels and predictions."""
    matrix = confusion_matrix(labels, predictions, labels=np.arange(len(CLASS_NAMES)), normalize="true") * 100
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=100)
    for row in range(len(CLASS_NAMES)):
        for column in range(len(CLASS_NAMES)):
            value = matrix[row, column]
            if value >= 0.5:
                colour = "white" if value > 50 else "black"
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", color=colour, fontsize=8)
    axis.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    axis.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.grid(False)
    figure.colorbar(image, ax=axis, label="% of true class")
    axis.set_title("Baseline CNN confusion matrix, official test set")
    return figure


def confusion_table(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Return counts of true class (rows) against predicted class (columns) restricted to ``classes``."""
    indices = [CLASS_NAMES.index(name) for name in classes]
    matrix = confusion_matrix(labels, predictions, labels=np.arange(len(CLASS_NAMES)))
    table = pd.DataFrame(matrix[np.ix_(indices, indices)], index=list(classes), columns=list(classes))
    table.index.name = "true \\ predicted"
    return table


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...] = UPPER_BODY_CLASSES,
    per_pair: int = 4,
) -> Figure:
    """Draw the most confident mistakes between the ordered pairs of ``classes``.

    Each row is one (true, predicted) pair, the six most frequent pairs first, with up to
    ``per_pair`` images titled with the predicted probability. ``probabilities`` has shape (n, 10).
    """
    predictions = probabilities.argmax(axis=1)
    indices = [CLASS_NAMES.index(name) for name in classes]
    rows = []
    for true in indices:
        for predicted in indices:
            if true == predicted:
                continue
            wrong = np.flatnonzero((labels == true) & (predictions == predicted))
            if len(wrong):
                order = np.argsort(-probabilities[wrong, predicted], kind="stable")
                rows.append((true, predicted, wrong[order[:per_pair]]))
    rows.sort(key=lambda row: -np.sum((labels == row[0]) & (predictions == row[1])))
    rows = rows[:6]
    figure, axes = plt.subplots(
        max(len(rows), 1), per_pair, figsize=(per_pair * 1.6, max(len(rows), 1) * 1.9), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        axis.grid(False)
    for row, (true, predicted, examples) in enumerate(rows):
        count = int(np.sum((labels == true) & (predictions == predicted)))
        axes[row, 0].set_ylabel(
            f"{CLASS_NAMES[true]}\nas {CLASS_NAMES[predicted]}\n({count})", rotation=0, ha="right", va="center",
            fontsize=9,
        )
        for column, index in enumerate(examples):
            axes[row, column].imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
            axes[row, column].set_title(f"p={probabilities[index, predicted]:.2f}", fontsize=8)
    figure.suptitle("Most confident mistakes among upper-body classes (true as predicted, count)")
    return figure
