"""Evaluation of the model on the catalogue test split, on retrieval and on real photos (notebook 04).

Each function takes arrays or frames and returns plain dictionaries or frames,
so the notebook only calls them and shows the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from sklearn.metrics import classification_report, confusion_matrix

from osoroi.atomic import atomic_open
from osoroi.config import derived_dir
from osoroi.index import EmbeddingIndex, index_from_rows, normalize_rows
from osoroi.inference import (
    InferenceOutputs,
    autocast_context,
    bfloat16_supported,
    embed_images,
    precision_name,
)
from osoroi.metrics import accuracy, macro_f1, precision_at_k, reliability_bins, top_k_accuracy
from osoroi.photos import PHOTO_CLASS_ARTICLE_TYPES, photo_hits

logger = logging.getLogger(__name__)

PAIR_SEPARATOR = " / "


# --- Model and inputs ------------------------------------------------------------------------


def load_evaluation_model(smoke: bool, seed: int = 0, allow_untrained: bool = False, demo_items: int = 60) -> Any:
    """Return the model to evaluate: the demo model in smoke mode, else the trained model from notebook 03.

    With ``allow_untrained=True`` a missing trained model is replaced by an untrained
    :func:`osoroi.model.build_model` (with a warning), which checks the full code path only.
    """
    if smoke:
        from osoroi.demo import build_demo_model_and_index

        model, _ = build_demo_model_and_index(n_items=demo_items, seed=seed)
        return model
    from osoroi.model import ModelNotFoundError, build_model, load_model

    try:
        return load_model()
    except ModelNotFoundError:
        if not allow_untrained:
            raise
        warnings.warn(
            "No trained model found, so this run evaluates an untrained build_model(): its head metrics "
            "are chance level. Run notebooks/03_transfer_learning.ipynb first for real numbers.",
            stacklevel=2,
        )
        torch.manual_seed(seed)
        return build_model()


def catalogue_subset(catalogue: pd.DataFrame, n_test: int, seed: int = 0) -> pd.DataFrame:
    """Return ``n_test`` test items and ``2 * n_test`` train or val items, drawn with ``seed``, in id order."""
    test = catalogue[catalogue["split"] == "test"]
    gallery = catalogue[catalogue["split"] != "test"]
    parts = [test.sample(n=min(n_test, len(test)), random_state=seed),
             gallery.sample(n=min(2 * n_test, len(gallery)), random_state=seed)]
    return pd.concat(parts).sort_values("id").reset_index(drop=True)


def catalogue_outputs(
    model: Any, catalogue: pd.DataFrame, batch_size: int = 64, precision: str = "float32", cache: bool = True
) -> InferenceOutputs:
    """Return the model's embeddings and probabilities for every row of ``catalogue`` (cached on disk).

    When notebook 03 saved this model's embeddings of exactly these images, only the
    heads run on them; otherwise the whole model runs over the images.
    The cache file under ``derived_dir("evaluation")`` is keyed by the model fingerprint,
    the precision and the item ids, so a retrained model never reads stale outputs.
    """
    key = _outputs_key(model.fingerprint, precision, catalogue["id"].tolist())
    path = derived_dir("evaluation") / f"outputs-{key}.npz"
    if cache and path.is_file():
        logger.info("Reusing model outputs %s", path.name)
        with np.load(path, allow_pickle=False) as data:
            return InferenceOutputs(
                embeddings=data["embeddings"].astype(np.float32),
                probabilities={name: data[f"probabilities_{name}"] for name in model.head_classes},
                valid=data["valid"],
                pixel_hashes=data["pixel_hashes"],
                errors={int(row): text for row, text in json.loads(str(data["errors"])).items()},
            )
    paths = catalogue["image_path"].tolist()
    saved = saved_model_embeddings(model, paths)
    if saved is not None:
        outputs = outputs_from_embeddings(model, paths, saved, batch_size=max(batch_size, 256))
    else:
        outputs = embed_images(model, paths, batch_size=batch_size, precision=precision, channels_last=True)
    if cache:
        arrays = {
            "embeddings": outputs.embeddings.astype(np.float16),
            "valid": outputs.valid,
            "pixel_hashes": outputs.pixel_hashes,
            "errors": np.asarray(json.dumps({str(row): text for row, text in outputs.errors.items()})),
        }
        arrays.update({f"probabilities_{name}": value for name, value in outputs.probabilities.items()})
        with atomic_open(path, "wb") as stream:
            np.savez(stream, **arrays)
    return outputs


def saved_model_embeddings(model: Any, paths: Sequence[str]) -> np.ndarray | None:
    """Return the float32 embeddings (n, d) that notebook 03 saved for ``model`` and ``paths``, or None."""
    if not hasattr(model, "backbone"):
        return None
    from osoroi.embeddings import load_model_embeddings

    saved = load_model_embeddings(model, paths)
    if saved is None:
        return None
    logger.info("Reusing the %d embeddings saved with the model", len(saved))
    return np.asarray(saved, dtype=np.float32)


def outputs_from_embeddings(
    model: Any, paths: Sequence[str], embeddings: np.ndarray, batch_size: int = 256
) -> InferenceOutputs:
    """Return model outputs for ``paths`` from their saved embeddings (n, d): the heads run, the backbone does not.

    The images are still decoded once, for the pixel hashes that recognise a query's own item.
    """
    from osoroi.images import InvalidImageError, load_image
    from osoroi.index import pixel_hash

    was_training = model.training
    model.eval()
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in model.head_classes}
    try:
        with torch.inference_mode():
            for start in range(0, len(embeddings), batch_size):
                batch = torch.from_numpy(embeddings[start:start + batch_size])
                _, logits = model.forward_from("pooled", batch)
                for name, value in logits.items():
                    probabilities[name].append(value.float().softmax(dim=1).numpy())
    finally:
        model.train(was_training)

    hashes = np.zeros(len(paths), dtype=np.int64)
    errors: dict[int, str] = {}
    for row, path in enumerate(tqdm(paths, desc="hashing images", unit="image")):
        try:
            hashes[row] = pixel_hash(load_image(path))
        except InvalidImageError as error:
            errors[row] = str(error)
    valid = np.ones(len(paths), dtype=bool)
    valid[list(errors)] = False
    return InferenceOutputs(
        embeddings=embeddings,
        probabilities={name: np.concatenate(values) for name, values in probabilities.items()},
        valid=valid,
        pixel_hashes=hashes,
        errors=errors,
    )


def raw_backbone_features(model: Any, paths: Sequence[str]) -> np.ndarray:
    """Return float32 pooled features of shape (n, d) of the pretrained backbone ``model`` was built from.

    When notebook 03 cached the frozen trunk of ``paths``, only the pretrained tail runs on it;
    otherwise the pooled features come from :func:`osoroi.embeddings.cached_features` under
    ``derived_dir("embeddings")``, extracted there when missing.
    """
    from osoroi.embeddings import cache_key, cached_features
    from osoroi.model import build_model

    fingerprint = model.fingerprint
    raw = build_model(
        backbone=fingerprint["backbone"],
        weights=fingerprint["weights"],
        resolution=int(fingerprint["resolution"]),
        head_classes=model.head_classes,
        tail_blocks=model.backbone.tail_blocks,
    )
    trunk_key = cache_key(raw.fingerprint, "trunk", list(paths), raw.backbone.tail_blocks)
    if not (derived_dir("embeddings") / f"{trunk_key}.npy").exists():
        return np.asarray(cached_features(raw, list(paths), stage="pooled").features, dtype=np.float32)

    # Notebook 03 cached the frozen trunk of these images: only the pretrained tail runs.
    trunk = cached_features(raw, list(paths), stage="trunk").features
    raw.eval()
    pooled = []
    with torch.inference_mode(), autocast_context(precision_name(bfloat16_supported())):
        for start in tqdm(range(0, len(trunk), 256), desc="pretrained tail", unit="batch"):
            batch = torch.from_numpy(np.asarray(trunk[start:start + 256], dtype=np.float32))
            pooled.append(raw.backbone.forward_tail(batch).float().numpy())
    return np.concatenate(pooled)


def _outputs_key(fingerprint: Mapping[str, str], precision: str, ids: Sequence[int]) -> str:
    digest = hashlib.sha256(json.dumps([dict(fingerprint), precision, list(map(int, ids))]).encode())
    return digest.hexdigest()[:16]


def index_from_outputs(model: Any, catalogue: pd.DataFrame, outputs: InferenceOutputs) -> EmbeddingIndex:
    """Return the embedding index over the rows of ``catalogue`` whose images decoded."""
    rows = catalogue[outputs.valid]
    return index_from_rows(model, rows, outputs.embeddings[outputs.valid], outputs.pixel_hashes[outputs.valid])


# --- Classification heads --------------------------------------------------------------------


@dataclass
class HeadEvaluation:
    """Predictions of one head on the labelled items of a split.

    Attributes:
        classes: class names in logit order.
        rows: positions (into the evaluated frame) of the items whose label is one of ``classes``.
        y_true: int ndarray of shape (n,), true class indices.
        probabilities: ndarray of shape (n, n_classes).
        skipped: items left out because their label is missing or not one of ``classes``.
    """

    classes: list[str]
    rows: np.ndarray
    y_true: np.ndarray
    probabilities: np.ndarray
    skipped: int

    @property
    def y_pred(self) -> np.ndarray:
        """Predicted class indices, shape (n,)."""
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class, shape (n,)."""
        return self.probabilities.max(axis=1)


