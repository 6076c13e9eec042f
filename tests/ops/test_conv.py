"""hpcgan.ops.conv: bfloat16 convolutions widened to float32 on CPUs without native bfloat16."""

import pytest
import torch
import torch.nn.functional as F

from hpcgan.ops import conv

BF16_EPS = 2.0 ** -8  # bfloat16 keeps 8 significant bits: one rounding is within 2^-8 relative


def _inputs(seed, shape_x, shape_w):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=g).to(torch.bfloat16)
    w = torch.randn(shape_w, generator=g).to(torch.bfloat16)
    return x, w


def _close_to_rounded(y, exact):
    """y (bfloat16) is the float64 result rounded once: within one bfloat16 rounding of it."""
    err = (y.double() - exact).abs()
    assert y.dtype == torch.bfloat16
    assert bool((err <= BF16_EPS * exact.abs() + 1e-6).all()), float((err / exact.abs().clamp_min(1e-3)).max())


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 0, 1), (1, 1, 2)])
def test_widened_conv2d_is_the_exact_result_rounded_once(stride, padding, groups):
    x, w = _inputs(0, (2, 4, 9, 9), (6, 4 // groups, 3, 3))
    exact = F.conv2d(x.double(), w.double(), stride=stride, padding=padding, groups=groups)
    _close_to_rounded(conv.conv2d(x, w, stride=stride, padding=padding, groups=groups, widen=True), exact)
    _close_to_rounded(conv.conv2d(x, w, stride=stride, padding=padding, groups=groups), exact)


def test_widened_conv_transpose2d_is_the_exact_result_rounded_once():
    x, w = _inputs(1, (2, 4, 5, 5), (4, 3, 3, 3))
    exact = F.conv_transpose2d(x.double(), w.double(), stride=2)
    y = conv.conv_transpose2d(x, w, stride=2, widen=True)
    assert y.shape == (2, 3, 11, 11)
    _close_to_rounded(y, exact)


def test_gradients_of_both_orders_match_torchs_bfloat16_convolution():
    """Widened and plain bfloat16 convolutions give the same first and second derivatives
    (R1 and path length differentiate through the convolutions twice), to bfloat16 rounding."""
    x0, w0 = _inputs(2, (2, 3, 6, 6), (4, 3, 3, 3))

    def grads(widen):
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        y = conv.conv2d(x, w, padding=1, widen=widen)
        (gx,) = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
        gx.float().square().sum().backward()
        return gx.detach().double(), w.grad.double()

    for a, b in zip(grads(True), grads(False)):
        assert a.abs().max() > 0
        assert float((a - b).norm() / b.norm()) < 4 * BF16_EPS


def test_only_bfloat16_on_a_cpu_without_native_bfloat16_widens():
    x = torch.zeros(1, 1, 2, 2)
    assert not conv.widens(x)
    assert not conv.widens(x.half())
    assert not conv.widens(x.double())
    assert conv.widens(x.bfloat16()) == (not conv.cpu_has_native_bfloat16())
    assert conv.widens_for("cpu", torch.bfloat16) == (not conv.cpu_has_native_bfloat16())
    assert not conv.widens_for("cpu", torch.float32)
    assert not conv.widens_for("cuda", torch.bfloat16)  # CUDA convolutions are never widened


def test_other_dtypes_call_torch_unchanged():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 7, 7, generator=g)
    w = torch.randn(5, 3, 3, 3, generator=g)
    assert torch.equal(conv.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    wt = torch.randn(3, 5, 3, 3, generator=g)
    assert torch.equal(conv.conv_transpose2d(x, wt, stride=2), F.conv_transpose2d(x, wt, stride=2))
