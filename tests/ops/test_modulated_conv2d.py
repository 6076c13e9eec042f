"""modulated_conv2d: the fused native path against the per-sample-weight reference."""

import importlib

import pytest
import torch
from torch.library import opcheck

from hpcgan.ops.modulated_conv2d import modulated_conv2d, modulated_conv2d_ref


def _data(N=3, cin=5, cout=4, res=6, k=3, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, cin, res, res, generator=g, dtype=torch.float64).to(device, dtype)
    w = torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64).to(device, dtype)
    s = (torch.randn(N, cin, generator=g, dtype=torch.float64) + 1).to(device, dtype)
    b = torch.randn(cout, generator=g, dtype=torch.float64).to(device, dtype)
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
def test_forward_matches_reference(case, noise_batch, demodulate, device):
    x, w, s, b = _data(k=case["k"], dtype=torch.float32, device=device)
    up, down, pad = case["up"], case["down"], case["padding"]
    ref0 = modulated_conv2d_ref(x, w, s, None, up=up, down=down, padding=pad, demodulate=demodulate)
    noise = None if noise_batch is None else torch.randn(noise_batch, 1, *ref0.shape[2:], device=device)
    kw = dict(up=up, down=down, padding=pad, demodulate=demodulate, bias=b, act="lrelu", clamp=3.0)
    y = modulated_conv2d(x, w, s, noise, impl="native", **kw)
    r = modulated_conv2d_ref(x, w, s, noise, **kw)
    torch.testing.assert_close(y, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_layouts_and_batch1(layout, device):
    x, w, s, b = _data(N=1, res=8, dtype=torch.float32, seed=1, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.cat([x, x], dim=3)[:, :, :, ::2]
        assert not x.is_contiguous()
    y = modulated_conv2d(x, w, s, padding=1, bias=b, act="lrelu")
    torch.testing.assert_close(y, modulated_conv2d_ref(x, w, s, padding=1, bias=b, act="lrelu"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("up", [1, 2])
def test_gradcheck_and_gradgradcheck_float64(up, device):
    x, w, s, b = _data(N=2, cin=3, cout=2, res=4, seed=2, device=device)
    noise = torch.randn(1, 1, 4 * up, 4 * up, dtype=torch.float64, device=device)
    args = [t.requires_grad_(True) for t in (x, w, s, noise, b)]
    fn = lambda x, w, s, n, b: modulated_conv2d(x, w, s, n, up=up, padding=1, bias=b, act="lrelu", clamp=2.0, impl="native")
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_path_length_style_double_backward_matches_reference(device):
    """Gradient w.r.t. styles with create_graph, then a loss of it, as path-length regularisation does."""
    x, w, s, b = _data(N=2, cin=4, cout=3, res=5, seed=3, device=device)
    results = []
    for impl in ("native", "ref"):
        wi, si, bi = w.clone().requires_grad_(), s.clone().requires_grad_(), b.clone().requires_grad_()
        img = modulated_conv2d(x, wi, si, up=2, padding=1, bias=bi, act="lrelu", impl=impl)
        to_rgb = wi[:1, :3, 1:2, 1:2]  # a 1x1 ToRGB-like layer sharing parameters
        img = modulated_conv2d(img, to_rgb, si[:, :3], padding=0, demodulate=False, impl=impl)
        pl_noise = torch.linspace(-1, 1, img.numel(), dtype=x.dtype, device=device).reshape(img.shape)
        (gs,) = torch.autograd.grad((img * pl_noise).sum(), si, create_graph=True)
        loss = gs.square().sum()
        results.append(torch.autograd.grad(loss, (wi, si, bi)))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r)


def test_fused_and_differentiable_backward_agree(device):
    """The fused backward kernels (no create_graph) equal the composed backward (create_graph)."""
    x, w, s, b = _data(N=3, cin=6, cout=5, res=7, seed=4, device=device)
    noise = torch.randn(3, 1, 7, 7, dtype=torch.float64, device=device)
    grads = []
    for create_graph in (False, True):
        args = [t.clone().requires_grad_(True) for t in (x, w, s, noise, b)]
        y = modulated_conv2d(*args[:4], padding=1, bias=args[4], act="swish", clamp=1.5)
        grads.append(torch.autograd.grad((y * y.detach().cos()).sum(), args, create_graph=create_graph))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r.detach())


# Half x with float32 weight, styles, noise and bias (as mixed precision runs
# it) against the float32 reference on the same, upcast x. Error sources: the
# weight, x * styles, the convolution output and the result are each rounded
# to the half type once. Tolerances are relative to the output's scale (|y|
# max); measured worst cases over 4 seeds: forward 1.0e-3 (fp16) and 7.2e-3
# (bf16), gradients (checked at 2x the tolerance) 2.6e-3 and 2.7e-2.
MC_HALF_TOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2}
HALF = [pytest.param(torch.float16, id="fp16"), pytest.param(torch.bfloat16, id="bf16")]


def _close_scaled(a, r, tol):
    torch.testing.assert_close(a.float(), r.float(), rtol=tol, atol=tol * r.abs().max().item())


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: "up{up}-down{down}".format(**c))
@pytest.mark.parametrize("demodulate", [True, False])
def test_half_x_with_float32_parameters(case, dtype, demodulate, device):
    x, w, s, b = _data(N=2, cin=6, cout=5, res=8, dtype=torch.float32, seed=5, device=device)
    up, down, pad = case["up"], case["down"], case["padding"]
    noise = torch.randn(2, 1, 8 * up // down, 8 * up // down, generator=torch.Generator().manual_seed(1)).to(device)
    xh = x.to(dtype)
    # a smooth activation and a clamp that no output reaches: at a kink (lrelu's 0, the clamp
    # edge) a half and a float32 value can fall on either side, and the gradient jumps there
    # (bias_act's tests cover kinks and clamp per element)
    kw = dict(up=up, down=down, padding=pad, demodulate=demodulate, act="swish", clamp=64.0)
    args = [t.clone().requires_grad_() for t in (w, s, noise, b)]
    y = modulated_conv2d(xh.requires_grad_(), args[0], args[1], args[2], bias=args[3], **kw)
    assert y.dtype == dtype
    ref_args = [t.clone().requires_grad_() for t in (w, s, noise, b)]
    xr = xh.detach().float().requires_grad_()
    r = modulated_conv2d_ref(xr, ref_args[0], ref_args[1], ref_args[2], bias=ref_args[3], **kw)
    tol = MC_HALF_TOL[dtype]
    _close_scaled(y, r, tol)
    # gradients reach every input in its own dtype
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(device)
    grads = torch.autograd.grad(y, [xh, *args], gy.to(dtype))
    ref_grads = torch.autograd.grad(r, [xr, *ref_args], gy)
    assert grads[0].dtype == dtype and all(g.dtype == torch.float32 for g in grads[1:])
    for a, e in zip(grads, ref_grads):
        _close_scaled(a, e, 2 * tol)


@pytest.mark.parametrize("dtype", HALF)
def test_half_styles_that_overflow_float16_without_prenormalisation(dtype, device):
    """styles of 1e4 on activations of 1e2: x * styles is beyond float16's 65504, the
    demodulated result is not; the native path stays finite and correct."""
    x, w, s, b = _data(N=2, cin=4, cout=3, res=6, dtype=torch.float32, seed=6, device=device)
    x, s = x * 100, s * 1e4
    y = modulated_conv2d(x.to(dtype), w, s, padding=1, bias=b, act="lrelu")
    assert torch.isfinite(y).all()
    _close_scaled(y, modulated_conv2d_ref(x.to(dtype).float(), w, s, padding=1, bias=b, act="lrelu"), MC_HALF_TOL[dtype])


@pytest.mark.parametrize("dtype", HALF)
def test_opcheck_fused_pieces_half(dtype, device):
    x, w, s, b = _data(N=2, cin=3, cout=3, res=4, dtype=dtype, device=device)
    d = (torch.rand(2, 3, device=device) + 0.5).to(dtype)
    noise = torch.randn(2, 1, 4, 4, device=device).to(dtype)
    xr, sr = x.clone().requires_grad_(), s.clone().requires_grad_()
    opcheck(torch.ops.hpcgan.modulate.default, (xr, sr, True))
    opcheck(torch.ops.hpcgan.modulate_backward.default, (torch.randn_like(x).requires_grad_(), xr, sr))
    z = torch.randn(2, 3, 4, 4, device=device).to(dtype).requires_grad_()
    opcheck(torch.ops.hpcgan.modconv_epilogue.default, (z, d.requires_grad_(), noise.requires_grad_(), b.requires_grad_(), 2, 0.2, 1.4, 1.0))
    zc = z.detach().contiguous(memory_format=torch.channels_last)
    opcheck(torch.ops.hpcgan.modconv_epilogue_backward.default, (torch.randn_like(zc), zc, d.detach(), noise.detach(), b.detach(), 8, 0.0, 1.4, -1.0))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "up{up}-down{down}-p{padding}-k{k}".format(**c))
