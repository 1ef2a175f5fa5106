"""Tests for osoroi.evaluation and osoroi.photos on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osoroi.evaluation import (
    frequent_confusion,
    head_evaluation,
    head_metrics,
    label_pairs,
    nearest_neighbours,
    retrieval_metrics,
    worst_errors,
)
from osoroi.photos import PHOTO_CLASS_ARTICLE_TYPES, photo_hits

CLASSES = ["Shirts", "Tshirts", "Watches"]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "articleType": ["Shirts", "Tshirts", "Tshirts", None, "Hat"],
            "image_path": [f"/images/{i}.jpg" for i in range(1, 6)],
        }
    )


@pytest.fixture
def probabilities() -> np.ndarray:
    return np.array(
        [
            [0.7, 0.2, 0.1],  # Shirts, right
            [0.9, 0.05, 0.05],  # Tshirts predicted Shirts at 0.9: the worst error
            [0.3, 0.6, 0.1],  # Tshirts, right
            [0.2, 0.2, 0.6],  # missing label: skipped
            [0.1, 0.1, 0.8],  # class unknown to the head: skipped
        ]
    )


def test_head_evaluation_skips_unknown_labels(frame: pd.DataFrame, probabilities: np.ndarray) -> None:
    evaluation = head_evaluation(frame, probabilities, CLASSES, "articleType")

    assert evaluation.rows.tolist() == [0, 1, 2]
    assert evaluation.y_true.tolist() == [0, 1, 1]
    assert evaluation.y_pred.tolist() == [0, 0, 1]
    assert evaluation.skipped == 2


def test_head_metrics_match_hand_computation(frame: pd.DataFrame, probabilities: np.ndarray) -> None:
    metrics = head_metrics(head_evaluation(frame, probabilities, CLASSES, "articleType"), n_bins=10)

    assert metrics["n"] == 3
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    # Shirts: P 1/2, R 1, F1 2/3. Tshirts: P 1, R 1/2, F1 2/3. Watches: F1 0.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert metrics["top5_accuracy"] == 1.0
    # Bins: 0.7 right, 0.9 wrong, 0.6 right -> (|1-0.7| + |0-0.9| + |1-0.6|) / 3.
    assert metrics["ece"] == pytest.approx((0.3 + 0.9 + 0.4) / 3)


def test_frequent_confusion_puts_rare_predictions_in_other() -> None:
    evaluation = head_evaluation(
        pd.DataFrame({"articleType": ["Tshirts", "Tshirts", "Shirts", "Watches"]}),
        np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]),
        CLASSES,
        "articleType",
    )
    matrix = frequent_confusion(evaluation, n_classes=2)

    assert matrix.index.tolist() == ["Tshirts", "Shirts"]
    assert matrix.columns.tolist() == ["Tshirts", "Shirts", "other"]
    assert matrix.loc["Tshirts"].tolist() == [1, 0, 1]
    assert matrix.loc["Shirts"].tolist() == [0, 1, 0]


def test_worst_errors_sorted_by_confidence(frame: pd.DataFrame, probabilities: np.ndarray) -> None:
    errors = worst_errors(frame, head_evaluation(frame, probabilities, CLASSES, "articleType"), n=5)

    assert errors["id"].tolist() == [2]
    assert errors.loc[0, "true"] == "Tshirts"
    assert errors.loc[0, "predicted"] == "Shirts"
    assert errors.loc[0, "confidence"] == pytest.approx(0.9)


def test_nearest_neighbours_orders_by_cosine() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    neighbours = nearest_neighbours(np.array([[2.0, 0.1], [0.0, 3.0]]), gallery, k=2, chunk=1)

    assert neighbours.tolist() == [[0, 2], [1, 2]]


def test_retrieval_metrics_match_hand_computation() -> None:
    gallery = pd.DataFrame({"articleType": ["Shirts", "Shirts", "Watches"], "baseColour": ["Blue", "Red", "Blue"]})
    queries = pd.DataFrame({"articleType": ["Shirts"], "baseColour": ["Blue"]})
    gallery_vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    metrics = retrieval_metrics(np.array([[1.0, 0.05]]), queries, gallery_vectors, gallery, k=2)

    # The two nearest are both Shirts; only the first is also Blue.
    assert metrics["precision@2_articleType"] == 1.0
    assert metrics["precision@2_articleType+baseColour"] == 0.5


def test_label_pairs_leave_missing_empty() -> None:
    pairs = label_pairs(pd.DataFrame({"articleType": ["Shirts", "Shirts"], "baseColour": ["Blue", None]}))
    assert pairs.tolist() == ["Shirts / Blue", ""]


def test_photo_hits_use_class_sets() -> None:
    hits = photo_hits(["pants", "pants", "hat"], [["Jeans"], ["Shirts"], ["Shirts", "Caps"]])
    assert hits.tolist() == [True, False, True]


def test_photo_mapping_covers_ten_classes() -> None:
    assert sorted(PHOTO_CLASS_ARTICLE_TYPES) == sorted(
        ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"]
    )
