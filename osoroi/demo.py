"""A small real model and index for tests, smoke runs and the benchmark, built in seconds."""

from __future__ import annotations

import hashlib
import json
import logging

import pandas as pd
import torch

from osoroi.atomic import atomic_path
from osoroi.config import derived_dir
from osoroi.index import EmbeddingIndex, index_from_rows
from osoroi.inference import embed_images

logger = logging.getLogger(__name__)

HEAD_STEPS = 150


def sample_catalogue(catalogue: pd.DataFrame, n_items: int, seed: int = 0) -> pd.DataFrame:
    """Return ``n_items`` rows of ``catalogue`` drawn at random with ``seed``, in id order."""
    if n_items > len(catalogue):
        raise ValueError(f"Invalid n_items={n_items}: the catalogue has only {len(catalogue)} items.")
    return catalogue.sample(n=n_items, random_state=seed).sort_values("id").reset_index(drop=True)


def fit_heads(model: torch.nn.Module, features: torch.Tensor, frame: pd.DataFrame, steps: int, seed: int) -> None:
    """Fit the model's heads on pooled ``features`` of shape (n, d) for ``frame``'s labels with Adam."""
    from osoroi.multitask import encode_targets, masked_multitask_loss

    head_names = list(model.head_classes)
    targets = torch.from_numpy(encode_targets(frame, model.head_classes))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.heads.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        batch = torch.randperm(len(features), generator=generator)[:64]
        _, logits = model.forward_from("pooled", features[batch])
        loss, _ = masked_multitask_loss(logits, targets[batch], head_names)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_demo_model_and_index(
    n_items: int = 200,
    seed: int = 0,
    catalogue: pd.DataFrame | None = None,
    resolution: int | None = None,
    cache: bool = True,
) -> tuple[torch.nn.Module, EmbeddingIndex]:
    """Build the default pretrained model with heads fitted on ``n_items`` sampled items, and their index.

    With ``cache=True`` the fitted heads and the index are kept under ``derived_dir("demo")``
    and reused while the sampled ids and the backbone settings stay the same, which saves
    the forward passes. ``resolution`` defaults to :func:`osoroi.model.build_model`'s.
    Needs ``OSOROI_DATA_DIR`` and the offline backbone weights.
    """
    from osoroi.model import build_model
    from osoroi.splits import load_clean_catalogue

    if catalogue is None:
        catalogue = load_clean_catalogue()
    items = sample_catalogue(catalogue, n_items, seed)
    torch.manual_seed(seed)
    model = build_model() if resolution is None else build_model(resolution=resolution)
    recipe = f"demo-heads-n{n_items}-seed{seed}"
    cache_key = _cache_key(model.fingerprint, items["id"].tolist(), model.head_classes)
    index_path = derived_dir("demo") / f"{recipe}-{cache_key}.npz"
    heads_path = index_path.with_suffix(".heads.pt")
    model.fingerprint["model"] = f"{recipe}@{cache_key}"

    if cache and index_path.is_file() and heads_path.is_file():
        model.heads.load_state_dict(torch.load(heads_path, map_location="cpu", weights_only=True))
        index = EmbeddingIndex.load(index_path)
        logger.info("Loaded the demo matcher over %d items from %s", len(index), index_path.name)
        return model.eval(), index

    outputs = embed_images(model, items["image_path"].tolist(), batch_size=50, progress=False)
    keep = outputs.valid
    items = items[keep].reset_index(drop=True)
    fit_heads(model, torch.from_numpy(outputs.embeddings[keep]), items, steps=HEAD_STEPS, seed=seed)
    index = index_from_rows(model, items, outputs.embeddings[keep], outputs.pixel_hashes[keep])
    if cache:
        with atomic_path(heads_path) as temporary:
            torch.save(model.heads.state_dict(), temporary)
        index.save(index_path)
    logger.info("Built a demo matcher over %d items (d=%d)", len(index), index.dim)
    return model, index


def _cache_key(fingerprint: dict[str, str], ids: list[int], head_classes: dict[str, list[str]]) -> str:
    digest = hashlib.sha256()
    settings = {name: fingerprint[name] for name in ("backbone", "weights", "resolution")}
    digest.update(json.dumps([settings, ids, head_classes, HEAD_STEPS], sort_keys=True).encode())
    return digest.hexdigest()[:12]
