"""Tests for osoroi.metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osoroi.metrics import (
    accuracy,
    expected_calibration_error,
    macro_f1,
    precision_at_k,
    reliability_bins,
    top_k_accuracy,
)


def test_accuracy_counts_equal_positions() -> None:
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 0.5


def test_accuracy_of_empty_input_is_nan() -> None:
    assert math.isnan(accuracy([], []))


def test_accuracy_rejects_different_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        accuracy([1, 2], [1])


def test_macro_f1_matches_hand_computation() -> None:
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "a", "b"]
    # a: TP 2, FP 1, FN 0 -> precision 2/3, recall 1, F1 0.8.
    # b: TP 1, FP 1, FN 1 -> precision 1/2, recall 1/2, F1 0.5.
    # c: TP 0 -> F1 0.
    assert macro_f1(y_true, y_pred) == pytest.approx((0.8 + 0.5 + 0.0) / 3)


def test_macro_f1_absent_label_scores_zero() -> None:
    assert macro_f1([0, 1], [0, 1], labels=[0, 1, 2]) == pytest.approx(2 / 3)


def test_top_k_accuracy_matches_hand_computation() -> None:
    scores = np.array(
        [
            [0.5, 0.3, 0.2],  # true 1: second best
            [0.1, 0.2, 0.7],  # true 0: third
            [0.6, 0.3, 0.1],  # true 0: best
            [0.2, 0.5, 0.3],  # true 2: second best
        ]
    )
    y_true = [1, 0, 0, 2]

    assert top_k_accuracy(y_true, scores, k=1) == 0.25
    assert top_k_accuracy(y_true, scores, k=2) == 0.75
    assert top_k_accuracy(y_true, scores, k=3) == 1.0
    assert top_k_accuracy(y_true, scores, k=5) == 1.0


def test_top_k_accuracy_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="outside"):
        top_k_accuracy([3], np.ones((1, 3)), k=1)


def test_precision_at_k_matches_hand_computation() -> None:
    queries = np.array(["Shirts", "Watches"])
    neighbours = np.array([["Shirts", "Tshirts", "Shirts", "Shirts"], ["Shirts", "Shirts", "Shirts", "Watches"]])

    assert precision_at_k(queries, neighbours) == pytest.approx((3 / 4 + 1 / 4) / 2)


def test_precision_at_k_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, k\)"):
        precision_at_k(["a", "b"], np.array(["a", "b"]))


def test_reliability_bins_match_hand_computation() -> None:
    confidences = [0.1, 0.3, 0.35, 0.8, 0.9, 1.0]
    correct = [False, True, False, True, True, False]
    bins = reliability_bins(confidences, correct, n_bins=2)

    # Bin [0, 0.5): confidences 0.1, 0.3, 0.35 (mean 0.25), one correct of three.
    # Bin [0.5, 1]: confidences 0.8, 0.9, 1.0 (mean 0.9), two correct of three.
    assert bins.counts.tolist() == [3, 3]
    assert bins.confidence == pytest.approx([0.25, 0.9])
    assert bins.accuracy == pytest.approx([1 / 3, 2 / 3])
    assert bins.ece == pytest.approx(0.5 * abs(1 / 3 - 0.25) + 0.5 * abs(2 / 3 - 0.9))
    assert bins.edges == pytest.approx([0.0, 0.5, 1.0])


def test_reliability_bins_leave_empty_bins_nan() -> None:
    bins = reliability_bins([0.95, 0.95], [True, True], n_bins=10)

    assert bins.counts.sum() == 2
    assert bins.counts[9] == 2
    assert np.isnan(bins.accuracy[0])
    assert bins.ece == pytest.approx(0.05)


def test_expected_calibration_error_of_perfect_calibration_is_zero() -> None:
    assert expected_calibration_error([1.0, 1.0, 0.0], [True, True, False], n_bins=4) == pytest.approx(0.0)


def test_reliability_bins_reject_confidence_above_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins([1.2], [True])
