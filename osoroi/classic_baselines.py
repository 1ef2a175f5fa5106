"""Scikit-learn baselines on raw Fashion-MNIST pixels: logistic regression, a linear SVM and a random forest.

The slow models train on a stratified subsample of the training images. Each result
records how many images the model saw, so tables show the subsample beside the score.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineSpec:
    """A scikit-learn baseline: its display name, its estimator and the training images it may use."""

    name: str
    estimator: ClassifierMixin
    max_train: int | None = None


@dataclass(frozen=True)
class BaselineResult:
    """Test accuracy and training time of one fitted baseline."""

    name: str
    n_train: int
    train_seconds: float
    test_accuracy: float


def default_baselines(max_train: int | None = None, seed: int = 0, n_jobs: int = 2) -> list[BaselineSpec]:
    """Return the three baselines, each with the training-set size that keeps it to a few minutes on 2 cores.

    ``max_train`` caps every model's training set (for smoke runs). The per-model sizes
    are estimates: notebook 02 prints the training time that each model took.
    """

    def cap(size: int | None) -> int | None:
        if max_train is None:
            return size
        return max_train if size is None else min(size, max_train)

    return [
        BaselineSpec(
            "Logistic regression",
            make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=200, random_state=seed)),
            cap(20_000),
        ),
        BaselineSpec(
            "Linear SVM",
            make_pipeline(StandardScaler(), LinearSVC(C=0.01, dual=False, random_state=seed)),
            cap(20_000),
        ),
        BaselineSpec(
            "Random forest",
            RandomForestClassifier(n_estimators=100, n_jobs=n_jobs, random_state=seed),
            cap(None),
        ),
    ]


def flatten_pixels(images: np.ndarray) -> np.ndarray:
    """Return uint8 images of shape (n, 28, 28) as float32 features of shape (n, 784) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def fit_baseline(
    spec: BaselineSpec,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> BaselineResult:
    """Fit ``spec`` on (a stratified subsample of) the training images and score it on the test images."""
    indices = np.arange(len(train_labels))
    if spec.max_train is not None and spec.max_train < len(train_labels):
        indices, _ = train_test_split(indices, train_size=spec.max_train, random_state=seed, stratify=train_labels)
    features = flatten_pixels(train_images[indices])
    start = time.perf_counter()
    # One BLAS thread: the matrices are small, and on a busy 2-core machine multithreaded BLAS
    # made logistic regression on 500 images take 12 s instead of 0.3 s.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # The iteration cap is part of the time budget, and the test score shows what it costs.
        warnings.simplefilter("ignore", ConvergenceWarning)
        spec.estimator.fit(features, train_labels[indices])
    train_seconds = time.perf_counter() - start
    accuracy = float((spec.estimator.predict(flatten_pixels(test_images)) == test_labels).mean())
    logger.info("%s: %d training images, %.1f s, test accuracy %.4f", spec.name, len(indices), train_seconds, accuracy)
    return BaselineResult(spec.name, len(indices), train_seconds, accuracy)


def fit_baselines(
    specs: list[BaselineSpec],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit every baseline and return a table with columns model, n_train, train_seconds, test_accuracy."""
    results = [fit_baseline(spec, train_images, train_labels, test_images, test_labels, seed) for spec in specs]
    return pd.DataFrame(
        {
            "model": [result.name for result in results],
            "n_train": [result.n_train for result in results],
            "train_seconds": [result.train_seconds for result in results],
            "test_accuracy": [result.test_accuracy for result in results],
        }
    )
