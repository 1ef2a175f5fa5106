"""Match an uploaded photo: predict its labels and find the most similar catalogue items.

:class:`Matcher` joins an :class:`~osoroi.model.OsoroiModel` and the
:class:`~osoroi.index.EmbeddingIndex` built with that same model. One call to
:meth:`Matcher.match` decodes the image safely (:func:`osoroi.images.load_image`),
preprocesses it as the model's weights expect, runs one forward pass and
searches the index by cosine similarity.

A catalogue image is never returned as its own match. Two rules decide which
items are the query itself:

1. By path: the query path is the indexed image file, or a file named
   ``<id>.jpg`` in a folder named ``images`` (a copy of the catalogue folder).
2. By pixels: the item's decoded image has the same pixel hash as the query.
   This covers bytes and PIL images of catalogue photos. It also drops duplicate
   listings that share the very same photo, which would only show the user
   their own picture again.

A visually similar item with other pixels stays in, even at a similarity close to 1.

NOTE: a re-encoded or resized copy of a catalogue image, passed as bytes or from a
folder not named ``images``, matches neither rule and can come back as its own match.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from threadpoolctl import ThreadpoolController

from osoroi.images import ImageSource, InvalidImageError, load_image
from osoroi.index import FILTER_KEYS, SEARCH_METHODS, EmbeddingIndex, default_index_path, pixel_hash
from osoroi.inference import PRECISIONS, bfloat16_supported, precision_name, run_model

logger = logging.getLogger(__name__)

__all__ = [
    "FILTER_KEYS",
    "InvalidImageError",
    "LabelScore",
    "MatchItem",
    "MatchResult",
    "Matcher",
    "build_demo_matcher",
]


@dataclass
class LabelScore:
    """One predicted class of a head with its softmax probability."""

    label: str
    probability: float


@dataclass
class MatchItem:
    """A catalogue item found for a query: its id, cosine similarity, labels and image file."""

    id: int
    similarity: float
    labels: dict[str, str]
    image_path: str


@dataclass
class MatchResult:
    """What :meth:`Matcher.match` returns for one image.

    Attributes:
        image: the decoded, upright RGB query image.
        predictions: head name -> the ``top`` most probable classes, best first.
        matches: the most similar catalogue items, most similar first (fewer than ``k``
            when fewer items pass the filters).
    """

    image: Image.Image
    predictions: dict[str, list[LabelScore]]
    matches: list[MatchItem]


class Matcher:
    """Predict labels for an image and find its most similar catalogue items.

    Args:
        model: an :class:`~osoroi.model.OsoroiModel` (``preprocessing``, ``head_classes``,
            ``fingerprint``, ``forward``); it is put in eval mode.
        index: the embedding index built with this model.
        search_method: "exact" (default) or "faiss" (approximate, needs faiss-cpu).
        precision: "float32" or "bfloat16" (CPU autocast with channels_last). None picks
            bfloat16 where the CPU runs it natively (:func:`osoroi.inference.bfloat16_supported`).
            Notebook 03 measures how close bfloat16 backbone features come to float32 ones
            (a cosine of 0.996 at minimum over 256 catalogue images at 160 px in the committed run).

    Raises:
        IndexMismatchError: the index was built with a model of another fingerprint.
    """

    def __init__(
        self, model: Any, index: EmbeddingIndex, search_method: str = "exact", precision: str | None = None
    ) -> None:
        if precision is None:
            precision = precision_name(bfloat16_supported())
        if precision not in PRECISIONS:
            raise ValueError(f"Invalid precision={precision!r}. Only {', '.join(PRECISIONS)} are supported.")
        if search_method not in SEARCH_METHODS:
            raise ValueError(
                f"Invalid search_method={search_method!r}. Only {', '.join(SEARCH_METHODS)} are supported."
            )
        index.check_model(model)
        embedding_dim = getattr(model, "embedding_dim", index.input_dim)
        if embedding_dim != index.input_dim:
            raise ValueError(
                f"The model's embeddings have dimension {embedding_dim} but the index expects "
                f"{index.input_dim}; rebuild the index with this model ('python -m osoroi.index')."
            )
        self.model = model.eval()
        self.index = index
        self.search_method = search_method
        self.precision = precision

    @classmethod
    def from_files(
        cls, model_path: str | os.PathLike[str] | None = None, index_path: str | os.PathLike[str] | None = None
    ) -> Matcher:
        """Load the saved model (:func:`osoroi.model.load_model`) and the catalogue index built with it."""
        from osoroi.model import load_model

        model = load_model(model_path)
        index_path = Path(index_path) if index_path is not None else default_index_path()
        index = EmbeddingIndex.load(index_path)
        index.check_model(model, index_path)
        return cls(model, index)

    def predict(self, image: Image.Image) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return (embedding of shape (d,), head name -> probabilities of shape (n_classes,)) for an RGB image."""
        embedding, probabilities = self.forward(self.model.preprocessing.transform(image).unsqueeze(0))
        return embedding[0].numpy(), {name: value[0].numpy() for name, value in probabilities.items()}

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (float32 embeddings, head name -> probabilities) of a preprocessed batch (N, 3, H, W)."""
        return run_model(self.model, batch, self.precision, channels_last=self.precision == "bfloat16")

    def match(
        self,
        image: ImageSource,
        k: int = 4,
        filters: Mapping[str, str | None] | None = None,
        top: int = 3,
    ) -> MatchResult:
        """Predict the labels of ``image`` and return them with its ``k`` most similar catalogue items.

        Args:
            image: a file path, the bytes of an image file, or a PIL image.
            k: number of catalogue items to return.
            filters: keep only items with these labels, keys from :data:`FILTER_KEYS`
                (None or "" as a value means any). Values are matched ignoring case.
            top: number of classes reported per head.

        Raises:
            InvalidImageError: the image is empty, not an image, truncated, too small or too large.
            ValueError: ``k`` or ``top`` is not a positive integer, or a filter key or value is unknown.
        """
        _check_positive("k", k)
        _check_positive("top", top)
        # Filters are checked before the forward pass, so a bad one fails fast.
        mask = self.index.filter_mask(filters)
        with single_threaded_blas():
            decoded = load_image(image)
            embedding, probabilities = self.predict(decoded)
            predictions = {
                name: _top_labels(self.model.head_classes[name], values, top)
                for name, values in probabilities.items()
            }
            own = self.own_positions(image, decoded)
            hits = self.index.search(embedding, k=k, mask=mask, exclude=own, method=self.search_method)
            matches = [
                MatchItem(
                    id=int(self.index.ids[position]),
                    similarity=float(similarity),
                    labels=self.index.item_labels(position),
                    image_path=self.index.image_path(position),
                )
                for position, similarity in zip(hits.positions.tolist(), hits.similarities.tolist())
            ]
            if len(matches) < k:
                logger.info("Found %d of k=%d matches (filters %s)", len(matches), k, filters)
        return MatchResult(image=decoded, predictions=predictions, matches=matches)

    def own_positions(self, source: ImageSource, decoded: Image.Image) -> set[int]:
        """Return the index rows that are the query itself (see the module docstring for the rules)."""
        own = set(self.index.positions_of_pixels(pixel_hash(decoded)).tolist())
        path = _source_path(source)
        if path is not None:
            position = self._position_of_path(path)
            if position is not None:
                own.add(position)
        return own

    def _position_of_path(self, path: Path) -> int | None:
        if path.parent.name == "images" and path.stem.isdigit():
            position = self.index.position_of(int(path.stem))
            if position is not None:
                return position
        try:
            resolved = path.resolve()
        except OSError:
            return None
        for position in np.flatnonzero(np.char.endswith(self.index.image_paths, path.name)).tolist():
            if Path(self.index.image_path(position)).resolve() == resolved:
                return position
        return None


class _SingleThreadedBlas:
    """A context manager under which numpy's BLAS (OpenBLAS or MKL) runs on the calling thread only.

    A match multiplies only small arrays in numpy. Extra BLAS threads keep spinning after
    each call and take the cores from the model's next forward pass: on 2 cores a match at
    112 px took 73.5 ms at p50 without this limit and 26.3 ms with it (``python -m osoroi.benchmark``).
    The limit is process-wide, so it is set when the first of several concurrent matches
    starts and restored when the last one ends. Torch's own thread pool is not affected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._limiter: Any = None
        self._controller: ThreadpoolController | None = None
        self._module_count = 0

    def _current_controller(self) -> ThreadpoolController:
        # Building a controller inspects every loaded library (a few milliseconds), so it is reused
        # until an import, which may have loaded another BLAS (scipy ships its own), adds modules.
        if self._controller is None or len(sys.modules) != self._module_count:
            self._controller = ThreadpoolController()
            self._module_count = len(sys.modules)
        return self._controller

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                self._limiter = self._current_controller().limit(limits=1, user_api="blas")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


