"""upfirdn2d: the native kernel against the plain-PyTorch reference, gradients,
opcheck, argument validation and the resampling helpers."""

import math

import pytest
import torch

from hpcgan.ops import _native
from hpcgan.ops.upfirdn2d import (
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)


def _tol(dtype):
    if dtype == torch.float64:  # float64 is float64 throughout (gain, filter, sums)
        return dict(rtol=1e-12, atol=1e-12)
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=1e-5)
    return dict(rtol=1e-2, atol=1e-2)


def _check(x, f, **kw):
    y = upfirdn2d(x, f, impl="native", **kw)
    r = upfirdn2d_ref(x, f, **kw)
    assert y.shape == r.shape
    assert y.dtype == x.dtype
    torch.testing.assert_close(y, r, **_tol(x.dtype))
    return y


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_native_extension_present():
    assert _native.available(), f"hpcgan._C is not built: {_native.import_error()}"


# (up, down, padding, filter taps (1-D: separable, tuple of 2: 2-D shape))
STYLEGAN_CASES = [
    (2, 1, [2, 1, 2, 1], 4),  # upsample2d, 4-tap filter
    (1, 2, [1, 1, 1, 1], 4),  # downsample2d, 4-tap filter
    (1, 1, [2, 1, 2, 1], 4),  # filter2d
    (1, 1, [1, 1, 1, 1], 4),  # conv-transpose style (stride-2 conv follow-up blur)
    (1, 1, [2, 2, 2, 2], 4),  # conv2d_resample down path, pad (fw - down + kw - 1) // 2
    (2, 1, [1, 1, 1, 1], 4),  # modulated conv2d up path
    (1, 1, [3, 2, 3, 2], 6),
]

ODD_CASES = [
    (4, 1, [4, 3, 4, 3], 8),
    (1, 4, [2, 2, 2, 2], 8),
    (2, 2, [1, 2, 0, 1], 3),
    (3, 2, [0, 0, 1, 1], 5),
    ([2, 1], [1, 2], [2, 1, 0, 3], 4),
    (1, [3, 1], [1, -1, -2, 1], 3),
    (1, 1, [-1, -2, 0, -1], 2),
    (2, 3, [-3, 2, 4, -1], (3, 5)),
    (1, 1, [1, 2, 0, 1], (4, 1)),
    (3, 1, [0, 0, 0, 0], (2, 2)),
    (1, 1, 0, None),
    (2, 1, 0, None),
    (1, 2, [0, 1, 0, 1], None),
]


def _filter(spec, dtype=torch.float32, device="cpu"):
    if spec is None:
        return None
    if isinstance(spec, int):
        return (torch.rand(spec, dtype=dtype) + 0.1).to(device)
    return torch.randn(spec, dtype=dtype).to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("up, down, padding, fspec", STYLEGAN_CASES + ODD_CASES)
def test_native_matches_ref(up, down, padding, fspec, dtype, device):
    x = torch.randn(2, 3, 9, 10, dtype=dtype, device=device)
    f = _filter(fspec, device=device)
    for flip in (False, True):
        _check(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5)


@pytest.mark.parametrize("up, down, padding, fspec", STYLEGAN_CASES + ODD_CASES[:6])
def test_channels_last(up, down, padding, fspec, device):
    x = torch.randn(2, 5, 8, 7, device=device).to(memory_format=torch.channels_last)
    y = _check(x, _filter(fspec, device=device), up=up, down=down, padding=padding, gain=0.7)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert not y.is_contiguous()


def test_contiguous_output_stays_contiguous(device):
    y = _check(torch.randn(2, 3, 8, 8, device=device), _filter(4, device=device), up=2, padding=[2, 1, 2, 1])
    assert y.is_contiguous()


def test_2d_filter_flip_differs(device):
    x = torch.randn(1, 2, 6, 6, device=device)
    f = torch.randn(3, 3, device=device)
    a = _check(x, f, padding=1, flip_filter=False)
    b = _check(x, f, padding=1, flip_filter=True)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, upfirdn2d(x, f.flip([0, 1]), padding=1, flip_filter=True))