def head_evaluation(frame: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[str], head: str) -> HeadEvaluation:
    """Pair ``frame[head]`` labels with the head's ``probabilities`` of shape (len(frame), n_classes)."""
    lookup = {label: position for position, label in enumerate(classes)}
    labels = frame[head].astype(object).where(frame[head].notna(), None).tolist()
    y_all = np.array([lookup.get(str(label), -1) if label is not None else -1 for label in labels], dtype=np.int64)
    rows = np.flatnonzero(y_all >= 0)
    return HeadEvaluation(list(classes), rows, y_all[rows], np.asarray(probabilities)[rows], int((y_all < 0).sum()))


def head_metrics(evaluation: HeadEvaluation, n_bins: int = 10) -> dict[str, Any]:
    """Return accuracy, macro-F1 (over the head's classes), top-5 accuracy, ECE and counts for one head."""
    bins = reliability_bins(evaluation.confidence, evaluation.y_pred == evaluation.y_true, n_bins=n_bins)
    return {
        "n": int(len(evaluation.y_true)),
        "skipped": evaluation.skipped,
        "n_classes": len(evaluation.classes),
        "accuracy": accuracy(evaluation.y_true, evaluation.y_pred),
        "macro_f1": macro_f1(evaluation.y_true, evaluation.y_pred, labels=list(range(len(evaluation.classes)))),
        "top5_accuracy": top_k_accuracy(evaluation.y_true, evaluation.probabilities, k=5),
        "ece": bins.ece,
    }


