"""Batch inference: decode images, run the model and collect embeddings and class probabilities."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from osoroi.images import ImageSource, InvalidImageError, load_image

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16")


@dataclass
class InferenceOutputs:
    """Model outputs for a list of images, one row per image in input order.

    Attributes:
        embeddings: ndarray of shape (n, d), float32, as the model returns them (not normalised).
        probabilities: head name -> ndarray of shape (n, n_classes), softmax of the logits.
        valid: boolean ndarray of shape (n,); False where the image failed to decode (its rows are zeros).
        pixel_hashes: int64 ndarray of shape (n,), :func:`osoroi.index.pixel_hash` of each decoded image.
        errors: row -> error message for the images that failed to decode.
    """

    embeddings: np.ndarray
    probabilities: dict[str, np.ndarray]
    valid: np.ndarray
    pixel_hashes: np.ndarray
    errors: dict[int, str]


class ImageListDataset(Dataset):
    """Images from a list of sources, preprocessed for a model; bad images give a zero tensor and a message."""

    def __init__(self, sources: Sequence[ImageSource], preprocessing: Any) -> None:
        self.sources = list(sources)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, str]:
        from osoroi.index import pixel_hash

        try:
            image = load_image(self.sources[position])
        except InvalidImageError as error:
            side = self.preprocessing.resolution
            return torch.zeros(3, side, side), 0, str(error)
        return self.preprocessing.transform(image), pixel_hash(image), ""


def bfloat16_supported() -> bool:
    """Return True when this CPU runs bfloat16 convolutions natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_name(use_bfloat16: bool) -> str:
    """Return "bfloat16" or "float32", the ``precision`` argument of :func:`autocast_context`."""
    return "bfloat16" if use_bfloat16 else "float32"


def autocast_context(precision: str, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """Return the autocast context for ``precision`` ("float32": none, "bfloat16": torch.autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision={precision!r}. Only {', '.join(PRECISIONS)} are supported.")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def run_model(
    model: torch.nn.Module, images: torch.Tensor, precision: str = "float32", channels_last: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return (float32 embeddings (N, d), head name -> float32 probabilities (N, C)) for a batch (N, 3, H, W)."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_context(precision, images.device):
        embeddings, logits = model(images)
    return embeddings.float(), {name: value.float().softmax(dim=1) for name, value in logits.items()}


def embed_images(
    model: Any,
    sources: Sequence[ImageSource],
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    precision: str = "float32",
    channels_last: bool = False,
    progress: bool = True,
) -> InferenceOutputs:
    """Run ``model`` in eval mode over ``sources`` (paths, bytes or PIL images) in batches.

    Images that fail to decode do not stop the run: their rows are zeros, ``valid`` is False
    and ``errors`` contains the message. ``precision="bfloat16"`` runs under ``torch.autocast``.
    """
    if batch_size < 1:
        raise ValueError(f"Invalid batch_size={batch_size!r}: use an integer of at least 1.")
    dataset = ImageListDataset(sources, model.preprocessing)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    embeddings, hashes, messages = [], [], []
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in model.head_classes}
    try:
        for images, batch_hashes, batch_messages in tqdm(
            loader, desc="embedding images", unit="batch", disable=not progress or len(loader) < 2
        ):
            batch_embeddings, batch_probabilities = run_model(model, images.to(device), precision, channels_last)
            embeddings.append(batch_embeddings.cpu().numpy())
            for name, value in batch_probabilities.items():
                probabilities[name].append(value.cpu().numpy())
            hashes.append(batch_hashes.numpy())
            messages.extend(batch_messages)
    finally:
        model.train(was_training)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    errors = {row: message for row, message in enumerate(messages) if message}
    for row, message in list(errors.items())[:5]:
        logger.warning("Skipped image %d: %s", row, message)
    valid = np.ones(len(dataset), dtype=bool)
    valid[list(errors)] = False
    dim = int(getattr(model, "embedding_dim", 0))
    return InferenceOutputs(
        embeddings=np.concatenate(embeddings) if embeddings else np.zeros((0, dim), dtype=np.float32),
        probabilities={
            name: np.concatenate(values) if values else np.zeros((0, len(model.head_classes[name])), np.float32)
            for name, values in probabilities.items()
        },
        valid=valid,
        pixel_hashes=np.concatenate(hashes).astype(np.int64) if hashes else np.zeros(0, dtype=np.int64),
        errors=errors,
    )


def default_num_workers() -> int:
    """Return a DataLoader worker count that leaves one CPU core for the forward pass (0 on 1-2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(4, cores - 1)
