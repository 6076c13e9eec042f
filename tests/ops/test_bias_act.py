"""bias_act: native kernels against the plain-PyTorch reference."""

import math

import pytest
import torch
from torch.library import opcheck

from hpcgan.ops import ACTIVATIONS, bias_act, bias_act_ref
from hpcgan.ops.bias_act import resolve_act

ACTS = sorted(ACTIVATIONS)


def _data(shape, dim, dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype) * 2
    b = torch.randn(shape[dim], generator=g, dtype=torch.float64).to(device, dtype)
    return x, b


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_forward_matches_reference_float32(act, clamp, device):
    x, b = _data((3, 7, 5, 6), 1, torch.float32, device=device)
    y = bias_act(x, b, act=act, clamp=clamp, impl="native")
    r = bias_act_ref(x, b, act=act, clamp=clamp)
    torch.testing.assert_close(y, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_and_gradgradcheck_float64(act, device):
    x, b = _data((2, 3, 4, 3), 1, torch.float64, seed=1, device=device)
    x.requires_grad_(True)
    b.requires_grad_(True)
    # keep away from the kinks of relu/lrelu/elu and the clamp edges, where finite differences are invalid
    with torch.no_grad():
        x += 0.05 * torch.sign(x + b[None, :, None, None])
    fn = lambda x, b: bias_act(x, b, act=act, alpha=None, gain=1.3, clamp=2.5, impl="native")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("act", ["lrelu", "swish", "tanh"])
def test_gradients_match_reference(act, device):
    x, b = _data((4, 6, 3, 3), 1, torch.float64, seed=2, device=device)
    outs = []
    for impl in ("native", "ref"):
        xi, bi = x.clone().requires_grad_(), b.clone().requires_grad_()
        y = bias_act(xi, bi, act=act, clamp=1.0, impl=impl)
        (gx, gb) = torch.autograd.grad((y * y).sum(), (xi, bi), create_graph=True)
        (ggx,) = torch.autograd.grad((gx.square().sum() + gb.sum()), xi)
        outs.append((y, gx, gb, ggx))
    for a, r in zip(*outs):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("dim,shape", [(0, (5, 3)), (1, (2, 5, 3)), (2, (2, 3, 5, 4)), (-1, (3, 4, 5))])
def test_any_dim(dim, shape, device):
    x, b = _data(shape, dim, torch.float32, seed=3, device=device)
    torch.testing.assert_close(bias_act(x, b, dim=dim, act="lrelu"), bias_act_ref(x, b, dim=dim % len(shape), act="lrelu"))


def test_no_bias_and_defaults():
    x, _ = _data((2, 3, 4, 4), 1, torch.float32)
    y = bias_act(x, act="lrelu")
    expected = torch.where(x > 0, x, 0.2 * x) * math.sqrt(2)
    torch.testing.assert_close(y, expected)
    assert resolve_act("relu").gain == pytest.approx(math.sqrt(2))
    assert resolve_act("swish").gain == pytest.approx(math.sqrt(2))
    assert resolve_act("tanh").gain == 1.0
    assert resolve_act("lrelu").alpha == pytest.approx(0.2)


def test_layouts_channels_last_noncontiguous_batch1(device):
    x, b = _data((1, 8, 5, 7), 1, torch.float32, seed=4, device=device)
    xc = x.contiguous(memory_format=torch.channels_last)
    y = bias_act(xc, b, act="lrelu", clamp=1.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, bias_act_ref(x, b, act="lrelu", clamp=1.0))
    big, _ = _data((2, 8, 10, 7), 1, torch.float32, seed=5, device=device)
    sliced = big[:, :, ::2, 1:]
    assert not sliced.is_contiguous()
    torch.testing.assert_close(bias_act(sliced, b, act="elu"), bias_act_ref(sliced, b, act="elu"))


# Half inputs are computed in float32 and rounded once: against the float32
# reference on the same (upcast) inputs, the error is the output's rounding,
# half an ulp (2^-11 relative for float16, 2^-8 for bfloat16).
HALF_TOL = {torch.float16: dict(rtol=1e-3, atol=1e-5), torch.bfloat16: dict(rtol=8e-3, atol=1e-5)}
HALF = [pytest.param(torch.float16, id="fp16"), pytest.param(torch.bfloat16, id="bf16")]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_half_forward_is_float32_rounded_once(act, dtype, layout, device):
    x, b = _data((2, 6, 5, 4), 1, dtype, seed=8, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    y = bias_act(x, b, act=act, alpha=0.3, gain=1.3, clamp=2.0)
    assert y.dtype == dtype and y.device == x.device
    r = bias_act_ref(x.float(), b.float(), act=act, alpha=0.3, gain=1.3, clamp=2.0)
    torch.testing.assert_close(y.float(), r, **HALF_TOL[dtype])


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("act", ["lrelu", "swish", "tanh"])
def test_half_gradients_match_float32(act, dtype, device):
    x, b = _data((3, 5, 4, 4), 1, dtype, seed=9, device=device)
    dy = _data((3, 5, 4, 4), 1, dtype, seed=10, device=device)[0]
    grads = []
    for t in (dtype, torch.float32):
        xi, bi = x.to(t).requires_grad_(), b.to(t).requires_grad_()
        y = bias_act(xi, bi, act=act, clamp=2.5)
        (gx, gb) = torch.autograd.grad(y, (xi, bi), dy.to(t), create_graph=True)
        (ggx,) = torch.autograd.grad(gx.square().sum(), xi)
        assert gx.dtype == gb.dtype == ggx.dtype == t
        grads.append((gx, gb, ggx))
    tol = HALF_TOL[dtype]
    for a, r in zip(*grads):  # gb sums 48 rounded terms in float32: scale atol by the sum's size
        torch.testing.assert_close(a.float(), r, rtol=4 * tol["rtol"], atol=4 * tol["rtol"] * r.abs().max().item())


@pytest.mark.parametrize("dtype", HALF)
def test_opcheck_half(dtype, device):
    x, b = _data((2, 3, 4, 4), 1, dtype, device=device)
    x.requires_grad_(True)
    b.requires_grad_(True)
    opcheck(torch.ops.hpcgan.bias_act.default, (x, b, 1, 2, 0.2, 1.4, 0.5))
    dy = torch.randn_like(x)
    opcheck(torch.ops.hpcgan.bias_act_grad.default, (dy, x, b, 1, 8, 0.0, 1.0, -1.0, 1))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gain,alpha,clamp", [(1.0, None, None), (0.3, 0.37, 0.9), (math.pi, 1.7, 2.2), (-2.5, 0.05, None)])
def test_float64_matches_reference_to_1e12(act, gain, alpha, clamp, device):
    """float64 is float64 all the way: no parameter is rounded to float32 anywhere."""
    x, b = _data((2, 5, 6, 3), 1, torch.float64, seed=11, device=device)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        y = bias_act(xin, b, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="native")
        r = bias_act_ref(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp)
        torch.testing.assert_close(y, r, rtol=1e-12, atol=1e-12 * r.abs().max().item())


def test_opcheck(device):
    x, b = _data((2, 3, 4, 4), 1, torch.float64, device=device)
    x.requires_grad_(True)
    b.requires_grad_(True)
    opcheck(torch.ops.hpcgan.bias_act.default, (x, b, 1, 2, 0.2, 1.4, 0.5))
    opcheck(torch.ops.hpcgan.bias_act.default, (x, None, 1, 8, 0.0, 1.0, -1.0))
    dy = torch.randn_like(x)
    opcheck(torch.ops.hpcgan.bias_act_grad.default, (dy, x, b, 1, 3, 0.0, 1.0, -1.0, 1))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(act="gelu"), "act"),
        (dict(dim=4), "dim"),
        (dict(clamp=-1.0), "clamp"),
        (dict(b=torch.zeros(5)), "b must have shape"),
        (dict(b=torch.zeros(3, dtype=torch.float64)), "b must have the dtype"),
        (dict(impl="fast"), "impl"),
    ],
)
def test_bad_arguments(kwargs, match):
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=match):
        bias_act(x, **kwargs)


def test_integer_input_rejected():
    with pytest.raises(ValueError, match="x must be a floating-point"):
        bias_act(torch.zeros(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 4, 3, 3), (4, 2, 9, 40), (3, 5000)], ids=str)
@pytest.mark.parametrize("act", ["lrelu", "tanh"])
def test_every_row_layout_path(shape, act, device):
    """Long rows (one call per row), short rows (a bias pattern per sample), a single row."""
    x, b = _data(shape, 1, torch.float32, seed=7, device=device)
    torch.testing.assert_close(bias_act(x, b, act=act, clamp=0.9), bias_act_ref(x, b, act=act, clamp=0.9), rtol=1e-5, atol=1e-6)
    xd, bd = x.double().requires_grad_(), b.double().requires_grad_()
    (gx, gb) = torch.autograd.grad(bias_act(xd, bd, act=act).square().sum(), (xd, bd))
    xr, br = x.double().requires_grad_(), b.double().requires_grad_()
    (rx, rb) = torch.autograd.grad(bias_act_ref(xr, br, act=act).square().sum(), (xr, br))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gb, rb)
