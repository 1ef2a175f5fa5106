"""Classification, retrieval and calibration metrics as plain functions of arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score


def _as_1d(values: Sequence | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must have shape (n,), got shape {array.shape}.")
    return array


def _check_same_length(*arrays: tuple[str, np.ndarray]) -> None:
    lengths = {name: len(array) for name, array in arrays}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Inputs have different lengths: {lengths}.")


def accuracy(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """Return the share of positions where ``y_pred`` equals ``y_true`` (NaN for empty input)."""
    truth, predicted = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(("y_true", truth), ("y_pred", predicted))
    return float(np.mean(truth == predicted)) if len(truth) else float("nan")


def macro_f1(
    y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray, labels: Sequence | None = None
) -> float:
    """Return the unweighted mean of per-class F1 scores (scikit-learn's ``f1_score(average="macro")``).

    ``labels`` fixes the classes averaged over (default: those in ``y_true`` or ``y_pred``); a
    class with no true and no predicted item scores 0.
    """
    truth, predicted = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(("y_true", truth), ("y_pred", predicted))
    if not len(truth):
        return float("nan")
    return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))


def top_k_accuracy(y_true: Sequence | np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Return the share of rows whose true class index is among the ``k`` highest scores.

    Args:
        y_true: int ndarray of shape (n,) of class indices in ``[0, n_classes)``.
        scores: ndarray of shape (n, n_classes) of probabilities or logits.
        k: how many top classes count; ``k >= n_classes`` gives 1.0.

    Ties at the k-th score count as a hit only for the classes that ``argsort`` puts first.
    """
    truth = _as_1d(y_true, "y_true").astype(np.int64)
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(scores) != len(truth):
        raise ValueError(f"scores must have shape ({len(truth)}, n_classes), got shape {scores.shape}.")
    if k < 1:
        raise ValueError(f"Invalid k={k!r}: use an integer of at least 1.")
    if not len(truth):
        return float("nan")
    if truth.min() < 0 or truth.max() >= scores.shape[1]:
        raise ValueError(f"Invalid y_true: it contains class indices outside [0, {scores.shape[1]}).")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == truth[:, None]).any(axis=1)))


def precision_at_k(query_labels: Sequence | np.ndarray, neighbour_labels: np.ndarray) -> float:
    """Return the mean share of each query's neighbours that have the query's label.

    Args:
        query_labels: ndarray of shape (n,), the label of each query.
        neighbour_labels: ndarray of shape (n, k), the labels of each query's k retrieved
            items, most similar first.

    For a label pair (articleType and baseColour) pass strings joined with a separator.
    """
    queries = _as_1d(query_labels, "query_labels")
    neighbours = np.asarray(neighbour_labels)
    if neighbours.ndim != 2 or len(neighbours) != len(queries):
        raise ValueError(f"neighbour_labels must have shape ({len(queries)}, k), got shape {neighbours.shape}.")
    if not len(queries) or neighbours.shape[1] == 0:
        return float("nan")
    return float(np.mean(neighbours == queries[:, None]))


@dataclass
class ReliabilityBins:
    """Calibration of confidence scores in equal-width bins over [0, 1].

    Attributes:
        edges: ndarray of shape (n_bins + 1,), the bin edges.
        counts: int ndarray of shape (n_bins,), predictions per bin.
        confidence: ndarray of shape (n_bins,), mean confidence per bin (NaN for an empty bin).
        accuracy: ndarray of shape (n_bins,), share correct per bin (NaN for an empty bin).
        ece: expected calibration error, the count-weighted mean of
            ``|accuracy - confidence|`` over the bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


def reliability_bins(confidences: Sequence | np.ndarray, correct: Sequence | np.ndarray, n_bins: int = 10) -> ReliabilityBins:
    """Bin predictions by confidence and return each bin's accuracy, mean confidence and the ECE.

    Bins are ``[0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]``: the last bin includes 1.0.
    """
    confidence = _as_1d(confidences, "confidences").astype(np.float64)
    hits = _as_1d(correct, "correct").astype(bool)
    _check_same_length(("confidences", confidence), ("correct", hits))
    if n_bins < 1:
        raise ValueError(f"Invalid n_bins={n_bins!r}: use an integer of at least 1.")
    if len(confidence) and (confidence.min() < 0 or confidence.max() > 1):
        raise ValueError("confidences must lie in [0, 1].")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.floor(confidence * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        bin_accuracy = np.bincount(bins, weights=hits.astype(np.float64), minlength=n_bins) / counts
    filled = counts > 0
    if len(confidence):
        ece = float(np.sum(counts[filled] / len(confidence) * np.abs(bin_accuracy[filled] - mean_confidence[filled])))
    else:
        ece = float("nan")
    return ReliabilityBins(edges, counts, mean_confidence, bin_accuracy, ece)


def expected_calibration_error(confidences: Sequence | np.ndarray, correct: Sequence | np.ndarray, n_bins: int = 10) -> float:
    """Return the expected calibration error of :func:`reliability_bins` with ``n_bins`` bins."""
    return reliability_bins(confidences, correct, n_bins).ece