def test_separable_equals_outer_product(device):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, device=device)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64, device=device)
    a = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=3.0)
    b = upfirdn2d(x, torch.outer(f, f) * 3.0, up=2, padding=[2, 1, 2, 1])
    torch.testing.assert_close(a, b)


def test_non_contiguous_input(device):
    base = torch.randn(2, 6, 12, 11, device=device)
    x = base[:, 1::2, 1:, ::2]
    assert not x.is_contiguous()
    _check(x, _filter(4, device=device), up=2, down=1, padding=[2, 1, 2, 1])
    _check(x, _filter((3, 3), device=device), down=2, padding=1)
    xc = base.to(memory_format=torch.channels_last)[:, :, 1:-1]
    _check(xc, _filter(4, device=device), down=2, padding=1)


def test_batch_size_one_and_single_channel(device):
    _check(torch.randn(1, 1, 5, 7, device=device), _filter(4, device=device), up=2, padding=[2, 1, 2, 1])
    _check(torch.randn(1, 4, 1, 1, device=device), _filter(3, device=device), up=2, padding=2)


def test_empty_batch(device):
    y = upfirdn2d(torch.randn(0, 3, 8, 8, device=device), _filter(4, device=device), down=2, padding=1)
    assert y.shape == (0, 3, 4, 4)


# Half inputs accumulate in float32 and are rounded once: against the float32
# reference on the same (upcast) inputs the error is the output's rounding
# (2^-11 relative for float16, 2^-8 for bfloat16) plus float32 noise, relative
# to the output's scale where sums cancel.
HALF_TOL = {torch.float16: dict(rtol=1e-3, atol=1e-4), torch.bfloat16: dict(rtol=8e-3, atol=1e-3)}
HALF = [pytest.param(torch.float16, id="fp16"), pytest.param(torch.bfloat16, id="bf16")]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("up, down, padding, fspec", STYLEGAN_CASES[:3] + ODD_CASES[:4])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_half_accumulates_in_float32(up, down, padding, fspec, dtype, channels_last, device):
    x = torch.randn(2, 3, 9, 10, device=device).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    f = _filter(fspec, device=device)
    y = upfirdn2d(x, f, up=up, down=down, padding=padding, gain=1.5, impl="native")
    assert y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last or y.shape[2] * y.shape[3] == 1
    r = upfirdn2d_ref(x.float(), f, up=up, down=down, padding=padding, gain=1.5)
    torch.testing.assert_close(y.float(), r, **HALF_TOL[dtype])


@pytest.mark.parametrize("dtype", HALF)
def test_half_gradient_and_opcheck(dtype, device):
    f = setup_filter([1, 3, 3, 1], device=device)
    x = torch.randn(2, 3, 8, 8, device=device).to(dtype).requires_grad_()
    gy = torch.randn(2, 3, 16, 16, device=device).to(dtype)
    (gx,) = torch.autograd.grad(upsample2d(x, f), x, gy)
    xr = x.detach().float().requires_grad_()
    (rx,) = torch.autograd.grad(upsample2d(xr, f, impl="ref"), xr, gy.float())
    assert gx.dtype == dtype
    torch.testing.assert_close(gx.float(), rx, **HALF_TOL[dtype])
    torch.library.opcheck(torch.ops.hpcgan.upfirdn2d.default, (x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0))