def per_class_report(evaluation: HeadEvaluation) -> pd.DataFrame:
    """Return precision, recall, F1 and support per class (scikit-learn), sorted by support."""
    report = classification_report(
        evaluation.y_true,
        evaluation.y_pred,
        labels=list(range(len(evaluation.classes))),
        target_names=evaluation.classes,
        output_dict=True,
        zero_division=0,
    )
    table = pd.DataFrame({name: report[name] for name in evaluation.classes}).T
    table["support"] = table["support"].astype(int)
    return table.sort_values("support", ascending=False)


def frequent_confusion(evaluation: HeadEvaluation, n_classes: int = 15) -> pd.DataFrame:
    """Return the confusion matrix (rows true, columns predicted) of the ``n_classes`` most frequent classes.

    Items of other true classes are left out. Predictions of another class are counted
    in an extra column named "other".
    """
    counts = np.bincount(evaluation.y_true, minlength=len(evaluation.classes))
    frequent = [int(i) for i in np.argsort(-counts, kind="stable")[:n_classes] if counts[i] > 0]
    keep = np.isin(evaluation.y_true, frequent)
    other = len(evaluation.classes)
    predicted = np.where(np.isin(evaluation.y_pred, frequent), evaluation.y_pred, other)
    matrix = confusion_matrix(evaluation.y_true[keep], predicted[keep], labels=[*frequent, other])[:-1]
    names = [evaluation.classes[i] for i in frequent]
    return pd.DataFrame(matrix, index=names, columns=[*names, "other"])


