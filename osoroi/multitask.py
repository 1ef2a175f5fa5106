"""One classification head per label on a shared feature, a masked multi-task loss and label encoding.

Targets are integer class indices per head, with :data:`MISSING` (-1) where
an item has no label for that head or its class was dropped as too rare.
Those entries are masked out of the loss and of the accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

MISSING = -1

HEAD_NAMES = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")


class MultiTaskHeads(nn.Module):
    """A linear classifier per head on a shared feature of size ``in_features``, with dropout before each."""

    def __init__(
        self, in_features: int, head_classes: Mapping[str, Sequence[str]], dropout: float = 0.2
    ) -> None:
        super().__init__()
        if not head_classes:
            raise ValueError("head_classes is empty: give at least one head name with its class names.")
        for name, classes in head_classes.items():
            if len(classes) < 2:
                raise ValueError(f"Head {name!r} has {len(classes)} classes; a classifier needs at least 2.")
        self.in_features = in_features
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(in_features, len(classes)) for name, classes in head_classes.items()}
        )

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return logits of shape (N, n_classes) per head for features of shape (N, in_features)."""
        features = self.dropout(features)
        return {name: head(features) for name, head in self.heads.items()}


def masked_multitask_loss(
    logits: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    head_names: Sequence[str],
    class_weights: Mapping[str, torch.Tensor] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the sum of per-head cross-entropies over labelled entries, and each head's loss.

    Args:
        logits: head name -> tensor of shape (N, n_classes).
        targets: long tensor of shape (N, n_heads), columns in ``head_names`` order, -1 where missing.
        head_names: the heads, in the column order of ``targets``.
        class_weights: optional head name -> float tensor of shape (n_classes,).
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    A head with no labelled entry in the batch contributes 0 (and stays out of the gradient).
    """
    if targets.ndim != 2 or targets.shape[1] != len(head_names):
        raise ValueError(
            f"targets has shape {tuple(targets.shape)}; expected (N, {len(head_names)}) for {head_names}."
        )
    per_head: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=targets.device)
    for column, name in enumerate(head_names):
        target = targets[:, column]
        labelled = target != MISSING
        if not bool(labelled.any()):
            per_head[name] = torch.zeros((), device=targets.device)
            continue
        weight = None if class_weights is None else class_weights.get(name)
        if weight is not None:
            weight = weight.to(device=logits[name].device, dtype=logits[name].dtype)
        loss = F.cross_entropy(
            logits[name][labelled].float(),
            target[labelled],
            weight=None if weight is None else weight.float(),
            label_smoothing=label_smoothing,
        )
        per_head[name] = loss
        total = total + loss
    return total, per_head


def masked_accuracy(logits: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """Return (correct, labelled) counts for one head, ignoring entries equal to -1."""
    labelled = target != MISSING
    correct = (logits.argmax(dim=1) == target) & labelled
    return int(correct.sum()), int(labelled.sum())


def class_names_from_frame(
    frame: pd.DataFrame, head_names: Sequence[str] = HEAD_NAMES, min_count: int = 10
) -> dict[str, list[str]]:
    """Return the sorted class names per head that occur at least ``min_count`` times in ``frame``.

    Classes rarer than ``min_count`` are dropped: their items count as unlabelled for that head.
    """
    missing_columns = [name for name in head_names if name not in frame.columns]
    if missing_columns:
        raise KeyError(
            f"The catalogue frame has no column(s) {missing_columns}; expected label columns {head_names}."
        )
    head_classes = {}
    for name in head_names:
        counts = frame[name].dropna().astype(str).value_counts()
        kept = sorted(counts[counts >= min_count].index)
        if len(kept) >= 2:
            head_classes[name] = kept
    return head_classes


def encode_targets(frame: pd.DataFrame, head_classes: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Return an int64 array of shape (len(frame), n_heads) of class indices, -1 for missing or dropped."""
    columns = []
    for name, classes in head_classes.items():
        lookup = {label: index for index, label in enumerate(classes)}
        values = frame[name].astype(object).where(frame[name].notna(), None)
        columns.append(np.array([lookup.get(str(v), MISSING) if v is not None else MISSING for v in values]))
    return np.stack(columns, axis=1).astype(np.int64)


def balanced_class_weights(
    targets: np.ndarray, n_classes: int, power: float = 0.5, max_ratio: float | None = None
) -> torch.Tensor:
    """Return weights proportional to ``count ** -power`` per class, scaled to mean 1 over labelled items.

    ``power=1`` is the usual "balanced" weighting, ``power=0.5`` a softer one
    (inverse square root of frequency). ``max_ratio`` caps the ratio of the
    largest weight to the smallest. Classes absent from ``targets`` get the
    weight of a class with one item.
    """
    labelled = targets[targets != MISSING]
    counts = np.bincount(labelled, minlength=n_classes).astype(np.float64)
    weights = np.power(np.maximum(counts, 1.0), -power)
    if max_ratio is not None:
        weights = np.minimum(weights, weights.min() * max_ratio)
    # Scale so that the average weight of a labelled training item is 1.
    mean_item_weight = (weights * counts).sum() / max(counts.sum(), 1.0)
    if not math.isfinite(mean_item_weight) or mean_item_weight <= 0:
        mean_item_weight = 1.0
    return torch.tensor(weights / mean_item_weight, dtype=torch.float32)
