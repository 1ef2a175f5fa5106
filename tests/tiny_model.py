"""A tiny stand-in for OsoroiModel and a catalogue of synthetic JPEGs, for fast matcher and index tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from osoroi.weights import Preprocessing

HEAD_CLASSES = {
    "gender": ["Men", "Women"],
    "articleType": ["Shirts", "Tshirts", "Watches"],
    "baseColour": ["Black", "Blue", "Red"],
}


class TinyModel(nn.Module):
    """A convolution, average pooling and linear heads, with the attributes of OsoroiModel."""

    def __init__(self, fingerprint_model: str = "tiny@0", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.preprocessing = Preprocessing(resolution=16)
        self.head_classes = {name: list(classes) for name, classes in HEAD_CLASSES.items()}
        self.fingerprint = {"backbone": "tiny", "weights": "random", "resolution": "16", "model": fingerprint_model}
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.embedding_dim = 32
        self.heads = nn.ModuleDict({name: nn.Linear(32, len(classes)) for name, classes in HEAD_CLASSES.items()})

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embedding = torch.flatten(self.features(images), 1)
        return embedding, {name: head(embedding) for name, head in self.heads.items()}


def write_catalogue(folder: Path, n_items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Write ``n_items`` distinct 60x80 JPEGs to ``folder/images/<id>.jpg`` and return their catalogue rows."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    genders, types, colours = ["Men", "Women"], ["Shirts", "Tshirts", "Watches"], ["Black", "Blue", "Red"]
    for position in range(n_items):
        item_id = 1000 + position
        pixels = np.full((80, 60, 3), 255, dtype=np.uint8)
        colour = rng.integers(0, 256, size=3, dtype=np.uint8)
        top, left = rng.integers(0, 40), rng.integers(0, 30)
        pixels[top : top + 40, left : left + 30] = colour
        path = images / f"{item_id}.jpg"
        Image.fromarray(pixels, "RGB").save(path, quality=95)
        rows.append(
            {
                "id": item_id,
                "gender": genders[position % 2],
                "masterCategory": "Apparel" if position % 3 != 2 else "Accessories",
                "subCategory": "Topwear" if position % 3 != 2 else "Watches",
                "articleType": types[position % 3],
                "baseColour": colours[(position // 3) % 3],
                "season": "Summer",
                "usage": None if position == 0 else "Casual",
                "image_path": str(path),
            }
        )
    return pd.DataFrame(rows)