@pytest.mark.parametrize("act,gain,alpha,clamp", [("lrelu", None, None, None), ("lrelu", 0.3, 0.37, 0.9), ("swish", 3.7, None, 2.0), ("linear", -1 / 3, None, None)])
def test_float64_matches_reference_to_1e12(case, act, gain, alpha, clamp, device):
    x, w, s, b = _data(N=2, k=case["k"], seed=7, device=device)
    up, down, pad = case["up"], case["down"], case["padding"]
    ref0 = modulated_conv2d_ref(x, w, s, None, up=up, down=down, padding=pad)
    noise = torch.randn(2, 1, *ref0.shape[2:], dtype=torch.float64, device=device)
    f = torch.tensor([1.0, 2.0, 4.0, 1.0], dtype=torch.float64, device=device) / 8  # not exact in float32 after outer * gain
    kw = dict(up=up, down=down, padding=pad, bias=b, act=act, alpha=alpha, gain=gain, clamp=clamp, resample_filter=f)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        y = modulated_conv2d(xin, w, s, noise, impl="native", **kw)
        r = modulated_conv2d_ref(x, w, s, noise, **kw)
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, r, rtol=1e-12, atol=1e-12 * r.abs().max().item())


def test_opcheck_fused_pieces(device):
    x, w, s, b = _data(N=2, cin=3, cout=3, res=4, device=device)
    d = torch.rand(2, 3, dtype=torch.float64, device=device) + 0.5
    noise = torch.randn(2, 1, 4, 4, dtype=torch.float64, device=device)
    xr, sr = x.clone().requires_grad_(), s.clone().requires_grad_()
    opcheck(torch.ops.hpcgan.modulate.default, (xr, sr, True))
    opcheck(torch.ops.hpcgan.modulate.default, (xr, sr, False))
    xcl = xr.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    opcheck(torch.ops.hpcgan.modulate.default, (xcl, sr, False))
    gxs = torch.randn_like(x)
    opcheck(torch.ops.hpcgan.modulate_backward.default, (gxs.requires_grad_(), xr, sr))
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True, device=device)
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
        (lambda a: a.update(up=True), "up must be an int"),  # bool is not an int, as in upfirdn2d
        (lambda a: a.update(padding=[1, False]), "padding must be an int"),
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
def test_both_internal_layouts(monkeypatch, cl_threshold, up, device):
    """The native path picks channels_last or NCHW for its convolution by size; both are exact."""
    mc = importlib.import_module("hpcgan.ops.modulated_conv2d")  # the module, not the function
    monkeypatch.setattr(mc, "CHANNELS_LAST_MIN_PIXELS", cl_threshold)
    x, w, s, b = _data(N=2, cin=3, cout=2, res=4, seed=6, device=device)
    noise = torch.randn(2, 1, 4 * up, 4 * up, dtype=torch.float64, device=device)
    fn = lambda x, w, s, n, b: modulated_conv2d(x, w, s, n, up=up, padding=1, bias=b, act="lrelu", clamp=2.0)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        args = [t.clone().requires_grad_(True) for t in (xin, w, s, noise, b)]
        torch.testing.assert_close(fn(*args), modulated_conv2d_ref(*args[:4], up=up, padding=1, bias=args[4], act="lrelu", clamp=2.0))
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)
