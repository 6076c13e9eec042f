"""The networks: shapes, one-channel adaptation, ImageNet weights from the hub cache (real files)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from hpcgan.classify.models import (AUX_LOSS_WEIGHT, WEIGHT_FILES, build_model, fetch_command, split_logits,
                                    weights_path)
from hpcgan.classify.train import _loss
from hpcgan.errors import HpcganError


@pytest.mark.parametrize("classes", [2, 4])
def test_small_cnn(classes):
    m, info = build_model("small_cnn", classes, 32)
    assert m(torch.randn(3, 1, 32, 32)).shape == (3, classes) and info["pretrained_weights"] is None


@pytest.mark.parametrize("name,size", [("inception_v3", 75), ("efficientnet_b0", 32)])
@pytest.mark.parametrize("classes", [2, 4])
def test_torchvision_models_forward_backward_smallest_size(name, size, classes):
    torch.manual_seed(0)
    m, _ = build_model(name, classes, size, pretrained="no")
    m.train()
    x, y = torch.randn(2, 1, size, size), torch.tensor([0, classes - 1])
    loss, logits = _loss(m(x), y, torch.nn.CrossEntropyLoss())
    assert logits.shape == (2, classes) and torch.isfinite(loss)
    loss.backward()
    first = m.Conv2d_1a_3x3.conv if name == "inception_v3" else m.features[0][0]
    assert first.in_channels == 1 and first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert split_logits(m(x))[1] is None


def test_inception_aux_logits_at_299():
    """At the default 299 px the auxiliary head is present in training and weighted AUX_LOSS_WEIGHT."""
    torch.manual_seed(0)
    m, info = build_model("inception_v3", 2, 299, pretrained="no")
    assert info["aux_logits"] and not m.transform_input
    m.train()
    x, y = torch.randn(2, 1, 299, 299), torch.tensor([0, 1])
    out = m(x)
    main, aux = split_logits(out)
    assert aux is not None and aux.shape == (2, 2)
    ce = torch.nn.CrossEntropyLoss()
    loss, _ = _loss(out, y, ce)
    torch.testing.assert_close(loss, ce(main, y) + AUX_LOSS_WEIGHT * ce(aux, y))


@pytest.mark.parametrize("name", ["efficientnet_b0", "inception_v3"])
def test_pretrained_auto_loads_the_cached_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert weights_path(name) == tmp_path / "hub" / "checkpoints" / WEIGHT_FILES[name]
    url = {"efficientnet_b0": torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.url,
           "inception_v3": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.url}[name]
    assert WEIGHT_FILES[name] == url.rsplit("/", 1)[1]
    torch.manual_seed(123)
    if name == "inception_v3":
        ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    else:
        ref = torchvision.models.efficientnet_b0(weights=None)
    state = ref.state_dict()
    weights_path(name).parent.mkdir(parents=True)
    torch.save(state, weights_path(name))
    torch.manual_seed(999)  # a different init: equality below can only come from the file
    for mode in ("auto", "yes"):
        m, info = build_model(name, 2, 75 if name == "inception_v3" else 32, pretrained=mode)
        assert info["pretrained_weights"] == str(weights_path(name))
        got = m.state_dict()
        shared = [k for k in state if k in got and got[k].shape == state[k].shape]
        assert len(shared) > 0.9 * len(state)
        for k in shared:
            torch.testing.assert_close(got[k], state[k], rtol=0, atol=0, msg=k)
        first = "Conv2d_1a_3x3.conv.weight" if name == "inception_v3" else "features.0.0.weight"
        torch.testing.assert_close(got[first], state[first].sum(dim=1, keepdim=True))
    m, info = build_model(name, 2, 75 if name == "inception_v3" else 32, pretrained="no")
    assert info["pretrained_weights"] is None


@pytest.mark.parametrize("name", ["efficientnet_b0", "inception_v3"])
def test_pretrained_yes_without_file_names_it_and_the_command(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(HpcganError) as err:
        build_model(name, 2, 75, pretrained="yes")
    assert WEIGHT_FILES[name] in str(err.value) and fetch_command(name) in str(err.value)
    assert f"torchvision.models.{name}(weights='IMAGENET1K_V1')" in fetch_command(name)
    m, info = build_model(name, 2, 75, pretrained="auto")  # auto: random init, no error
    assert info["pretrained_weights"] is None


def test_corrupt_weights_file_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    p = weights_path("efficientnet_b0")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(HpcganError, match="delete the file"):
        build_model("efficientnet_b0", 2, 32, pretrained="auto")