single_threaded_blas = _SingleThreadedBlas()  # used as ``with single_threaded_blas(): ...``


def _source_path(source: ImageSource) -> Path | None:
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    filename = getattr(source, "filename", "")  # a PIL image opened from a file keeps its name
    return Path(filename) if isinstance(source, Image.Image) and filename else None


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid {name}={value!r}: use an integer of at least 1.")


def _top_labels(classes: list[str], probabilities: np.ndarray, top: int) -> list[LabelScore]:
    order = np.argsort(-probabilities, kind="stable")[: min(top, len(classes))]
    return [LabelScore(label=classes[i], probability=float(probabilities[i])) for i in order.tolist()]


@functools.lru_cache(maxsize=2)
def build_demo_matcher(n_items: int = 200, seed: int = 0) -> Matcher:
    """Build a small real matcher: the pretrained backbone, briefly trained heads, ``n_items`` catalogue items.

    The items are a seeded random sample of the clean catalogue. The heads are fitted
    for a few seconds on those items' pooled features, so predictions are plausible but
    not those of the trained model. Needs ``OSOROI_DATA_DIR``. Repeated calls with the same
    arguments return the same (cached) matcher.
    """
    from osoroi.demo import build_demo_model_and_index

    _check_positive("n_items", n_items)
    model, index = build_demo_model_and_index(n_items=n_items, seed=seed)
    return Matcher(model, index)