def worst_errors(frame: pd.DataFrame, evaluation: HeadEvaluation, n: int = 12) -> pd.DataFrame:
    """Return the ``n`` most confident wrong predictions with the item id, image path, truth and prediction."""
    wrong = np.flatnonzero(evaluation.y_pred != evaluation.y_true)
    order = wrong[np.argsort(-evaluation.confidence[wrong], kind="stable")][:n]
    rows = frame.iloc[evaluation.rows[order]]
    return pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "true": [evaluation.classes[i] for i in evaluation.y_true[order]],
            "predicted": [evaluation.classes[i] for i in evaluation.y_pred[order]],
            "confidence": evaluation.confidence[order].round(3),
            "image_path": rows["image_path"].to_numpy(),
        }
    )


# --- Retrieval -------------------------------------------------------------------------------


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Return int ndarray of shape (n_queries, k): gallery rows by cosine similarity, best first."""
    queries, gallery = normalize_rows(queries), normalize_rows(gallery)
    k = min(k, len(gallery))
    result = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ gallery.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        result[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return result


def label_pairs(frame: pd.DataFrame, first: str = "articleType", second: str = "baseColour") -> np.ndarray:
    """Return ``first / second`` strings per row, with "" where either label is missing."""
    a = frame[first].astype(object).where(frame[first].notna(), None)
    b = frame[second].astype(object).where(frame[second].notna(), None)
    return np.array([f"{x}{PAIR_SEPARATOR}{y}" if x is not None and y is not None else "" for x, y in zip(a, b)])


def retrieval_metrics(
    query_vectors: np.ndarray,
    query_frame: pd.DataFrame,
    gallery_vectors: np.ndarray,
    gallery_frame: pd.DataFrame,
    k: int = 4,
) -> dict[str, float]:
    """Return precision@k of test queries against a gallery, by articleType and by articleType + baseColour.

    Queries with a missing label are left out of the metric for that label.
    """
    neighbours = nearest_neighbours(query_vectors, gallery_vectors, k)
    results: dict[str, float] = {"k": k, "n_queries": int(len(query_frame)), "n_gallery": int(len(gallery_frame))}
    for name, query_labels, gallery_labels in (
        ("articleType", query_frame["articleType"].astype(str).to_numpy(), gallery_frame["articleType"].astype(str).to_numpy()),
        ("articleType+baseColour", label_pairs(query_frame), label_pairs(gallery_frame)),
    ):
        labelled = query_labels != ""
        results[f"precision@{k}_{name}"] = precision_at_k(query_labels[labelled], gallery_labels[neighbours[labelled]])
    return results


# --- Real photos -----------------------------------------------------------------------------


def photo_predictions(photos: pd.DataFrame, outputs: InferenceOutputs, classes: Sequence[str], top: int = 3) -> pd.DataFrame:
    """Return per photo: its class, the ``top`` predicted article types and whether top-1 and top-k hit."""
    probabilities = outputs.probabilities["articleType"]
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    predicted = [[classes[i] for i in row] for row in ranked]
    table = photos.reset_index(drop=True).copy()
    table["predicted"] = [row[0] for row in predicted]
    table["confidence"] = probabilities.max(axis=1).round(3)
    table[f"top{top}"] = [", ".join(row) for row in predicted]
    table["hit"] = photo_hits(table["photo_class"].tolist(), [row[:1] for row in predicted])
    table[f"hit@{top}"] = photo_hits(table["photo_class"].tolist(), predicted)
    table["decoded"] = outputs.valid
    return table


def photo_metrics(table: pd.DataFrame, top: int = 3) -> dict[str, Any]:
    """Return the photo hit rate overall, at top-``top``, and per photo class."""
    decoded = table[table["decoded"]]
    per_class = decoded.groupby("photo_class")["hit"].mean().round(4).to_dict()
    return {
        "n": int(len(decoded)),
        "failed_to_decode": int((~table["decoded"]).sum()),
        "accuracy": float(decoded["hit"].mean()),
        f"accuracy@{top}": float(decoded[f"hit@{top}"].mean()),
        "per_class_accuracy": per_class,
        "mapping": {name: sorted(types) for name, types in PHOTO_CLASS_ARTICLE_TYPES.items()},
    }