@pytest.mark.parametrize("gain", [1.0, 0.3, 1 / 3, math.pi, -2.5, 1e-3])
@pytest.mark.parametrize("separable", [False, True])
def test_float64_gain_is_not_rounded_to_float32(gain, separable, device):
    """Filters made with setup_filter in float64 keep their gain (or its square root) in float64."""
    taps = [1.0, 3.0, 3.0, 1.0]
    f = setup_filter(torch.tensor(taps, dtype=torch.float64), gain=abs(gain), separable=separable, device=device)
    assert f.dtype == torch.float64
    assert setup_filter(taps, gain=gain if not separable else abs(gain), dtype=torch.float64).dtype == torch.float64
    t = torch.tensor(taps, dtype=torch.float64, device=device) / 8
    f2 = torch.outer(t, t) * abs(gain)  # the float64 reference filter, built by hand
    torch.testing.assert_close(torch.outer(f, f) if separable else f, f2, rtol=1e-15, atol=0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, device=device)
    for up, down, pad in ((2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]), (1, 1, [1, 2, 2, 1])):
        r = upfirdn2d_ref(x, f2, up=up, down=down, padding=pad, gain=gain / abs(gain))
        for xin in (x, x.to(memory_format=torch.channels_last)):
            y = upfirdn2d(xin, f, up=up, down=down, padding=pad, gain=gain / abs(gain), impl="native")
            torch.testing.assert_close(y, r, rtol=1e-12, atol=1e-12 * r.abs().max().item())
        y = upsample2d(x, f2, gain=gain) if up > 1 else downsample2d(x, f2, gain=gain)
        torch.testing.assert_close(y, (upsample2d if up > 1 else downsample2d)(x, f2, gain=gain, impl="ref"),
                                   rtol=1e-12, atol=1e-12 * y.abs().max().item())


def test_setup_filter_dtype():
    assert setup_filter([1, 2, 1]).dtype == torch.float32
    assert setup_filter(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)).dtype == torch.float64
    assert setup_filter(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), dtype=torch.float32).dtype == torch.float32
    # normalisation and gain in float64, rounded once: float32 result is the correctly rounded value
    f = setup_filter([1, 3, 3, 1], gain=0.3, separable=True)
    expected = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8 * math.sqrt(0.3)
    assert torch.equal(f, expected.float())
    with pytest.raises(ValueError, match="dtype"):
        setup_filter([1, 2, 1], dtype=torch.float16)


def test_gain_and_impl_ref(device):
    x = torch.randn(2, 3, 8, 8, device=device)
    f = _filter(4, device=device)
    a = upfirdn2d(x, f, padding=1, gain=-2.5)
    b = upfirdn2d(x, f, padding=1)
    torch.testing.assert_close(a, b * -2.5)
    torch.testing.assert_close(upfirdn2d(x, f, padding=1, impl="ref"), b)


# ---------------------------------------------------------------------------
# gradients and operator checks
# ---------------------------------------------------------------------------

GRAD_CASES = [
    (2, 1, [2, 1, 2, 1], 4),
    (1, 2, [1, 1, 1, 1], 4),
    (1, 1, [1, 2, 1, 0], (3, 2)),
    (3, 2, [1, -1, 0, 2], 3),
    ([1, 2], [2, 1], [0, 1, 2, 1], (2, 3)),
]


@pytest.mark.parametrize("up, down, padding, fspec", GRAD_CASES)
def test_gradcheck(up, down, padding, fspec, device):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True, device=device)
    f = _filter(fspec, torch.float64, device=device)
    for flip in (False, True):

        def fn(x, flip=flip):
            return upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.3, impl="native")

        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_grad_matches_ref_channels_last(device):
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    f = setup_filter([1, 3, 3, 1], device=device).double()
    xn = x.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    gy = torch.randn(2, 4, 12, 12, dtype=torch.float64, device=device)
    upsample2d(xn, f, impl="native").backward(gy)
    upsample2d(xr, f, impl="ref").backward(gy)
    torch.testing.assert_close(xn.grad, xr.grad)


