"""Tests for osoroi.model and osoroi.training: forward contract, save/load and one Trainer step per mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn

from osoroi.model import ModelNotFoundError, OsoroiModel, build_model, load_model, save_model
from osoroi.training import CatalogueDataModule, MultiTaskModule, fit, predict, read_metrics
from osoroi.weights import FeatureBackbone, Preprocessing

HEADS = {"gender": ["Men", "Women"], "articleType": ["Shirts", "Tshirts", "Watches"]}


def tiny_model() -> OsoroiModel:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    tail = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    backbone = FeatureBackbone("tiny", trunk, tail, feature_dim=16, tail_blocks=1)
    fingerprint = {"backbone": "tiny", "weights": "random", "resolution": "16", "model": "test"}
    return OsoroiModel(backbone, HEADS, Preprocessing(16), fingerprint)


def tiny_catalogue(folder: Path, n: int = 12) -> pd.DataFrame:
    rows = []
    for index in range(n):
        path = folder / f"{index}.jpg"
        Image.new("RGB", (24, 32), (20 * index, 0, 255 - 20 * index)).save(path)
        rows.append(
            {
                "id": index,
                "gender": ["Men", "Women", None][index % 3],
                "articleType": HEADS["articleType"][index % 3],
                "image_path": str(path),
                "split": ["train", "train", "val"][index % 3],
            }
        )
    return pd.DataFrame(rows)


def test_build_model_forward_contract() -> None:
    model = build_model(weights="random", resolution=64, head_classes=HEADS, tail_blocks=1).eval()
    embedding, logits = model(torch.rand(2, 3, 64, 64))
    assert embedding.shape == (2, 2048)
    assert logits["gender"].shape == (2, 2)
    assert logits["articleType"].shape == (2, 3)
    assert model.fingerprint == {
        "backbone": "resnet50",
        "weights": "random",
        "resolution": "64",
        "model": "untrained-heads",
    }
    assert model.preprocessing.resolution == 64


def test_forward_from_stages_agree() -> None:
    model = tiny_model().eval()
    images = torch.rand(3, 3, 16, 16)
    embedding, logits = model(images)
    from_trunk, trunk_logits = model.forward_from("trunk", model.backbone.trunk(images))
    from_pooled, pooled_logits = model.forward_from("pooled", embedding)
    assert torch.allclose(embedding, from_trunk)
    assert torch.allclose(logits["gender"], trunk_logits["gender"])
    assert torch.allclose(logits["articleType"], pooled_logits["articleType"])
    with pytest.raises(ValueError, match="Invalid stage='layer2'"):
        model.forward_from("layer2", images)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = build_model(weights="random", resolution=32, head_classes=HEADS, tail_blocks=2).eval()
    path = save_model(model, tmp_path / "model.pt")
    loaded = load_model(path)
    images = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model(images)[0], loaded(images)[0])
    assert loaded.head_classes == HEADS
    assert loaded.backbone.tail_blocks == 2
    assert loaded.preprocessing == model.preprocessing
    assert loaded.fingerprint["model"].startswith("untrained-heads@")
    assert not loaded.training


def test_missing_model_file_says_run_notebook(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="03_transfer_learning.ipynb"):
        load_model(tmp_path / "absent.pt")


@pytest.mark.parametrize("mode", ["heads", "tail", "full"])
def test_one_trainer_step_per_mode(mode: str, tmp_path: Path) -> None:
    model = tiny_model()
    catalogue = tiny_catalogue(tmp_path)
    features = None
    if mode != "full":
        with torch.no_grad():
            images = torch.stack([model.preprocessing(Image.open(p)) for p in catalogue["image_path"]])
            trunk = model.backbone.eval().trunk(images)
            features = (trunk if mode == "tail" else model.backbone.forward_tail(trunk)).numpy()
    datamodule = CatalogueDataModule(catalogue, HEADS, mode, features, model.preprocessing, batch_size=4)
    module = MultiTaskModule(model, mode, class_weights=datamodule.class_weights())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(
        module,
        datamodule,
        tmp_path / "run",
        max_epochs=1,
        limit_train_batches=1,
        precision="32-true",
        accelerator="cpu",
        enable_progress_bar=False,
    )
    after = model.state_dict()
    assert not torch.equal(before["heads.heads.gender.weight"], after["heads.heads.gender.weight"])
    trunk_changed = not torch.equal(before["backbone.trunk.0.weight"], after["backbone.trunk.0.weight"])
    tail_changed = not torch.equal(before["backbone.tail.0.weight"], after["backbone.tail.0.weight"])
    assert trunk_changed == (mode == "full")
    assert tail_changed == (mode in ("tail", "full"))
    log = read_metrics(result.metrics_csv)
    assert {"train_loss_epoch", "val_loss", "val_acc_gender", "val_acc_articleType"} <= set(log.columns)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


class CrashAfterFirstEpoch(pl.Callback):
    """Raise once the first epoch's checkpoint is written, as a killed or crashed run would."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def fit_options() -> dict:
    return {"precision": "32-true", "accelerator": "cpu", "enable_progress_bar": False, "patience": 10}


def heads_datamodule(tmp_path: Path) -> CatalogueDataModule:
    catalogue = tiny_catalogue(tmp_path)
    model = tiny_model()
    with torch.no_grad():
        images = torch.stack([model.preprocessing(Image.open(p)) for p in catalogue["image_path"]])
        features = model.eval()(images)[0].numpy()
    return CatalogueDataModule(catalogue, HEADS, "heads", features, batch_size=4)


def test_fit_resumes_interrupted_run(tmp_path: Path) -> None:
    datamodule = heads_datamodule(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(
            MultiTaskModule(tiny_model(), "heads"),
            datamodule,
            tmp_path / "run",
            max_epochs=2,
            callbacks=[CrashAfterFirstEpoch()],
            **fit_options(),
        )
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()

    second = fit(MultiTaskModule(tiny_model(), "heads"), datamodule, tmp_path / "run", max_epochs=2, **fit_options())

    # The second call starts at epoch 1 from last.ckpt and trains one more epoch.
    assert second.epochs == 2
    assert read_metrics(tmp_path / "run")["epoch"].tolist() == [0, 1]


def test_fit_restarts_completed_or_changed_run(tmp_path: Path) -> None:
    datamodule = heads_datamodule(tmp_path)
    fit(MultiTaskModule(tiny_model(), "heads"), datamodule, tmp_path / "run", max_epochs=1, **fit_options())

    # Another max_epochs would overrun the learning-rate schedule of a resumed run.
    again = fit(MultiTaskModule(tiny_model(), "heads"), datamodule, tmp_path / "run", max_epochs=3, **fit_options())

    assert again.epochs == 3
    assert (tmp_path / "run" / "completed.json").exists()


def test_predict_returns_embeddings_and_classes() -> None:
    model = tiny_model()
    pooled = np.random.default_rng(0).random((5, 16), dtype=np.float32)
    embeddings, predictions = predict(model, "pooled", pooled)
    assert embeddings.shape == (5, 16)
    assert set(predictions) == set(HEADS)
    assert predictions["articleType"].max() < 3


def test_load_model_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_text("not a model")

    with pytest.raises(ValueError, match=r"Invalid model file .*model.pt.*Re-run notebook 03"):
        load_model(path)


def test_load_model_other_payload(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, path)

    with pytest.raises(ValueError, match="format_version=None"):
        load_model(path)
