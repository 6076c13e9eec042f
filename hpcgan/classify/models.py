"""Classifier networks: torchvision InceptionV3 and EfficientNet-B0 on one channel, and a small CNN.

``build_model(name, num_classes, image_size, pretrained)`` returns ``(model, info)``:
a module that maps ``x`` of shape (N, 1, S, S) (normalised grey images, see
:mod:`hpcgan.classify.augment`) to logits (N, num_classes). ``info`` says which
weights were used (``pretrained_weights``: the file, or None) and whether the
model has an auxiliary head (``aux_logits``).

One-channel adaptation: the first convolution's weights W (C_out, 3, k, k) are
replaced by their sum over the input channels, W'(C_out, 1, k, k) = sum_c W[:, c].
A grey image g fed as three equal channels gives conv(W, [g, g, g]) = conv(W', g),
so the ImageNet filters see a grey X-ray as they saw a grey photograph.
The classifier layers (Inception ``fc`` and ``AuxLogits.fc``, EfficientNet
``classifier[1]``) are replaced by freshly initialised ones with num_classes outputs.

ImageNet weights are never downloaded here (cluster compute nodes are offline):
they are read from the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<name>``
(``torch.hub.get_dir()``), with torchvision's standard file names
(:data:`WEIGHT_FILES`). ``pretrained="auto"`` uses the file when it is there,
``"yes"`` requires it, ``"no"`` initialises randomly.

InceptionV3 is built with ``transform_input=False`` (inputs are already
normalised). Its auxiliary head (training only; loss weight
:data:`AUX_LOSS_WEIGHT`) needs a 17x17 Mixed_6e map, i.e. inputs of at least
:data:`INCEPTION_AUX_MIN_SIZE` px (the default 299); smaller inputs (>= 75 px) train without it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from hpcgan.errors import HpcganError

log = logging.getLogger(__name__)

AUX_LOSS_WEIGHT = 0.4
INCEPTION_AUX_MIN_SIZE = 299  # found by tracing the stem: Mixed_6e is 17x17 from 299 px on

_WEIGHTS = {
    "inception_v3": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
    "efficientnet_b0": torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1,
}
# torchvision's file name of each model's ImageNet weights (the basename of the weights' URL).
WEIGHT_FILES = {name: os.path.basename(w.url) for name, w in _WEIGHTS.items()}


def weights_path(name: str) -> Path:
    """Where the ImageNet weights of ``name`` are looked for: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[name]


def fetch_command(name: str) -> str:
    """The one-line command that puts the weights into the hub cache (run it where there is internet)."""
    return f"python -c \"import torchvision; torchvision.models.{name}(weights='IMAGENET1K_V1')\""


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (16, 32, 64, 128 channels; max-pool between), global average pool, linear.

    (N, 1, S, S) -> (N, num_classes); any S >= 8.
    """

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(4):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))  # [N, C, 1, 1] -> [N, C] -> [N, K]


def _grey_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of ``conv`` with one input channel whose weight is the sum of the RGB weights."""
    new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
                    bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _load_imagenet(model: nn.Module, name: str, pretrained: str) -> str | None:
    """Load the cached ImageNet state_dict into the 3-channel, 1000-class ``model``; returns the file or None."""
    if pretrained == "no":
        return None
    path = weights_path(name)
    if not path.is_file():
        if pretrained == "yes":
            raise HpcganError(f"pretrained=yes but the ImageNet weights of {name} are not in the torch hub cache: "
                              f"{path} is missing. Fetch them on a login node (with internet) using the same "
                              f"TORCH_HOME: {fetch_command(name)}")
        log.info("%s: no ImageNet weights at %s, random initialisation (pretrained=auto)", name, path)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # any unreadable or mismatched file is the user's to replace
        raise HpcganError(f"cannot load the ImageNet weights of {name} from {path}: {exc}; delete the file and "
                          f"fetch it again: {fetch_command(name)}") from exc
    log.info("%s: ImageNet weights from %s", name, path)
    return str(path)


def build_model(name: str, num_classes: int, image_size: int, pretrained: str = "auto") -> tuple[nn.Module, dict]:
    """The classifier ``name`` for 1-channel (N, 1, image_size, image_size) inputs and ``num_classes`` logits."""
    if name == "small_cnn":
        return SmallCNN(num_classes), {"pretrained_weights": None, "aux_logits": False}
    if name == "inception_v3":
        model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True,
                                                transform_input=False)
        used = _load_imagenet(model, name, pretrained)
        model.Conv2d_1a_3x3.conv = _grey_conv(model.Conv2d_1a_3x3.conv)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        aux = image_size >= INCEPTION_AUX_MIN_SIZE
        if aux:
            model.AuxLogits.fc = nn.Linear(model.AuxLogits.fc.in_features, num_classes)
        else:
            model.aux_logits = False
            model.AuxLogits = None
            log.info("inception_v3 at %d px: no auxiliary head (it needs >= %d px)", image_size,
                     INCEPTION_AUX_MIN_SIZE)
        return model, {"pretrained_weights": used, "aux_logits": aux}
    if name == "efficientnet_b0":
        model = torchvision.models.efficientnet_b0(weights=None)
        used = _load_imagenet(model, name, pretrained)
        model.features[0][0] = _grey_conv(model.features[0][0])
        model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
        return model, {"pretrained_weights": used, "aux_logits": False}
    raise HpcganError(f"model {name!r} is unknown; use inception_v3, efficientnet_b0 or small_cnn")


def split_logits(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(main logits, aux logits or None) from a model's output (Inception returns a pair in training)."""
    if isinstance(out, tuple):  # torchvision InceptionOutputs(logits, aux_logits)
        return out[0], out[1]
    return out, None