@pytest.mark.parametrize(
    "args",
    [
        (2, 2, 1, 1, 2, 1, 2, 1, False, 1.0),
        (1, 1, 2, 2, 1, 1, 1, 1, True, 2.0),
        (3, 1, 1, 2, 0, -1, 2, 1, False, 0.5),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(args, channels_last, device):
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True, device=device)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    f = torch.randn(4, 4, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.hpcgan.upfirdn2d.default, (x, f, *args))


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def test_bad_arguments():
    x = torch.randn(1, 2, 8, 8)
    f = _filter(4)
    with pytest.raises(ValueError, match="x"):
        upfirdn2d(torch.randn(2, 8, 8), f)
    with pytest.raises(ValueError, match="x"):
        upfirdn2d(torch.zeros(1, 2, 8, 8, dtype=torch.int64), f)
    with pytest.raises(ValueError, match="f"):
        upfirdn2d(x, torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="f"):
        upfirdn2d(x, torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="up"):
        upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match="up"):
        upfirdn2d(x, f, up=[2, -1])
    with pytest.raises(ValueError, match="down"):
        upfirdn2d(x, f, down=0)
    with pytest.raises(ValueError, match="down"):
        upfirdn2d(x, f, down=-2)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d(x, f, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="larger than"):
        upfirdn2d(torch.randn(1, 2, 2, 2), torch.ones(4, 4))
    with pytest.raises(ValueError, match="larger than"):
        upfirdn2d(x, f, padding=-4)
    with pytest.raises(ValueError, match="f must be on the device"):
        upfirdn2d(x, f.to("meta"))
    with pytest.raises(ValueError, match="gain"):
        upfirdn2d(x, f, gain=float("nan"))
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(x, f, impl="fast")
    with pytest.raises(ValueError, match="up"):
        upfirdn2d_ref(x, f, up=0)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_filters_rejected(bad):
    x = torch.randn(1, 2, 8, 8)
    f = torch.ones(3, 3)
    f[1, 2] = bad
    with pytest.raises(ValueError, match="f must be finite"):
        upfirdn2d(x, f, padding=1)
    with pytest.raises(ValueError, match="f must be finite"):
        upfirdn2d(x.to(memory_format=torch.channels_last), f[1], padding=1)
    with pytest.raises(ValueError, match="f must be finite"):
        setup_filter([1.0, bad, 1.0])
    with pytest.raises(RuntimeError, match="finite"):  # the CPU kernel itself, called directly
        torch.ops.hpcgan.upfirdn2d(x, f, 1, 1, 1, 1, 1, 1, 1, 1, False, 1.0)
    with pytest.raises(RuntimeError, match="finite"):  # finite filter, gain overflows float32
        torch.ops.hpcgan.upfirdn2d(x, torch.ones(3, 3), 1, 1, 1, 1, 1, 1, 1, 1, False, 1e300)


def test_native_op_checks_raise():
    x = torch.randn(1, 2, 8, 8)
    f = torch.ones(3, 3)
    with pytest.raises(RuntimeError, match="up"):
        torch.ops.hpcgan.upfirdn2d(x, f, 0, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="larger"):
        torch.ops.hpcgan.upfirdn2d(x, f, 1, 1, 1, 1, -6, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="dimensions"):
        torch.ops.hpcgan.upfirdn2d(x[0], f, 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def test_setup_filter():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    fs = setup_filter([1, 3, 3, 1], separable=True)
    assert fs.shape == (4,)
    torch.testing.assert_close(torch.outer(fs, fs), f)
    assert setup_filter([1, 2, 3, 4, 5, 6, 7, 8]).ndim == 1  # long 1-D filters stay separable
    torch.testing.assert_close(setup_filter([1, 3, 3, 1], gain=4).sum(), torch.tensor(4.0))
    fg = setup_filter([1, 3, 3, 1], gain=4, separable=True)
    torch.testing.assert_close(torch.outer(fg, fg).sum(), torch.tensor(4.0))
    torch.testing.assert_close(setup_filter([1, 2], flip_filter=True, separable=True), torch.tensor([2.0, 1.0]) / 3)
    assert setup_filter(None).shape == (1, 1)
    with pytest.raises(ValueError, match="f"):
        setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="sum"):
        setup_filter([1, -1])


