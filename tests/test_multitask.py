"""Tests for osoroi.multitask: masked loss, accuracy, label encoding and class weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from osoroi.multitask import (
    MISSING,
    MultiTaskHeads,
    balanced_class_weights,
    class_names_from_frame,
    encode_targets,
    masked_accuracy,
    masked_multitask_loss,
)

HEADS = {"gender": ["Men", "Women"], "season": ["Fall", "Summer", "Winter"]}


def test_heads_output_shapes() -> None:
    heads = MultiTaskHeads(8, HEADS)
    logits = heads(torch.rand(4, 8))
    assert logits["gender"].shape == (4, 2)
    assert logits["season"].shape == (4, 3)


def test_heads_reject_single_class() -> None:
    with pytest.raises(ValueError, match="'gender' has 1 classes"):
        MultiTaskHeads(8, {"gender": ["Men"]})


def test_missing_labels_are_masked_out_of_loss() -> None:
    logits = {"gender": torch.tensor([[2.0, 0.0], [0.0, 5.0]]), "season": torch.zeros(2, 3)}
    targets = torch.tensor([[0, MISSING], [MISSING, MISSING]])
    total, per_head = masked_multitask_loss(logits, targets, list(HEADS))
    expected = torch.nn.functional.cross_entropy(logits["gender"][:1], targets[:1, 0])
    assert torch.allclose(per_head["gender"], expected)
    assert per_head["season"].item() == 0.0
    assert torch.allclose(total, expected)


def test_masked_rows_get_no_gradient() -> None:
    logits = torch.zeros(3, 2, requires_grad=True)
    targets = torch.tensor([[1], [MISSING], [0]])
    total, _ = masked_multitask_loss({"gender": logits}, targets, ["gender"])
    total.backward()
    assert torch.count_nonzero(logits.grad[1]) == 0
    assert torch.count_nonzero(logits.grad[0]) == 2


def test_all_missing_batch_gives_finite_zero_loss() -> None:
    targets = torch.full((4, 2), MISSING)
    total, _ = masked_multitask_loss(
        {"gender": torch.rand(4, 2), "season": torch.rand(4, 3)}, targets, list(HEADS)
    )
    assert torch.isfinite(total)
    assert total.item() == 0.0


def test_class_weights_change_loss() -> None:
    logits = {"gender": torch.tensor([[1.0, 0.0], [1.0, 0.0]])}
    targets = torch.tensor([[0], [1]])
    plain, _ = masked_multitask_loss(logits, targets, ["gender"])
    weighted, _ = masked_multitask_loss(logits, targets, ["gender"], {"gender": torch.tensor([1.0, 3.0])})
    assert weighted > plain


def test_targets_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        masked_multitask_loss({"gender": torch.rand(2, 2)}, torch.zeros(2, 1, dtype=torch.long), list(HEADS))


def test_masked_accuracy_counts_labelled_only() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert masked_accuracy(logits, torch.tensor([0, 0, MISSING])) == (1, 2)


def test_encode_targets_marks_missing_and_unknown() -> None:
    frame = pd.DataFrame({"gender": ["Women", None, "Boys"], "season": ["Fall", "Winter", np.nan]})
    targets = encode_targets(frame, HEADS)
    assert targets.dtype == np.int64
    assert targets.tolist() == [[1, 0], [MISSING, 2], [MISSING, MISSING]]


def test_class_names_drop_rare_classes() -> None:
    frame = pd.DataFrame({"gender": ["Men"] * 3 + ["Women"] * 3 + ["Boys"], "season": ["Fall"] * 7})
    classes = class_names_from_frame(frame, head_names=("gender", "season"), min_count=2)
    assert classes == {"gender": ["Men", "Women"]}


def test_balanced_weights_favour_rare_classes() -> None:
    targets = np.array([0] * 90 + [1] * 10 + [MISSING] * 5)
    weights = balanced_class_weights(targets, n_classes=3, power=1.0)
    assert weights[1] == pytest.approx(9 * weights[0])
    # Average weight of a labelled item is 1.
    assert (weights[0] * 90 + weights[1] * 10) / 100 == pytest.approx(1.0)
    assert weights[2] == pytest.approx(90 * weights[0])


def test_balanced_weights_cap_ratio() -> None:
    targets = np.array([0] * 400 + [1] * 4)
    weights = balanced_class_weights(targets, n_classes=2, power=1.0, max_ratio=10.0)
    assert weights[1] / weights[0] == pytest.approx(10.0)
