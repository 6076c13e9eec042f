"""modulated_conv2d: the fused native path against the per-sample-weight reference."""

import importlib

import pytest
import torch
from torch.library import opcheck

from hpcgan.ops.modulated_conv2d import modulated_conv2d, modulated_conv2d_ref


def _data(N=3, cin=5, cout=4, res=6, k=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, cin, res, res, generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64).to(dtype)
    s = (torch.randn(N, cin, generator=g, dtype=torch.float64) + 1).to(dtype)
    b = torch.randn(cout, generator=g, dtype=torch.float64).to(dtype)
    return x, w, s, b


CASES = [
    dict(up=1, down=1, padding=1, k=3),
    dict(up=2, down=1, padding=1, k=3),
    dict(up=1, down=2, padding=1, k=3),
    dict(up=1, down=1, padding=0, k=1),  # ToRGB
    dict(up=1, down=1, padding=2, k=5),
    dict(up=2, down=1, padding=0, k=3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "up{up}-down{down}-p{padding}-k{k}".format(**c))
@pytest.mark.parametrize("noise_batch", [None, 1, 3])
@pytest.mark.parametrize("demodulate", [True, False])
def test_forward_matches_reference(case, noise_batch, demodulate):
    x, w, s, b = _data(k=case["k"], dtype=torch.float32)
    up, down, pad = case["up"], case["down"], case["padding"]
    ref0 = modulated_conv2d_ref(x, w, s, None, up=up, down=down, padding=pad, demodulate=demodulate)
    noise = None if noise_batch is None else torch.randn(noise_batch, 1, *ref0.shape[2:])
    kw = dict(up=up, down=down, padding=pad, demodulate=demodulate, bias=b, act="lrelu", clamp=3.0)
    y = modulated_conv2d(x, w, s, noise, impl="native", **kw)
    r = modulated_conv2d_ref(x, w, s, noise, **kw)
    torch.testing.assert_close(y, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_layouts_and_batch1(layout):
    x, w, s, b = _data(N=1, res=8, dtype=torch.float32, seed=1)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.cat([x, x], dim=3)[:, :, :, ::2]
        assert not x.is_contiguous()
    y = modulated_conv2d(x, w, s, padding=1, bias=b, act="lrelu")
    torch.testing.assert_close(y, modulated_conv2d_ref(x, w, s, padding=1, bias=b, act="lrelu"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("up", [1, 2])
def test_gradcheck_and_gradgradcheck_float64(up):
    x, w, s, b = _data(N=2, cin=3, cout=2, res=4, seed=2)
    noise = torch.randn(1, 1, 4 * up, 4 * up, dtype=torch.float64)
    args = [t.requires_grad_(True) for t in (x, w, s, noise, b)]
    fn = lambda x, w, s, n, b: modulated_conv2d(x, w, s, n, up=up, padding=1, bias=b, act="lrelu", clamp=2.0, impl="native")
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_path_length_style_double_backward_matches_reference():
    """Gradient w.r.t. styles with create_graph, then a loss of it, as path-length regularisation does."""
    x, w, s, b = _data(N=2, cin=4, cout=3, res=5, seed=3)
    results = []
    for impl in ("native", "ref"):
        wi, si, bi = w.clone().requires_grad_(), s.clone().requires_grad_(), b.clone().requires_grad_()
        img = modulated_conv2d(x, wi, si, up=2, padding=1, bias=bi, act="lrelu", impl=impl)
        to_rgb = wi[:1, :3, 1:2, 1:2]  # a 1x1 ToRGB-like layer sharing parameters
        img = modulated_conv2d(img, to_rgb, si[:, :3], padding=0, demodulate=False, impl=impl)
        pl_noise = torch.linspace(-1, 1, img.numel(), dtype=x.dtype).reshape(img.shape)
        (gs,) = torch.autograd.grad((img * pl_noise).sum(), si, create_graph=True)
        loss = gs.square().sum()
        results.append(torch.autograd.grad(loss, (wi, si, bi)))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r)


def test_fused_and_differentiable_backward_agree():
    """The fused backward kernels (no create_graph) equal the composed backward (create_graph)."""
    x, w, s, b = _data(N=3, cin=6, cout=5, res=7, seed=4)
    noise = torch.randn(3, 1, 7, 7, dtype=torch.float64)
    grads = []
    for create_graph in (False, True):
        args = [t.clone().requires_grad_(True) for t in (x, w, s, noise, b)]
        y = modulated_conv2d(*args[:4], padding=1, bias=args[4], act="swish", clamp=1.5)
        grads.append(torch.autograd.grad((y * y.detach().cos()).sum(), args, create_graph=create_graph))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r.detach())


def test_float16_on_cpu():
    x, w, s, b = _data(dtype=torch.float16, seed=5)
    y = modulated_conv2d(x, w, s, padding=1, bias=b, act="lrelu")
    assert y.dtype == torch.float16
    r = modulated_conv2d_ref(x.float(), w.float(), s.float(), padding=1, bias=b.float(), act="lrelu")
    torch.testing.assert_close(y.float(), r, rtol=1e-2, atol=1e-2)


def test_opcheck_fused_pieces():
    x, w, s, b = _data(N=2, cin=3, cout=3, res=4)
    d = torch.rand(2, 3, dtype=torch.float64) + 0.5
    noise = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    xr, sr = x.clone().requires_grad_(), s.clone().requires_grad_()
    opcheck(torch.ops.hpcgan.modulate.default, (xr, sr, True))
    opcheck(torch.ops.hpcgan.modulate.default, (xr, sr, False))
    xcl = xr.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    opcheck(torch.ops.hpcgan.modulate.default, (xcl, sr, False))
    gxs = torch.randn_like(x)
    opcheck(torch.ops.hpcgan.modulate_backward.default, (gxs.requires_grad_(), xr, sr))
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    opcheck(torch.ops.hpcgan.modconv_epilogue.default, (z, d.requires_grad_(), noise.requires_grad_(), b.requires_grad_(), 2, 0.2, 1.4, 1.0))
    zc = z.detach().contiguous(memory_format=torch.channels_last)
    opcheck(torch.ops.hpcgan.modconv_epilogue_backward.default, (torch.randn_like(zc), zc, d.detach(), None, b.detach(), 2, 0.2, 1.4, -1.0))


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: a.update(x=a["x"][0]), "x must be 4-D"),
        (lambda a: a.update(weight=a["weight"][:, :2]), "input channels"),
        (lambda a: a.update(styles=a["styles"][:, :2]), "styles must have shape"),
        (lambda a: a.update(up=0), "up must be"),
        (lambda a: a.update(down=0), "down must be"),
        (lambda a: a.update(noise=torch.zeros(3, 2, 6, 6)), "noise must have shape"),
        (lambda a: a.update(bias=torch.zeros(7)), "bias must have shape"),
        (lambda a: a.update(act="nope"), "act"),
        (lambda a: a.update(resample_filter=torch.ones(2, 2, 2), up=2), "resample_filter"),
    ],
)
def test_bad_arguments(change, match):
    x, w, s, b = _data()
    args = dict(x=x, weight=w, styles=s, padding=1)
    change(args)
    with pytest.raises(ValueError, match=match):
        modulated_conv2d(**args)


@pytest.mark.parametrize("cl_threshold", [0, 10**9], ids=["channels_last-conv", "nchw-conv"])
@pytest.mark.parametrize("up", [1, 2])
def test_both_internal_layouts(monkeypatch, cl_threshold, up):
    """The native path picks channels_last or NCHW for its convolution by size; both are exact."""
    mc = importlib.import_module("hpcgan.ops.modulated_conv2d")  # the module, not the function
    monkeypatch.setattr(mc, "CHANNELS_LAST_MIN_PIXELS", cl_threshold)
    x, w, s, b = _data(N=2, cin=3, cout=2, res=4, seed=6)
    noise = torch.randn(2, 1, 4 * up, 4 * up, dtype=torch.float64)
    fn = lambda x, w, s, n, b: modulated_conv2d(x, w, s, n, up=up, padding=1, bias=b, act="lrelu", clamp=2.0)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        args = [t.clone().requires_grad_(True) for t in (xin, w, s, noise, b)]
        torch.testing.assert_close(fn(*args), modulated_conv2d_ref(*args[:4], up=up, padding=1, bias=args[4], act="lrelu", clamp=2.0))
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)