@pytest.mark.parametrize("f", [setup_filter([1, 3, 3, 1]), setup_filter([1, 3, 3, 1], separable=True), None])
def test_resample_helpers_sizes(f):
    x = torch.randn(2, 3, 8, 6)
    assert upsample2d(x, f).shape == (2, 3, 16, 12)
    assert upsample2d(x, f, up=[2, 1]).shape == (2, 3, 8, 12)
    assert downsample2d(x, f).shape == (2, 3, 4, 3)
    assert downsample2d(x, f, down=[3, 2]).shape == (2, 3, 4, 2)
    assert filter2d(x, f).shape == (2, 3, 8, 6)
    assert filter2d(x, f, padding=1).shape == (2, 3, 10, 8)


def test_resample_helpers_preserve_brightness():
    x = torch.ones(1, 2, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    assert torch.allclose(upsample2d(x, f)[..., 2:-2, 2:-2], torch.ones(()))
    assert torch.allclose(downsample2d(x, f)[..., 1:-1, 1:-1], torch.ones(()))
    assert torch.allclose(filter2d(x, f)[..., 2:-2, 2:-2], torch.ones(()))


@pytest.mark.parametrize("impl", ["native", "ref"])
def test_resample_helpers_native_vs_ref(impl, device):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, device=device)
    f = setup_filter([1, 3, 3, 1], device=device).double()
    for op in (upsample2d, downsample2d, filter2d):
        torch.testing.assert_close(op(x, f, impl=impl), op(x, f, impl="ref"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_tall_image_large_filter(channels_last, device):
    # outH * fh * fw > 2**18: the kernel builds its tap lists row by row
    x = torch.randn(1, 2, 1030, 5, dtype=torch.float64, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    _check(x, torch.randn(16, 16, dtype=torch.float64, device=device), up=[1, 2], padding=[8, 7, 8, 8])


# ---------------------------------------------------------------------------
# NCHW flat path: groups of small planes, bands of large planes, odd sizes
# ---------------------------------------------------------------------------

FLAT_CASES = [
    (2, 1, [2, 1, 2, 1], 4),
    (1, 2, [1, 1, 1, 1], 4),
    (1, 2, [2, 2, 2, 2], 4),
    (1, 3, [1, 2, 0, 1], 5),
    (3, 2, [0, 0, 1, 1], 5),
    (2, 3, [-3, 2, 4, -1], (3, 5)),
    (1, 2, [-2, -1, -1, -3], 4),
]


@pytest.mark.parametrize("up, down, padding, fspec", FLAT_CASES)
@pytest.mark.parametrize("shape", [(3, 50, 4, 4), (2, 7, 9, 5), (1, 3, 17, 16), (1, 2, 1, 1)])
def test_flat_many_small_planes(up, down, padding, fspec, shape, device):
    # many planes per work item, including a partial last group
    x = torch.randn(*shape, device=device)
    f = _filter(fspec, device=device)
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else tuple(f.shape)
    if x.shape[2] * up + sum(padding[2:]) < fh or x.shape[3] * up + sum(padding[:2]) < fw:
        # the filter does not fit the padded input: an error that names the cause, never an empty tensor
        with pytest.raises(ValueError, match="filter"):
            upfirdn2d(x, f, up=up, down=down, padding=padding, gain=1.7)
        return
    _check(x, f, up=up, down=down, padding=padding, gain=1.7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("up, down, padding, fspec", FLAT_CASES[:4])
def test_flat_large_planes_banded(up, down, padding, fspec, dtype, device):
    # planes larger than the per-item cache budget are cut into bands of rows
    x = torch.randn(1, 2, 203, 231, dtype=dtype, device=device)
    _check(x, _filter(fspec, device=device), up=up, down=down, padding=padding, flip_filter=True, gain=0.9)


def test_flat_threads_and_stylegan_shapes(device):
    f = setup_filter([1, 3, 3, 1], device=device)
    for R, C in ((4, 64), (8, 32), (33, 3)):
        x = torch.randn(3, C, R, R, device=device)
        torch.testing.assert_close(upsample2d(x, f, impl="native"), upsample2d(x, f, impl="ref"), rtol=1e-5, atol=1e-5)
        if R >= 8:
            torch.testing.assert_close(downsample2d(x, f, impl="native"), downsample2d(x, f, impl="ref"), rtol=1e-5, atol=1e-5)
