"""Backbone features for a list of images: extracted once, fast on CPU, and cached on disk.

Extraction runs in ``channels_last`` memory format under bfloat16 autocast
when the CPU supports bfloat16 in oneDNN (checked with
``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), otherwise in float32.
Features are stored as float16 ``.npy`` files under
``derived_dir("embeddings")``, named by a key of backbone, weights,
resolution, stage and the set of images, so later notebooks reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from osoroi.atomic import atomic_path, write_json
from osoroi.config import derived_dir
from osoroi.images import load_image
from osoroi.inference import autocast_context, bfloat16_supported, precision_name
from osoroi.model import OsoroiModel
from osoroi.weights import Preprocessing

logger = logging.getLogger(__name__)

CACHE_STAGES = ("trunk", "pooled")
UNTRAINED = "untrained-heads"


class ImageFileDataset(Dataset):
    """Images read from files with :func:`osoroi.images.load_image` and passed through a
    :class:`Preprocessing`; items are (tensor, index).

    Decoding goes through the same function as an uploaded photo (EXIF orientation,
    transparency on white, CMYK through its profile), so training and matching see
    images the same way.
    """

    def __init__(self, paths: Sequence[str | Path], preprocessing: Preprocessing) -> None:
        self.paths = [str(path) for path in paths]
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.preprocessing.transform(load_image(self.paths[index])), index


def stage_module(model: OsoroiModel, stage: str) -> torch.nn.Module:
    """Return the part of ``model`` that maps images to ``stage`` ("trunk" or "pooled")."""
    if stage == "trunk":
        return model.backbone.trunk
    if stage == "pooled":
        return model.backbone
    raise ValueError(f"Invalid stage={stage!r}. Only {', '.join(CACHE_STAGES)} are supported.")


def iterate_batches(
    paths: Sequence[str | Path], preprocessing: Preprocessing, batch_size: int, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images of shape (B, 3, R, R), indices) for ``paths`` in order."""
    loader = DataLoader(
        ImageFileDataset(paths, preprocessing), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    yield from loader


def extract_features(
    module: torch.nn.Module,
    paths: Sequence[str | Path],
    preprocessing: Preprocessing,
    batch_size: int = 64,
    use_bfloat16: bool | None = None,
    channels_last: bool = True,
    num_workers: int = 0,
    progress: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``module`` in eval mode on the images at ``paths`` and return float16 features of shape (N, ...).

    Args:
        module: maps images (B, 3, R, R) to features (B, ...).
        paths: image files, read with PIL and passed through ``preprocessing``.
        batch_size: images per forward pass.
        use_bfloat16: autocast to bfloat16; None means "when the CPU supports it".
        channels_last: run in ``torch.channels_last`` memory format.
        num_workers: DataLoader worker processes for decoding.
        progress: show a tqdm bar on stderr.
        out: optional preallocated array (for example a memory map) to write into.
    """
    if use_bfloat16 is None:
        use_bfloat16 = bfloat16_supported()
    was_training = module.training
    module.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # Converting outside inference mode keeps the parameters ordinary tensors that training can use later.
    with torch.no_grad():
        module.to(memory_format=memory_format)
    try:
        bar = tqdm(total=len(paths), desc="features", unit="img", disable=not progress)
        for images, indices in iterate_batches(paths, preprocessing, batch_size, num_workers):
            with torch.inference_mode(), autocast_context(precision_name(use_bfloat16)):
                features = module(images.contiguous(memory_format=memory_format))
            features = features.float().numpy().astype(np.float16)
            if out is None:
                out = np.empty((len(paths), *features.shape[1:]), dtype=np.float16)
            out[indices.numpy()] = features
            bar.update(len(indices))
        bar.close()
    finally:
        module.train(was_training)
    if out is None:
        raise ValueError("extract_features got an empty list of image paths.")
    return out


def cache_key(fingerprint: dict[str, str], stage: str, paths: Sequence[str | Path], tail_blocks: int) -> str:
    """Return a file-name-safe key of backbone, weights, resolution, stage, split point and image set.

    The images enter as a hash of their sorted file names (not the folders), so a
    cache stays valid when the data folder moves, and a notebook that lists the
    same images in another order finds it too. ``fingerprint["model"]`` enters
    only for a trained model: a model with untrained heads has the pretrained
    backbone, whose features do not depend on the heads.
    """
    images_hash = _images_hash(paths)
    weights = _file_name_safe(fingerprint["weights"])
    model_id = fingerprint.get("model", UNTRAINED)
    trained = "" if model_id.startswith(UNTRAINED) else f"-{_file_name_safe(model_id)}"
    return (
        f"{fingerprint['backbone']}-{weights}-r{fingerprint['resolution']}{trained}-{stage}"
        f"-t{tail_blocks}-n{len(paths)}-{images_hash}"
    )


def _images_hash(paths: Sequence[str | Path]) -> str:
    names = "\n".join(sorted(Path(path).name for path in paths))
    return hashlib.sha256(names.encode()).hexdigest()[:12]


def rows_in_order(stored_names: Sequence[str], paths: Sequence[str | Path], cache: Path) -> np.ndarray | None:
    """Return the row of ``cache`` holding each of ``paths`` (by file name), or None when the order matches.

    Raises:
        ValueError: a requested name is not in the cache, or a name repeats, so the rows cannot be matched.
    """
    requested = [Path(path).name for path in paths]
    if list(stored_names) == requested:
        return None
    fix = f"Delete {cache} (or pass rebuild=True) to extract the features again."
    repeated = sorted(_repeated(requested) | _repeated(stored_names))
    if repeated:
        raise ValueError(
            f"Cannot reorder the rows of {cache.name} by file name, because file names repeat "
            f"(for example {repeated[:3]}). Give each image a unique file name. {fix}"
        )
    row_of = {name: row for row, name in enumerate(stored_names)}
    missing = [name for name in requested if name not in row_of]
    if missing or len(stored_names) != len(requested):
        raise ValueError(
            f"{cache.name} contains {len(stored_names)} images, not the {len(requested)} requested "
            f"({len(missing)} missing, for example {missing[:3]}). {fix}"
        )
    return np.asarray([row_of[name] for name in requested], dtype=np.int64)


def _load_in_order(path: Path, stored_names: Sequence[str], paths: Sequence[str | Path]) -> np.ndarray:
    """Return the rows of ``.npy`` file ``path`` in the order of ``paths``, memory-mapped when in order."""
    array = np.load(path, mmap_mode="r")
    rows = rows_in_order(stored_names, paths, path)
    if rows is None:
        return array
    logger.info("Reordering the rows of %s to the requested order (this reads them into memory)", path.name)
    return np.asarray(array[rows])


def _repeated(names: Sequence[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _file_name_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text)


@dataclass
class FeatureCache:
    """Features for a list of images, stored as a float16 ``.npy`` file with a JSON sidecar."""

    path: Path
    features: np.ndarray
    metadata: dict

    @property
    def seconds(self) -> float:
        """Seconds the extraction took when the cache was built."""
        return float(self.metadata.get("seconds", float("nan")))


def cached_features(
    model: OsoroiModel,
    paths: Sequence[str | Path],
    stage: str = "pooled",
    batch_size: int = 64,
    use_bfloat16: bool | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> FeatureCache:
    """Return ``stage`` features of ``model``'s pretrained backbone for ``paths``; extract them when missing.

    The file lives under ``derived_dir("embeddings")`` and is memory-mapped on
    reuse. Only use this with a backbone whose trunk (and, for "pooled", tail)
    still has the pretrained weights named in ``model.fingerprint``.
    """
    if use_bfloat16 is None:
        use_bfloat16 = bfloat16_supported()
    key = cache_key(model.fingerprint, stage, paths, model.backbone.tail_blocks)
    folder = derived_dir("embeddings")
    path = folder / f"{key}.npy"
    sidecar = folder / f"{key}.json"
    if path.exists() and sidecar.exists() and not rebuild:
        metadata = json.loads(sidecar.read_text(encoding="utf-8"))
        logger.info("Reusing cached %s features %s", stage, path.name)
        return FeatureCache(path, _load_in_order(path, metadata["image_names"], paths), metadata)

    module = stage_module(model, stage)
    with torch.inference_mode():
        sample = module.eval()(
            torch.zeros(1, 3, model.preprocessing.resolution, model.preprocessing.resolution)
        )
    shape = (len(paths), *sample.shape[1:])
    start = time.perf_counter()
    # The sidecar names the row order, so an old one must not outlive the features it describes.
    sidecar.unlink(missing_ok=True)
    with atomic_path(path) as temporary:
        # open_memmap writes the .npy header, so features go straight to disk, not through RAM.
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float16, shape=shape)
        extract_features(
            module, paths, model.preprocessing, batch_size, use_bfloat16, progress=progress, out=array
        )
        array.flush()
        del array
    seconds = time.perf_counter() - start
    metadata = {
        "key": key,
        "stage": stage,
        "shape": list(shape),
        "fingerprint": {k: v for k, v in model.fingerprint.items() if k != "model"},
        "tail_blocks": model.backbone.tail_blocks,
        "bfloat16": use_bfloat16,
        "seconds": seconds,
        "images_per_second": len(paths) / seconds if seconds > 0 else None,
        "threads": torch.get_num_threads(),
        "image_names": [Path(p).name for p in paths],
    }
    write_json(sidecar, metadata)
    logger.info("Cached %s features of %d images in %.0f s: %s", stage, len(paths), seconds, path.name)
    return FeatureCache(path, np.load(path, mmap_mode="r"), metadata)


def measure_throughput(
    module: torch.nn.Module,
    paths: Sequence[str | Path],
    preprocessing: Preprocessing,
    use_bfloat16: bool,
    channels_last: bool,
    batch_size: int = 64,
) -> tuple[np.ndarray, float]:
    """Return (float32 features, images per second) of ``module`` on ``paths``, decoding included.

    One untimed batch runs first, so oneDNN's one-off kernel set-up stays out of the figure.
    """
    extract_features(
        module, paths[:batch_size], preprocessing, batch_size, use_bfloat16, channels_last, progress=False
    )
    start = time.perf_counter()
    features = extract_features(
        module, paths, preprocessing, batch_size, use_bfloat16, channels_last=channels_last, progress=False
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        module.to(memory_format=torch.contiguous_format)
    return features.astype(np.float32), len(paths) / seconds


def cosine_agreement(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the cosine similarity per row between two feature arrays of shape (N, ...)."""
    a = first.reshape(len(first), -1).astype(np.float64)
    b = second.reshape(len(second), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def model_embeddings_path(model: OsoroiModel, paths: Sequence[str | Path]) -> Path:
    """Return where :func:`save_model_embeddings` stores ``model``'s embeddings of ``paths``."""
    images_hash = _images_hash(paths)
    model_id = _file_name_safe(model.fingerprint["model"])
    fingerprint = model.fingerprint
    weights = _file_name_safe(fingerprint["weights"])
    key = f"{fingerprint['backbone']}-{weights}-r{fingerprint['resolution']}-{model_id}"
    return derived_dir("embeddings") / f"{key}-n{len(paths)}-{images_hash}.npy"


def save_model_embeddings(model: OsoroiModel, paths: Sequence[str | Path], embeddings: np.ndarray) -> Path:
    """Save a model's search embeddings (N, D) for ``paths`` as float16 ``.npy`` with a JSON sidecar."""
    if len(embeddings) != len(paths):
        raise ValueError(f"embeddings has {len(embeddings)} rows for {len(paths)} image paths.")
    path = model_embeddings_path(model, paths)
    path.with_suffix(".json").unlink(missing_ok=True)  # its row order describes the old file
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.save(stream, np.asarray(embeddings, dtype=np.float16))
    write_json(
        path.with_suffix(".json"),
        {
            "fingerprint": model.fingerprint,
            "shape": list(embeddings.shape),
            "image_names": [Path(p).name for p in paths],
        },
    )
    return path


def load_model_embeddings(model: OsoroiModel, paths: Sequence[str | Path]) -> np.ndarray | None:
    """Return the embeddings saved for this exact model and image set, in the order of ``paths``, or None."""
    path = model_embeddings_path(model, paths)
    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    return _load_in_order(path, json.loads(sidecar.read_text(encoding="utf-8"))["image_names"], paths)
