"""Time the native ops against their plain-PyTorch references at StyleGAN2 shapes.

For a 256x256 StyleGAN2 (channel_base 16384, channel_max 512: 512 channels up
to 32x32, then 256, 128, 64) and a batch of 8 (``--batch``), this times
forward and forward+backward of

- bias_act (lrelu, bias, gain sqrt(2), clamp 256), next to a plain tensor copy
  of the same bytes, so bias_act can be read as a fraction of memory bandwidth;
- upfirdn2d: upsample2d (up=2) and downsample2d (down=2) with the 4-tap filter;
- the modulated convolution layer (modulated conv + noise + bias + lrelu),
  against both plain-PyTorch formulations: the per-sample-weight grouped
  convolution (the test oracle) and StyleGAN2's training-time non-fused path
  (scale activations, convolve, scale outputs); the speedup is against the
  faster of the two.

Every number is the median of ``--reps`` runs after a warm-up (on CUDA each
run ends with a device synchronisation). The table is markdown; ``--json PATH``
writes the numbers too.

``--device cuda`` times the CUDA kernels (an error, exit status 1, without a GPU
or when hpcgan._C has no CUDA kernels). ``--dtype float16|bfloat16`` feeds the
ops half-precision activations, as mixed precision does (the modulated
convolution's weight and styles stay float32); the references run in the same
dtype.

    python benchmarks/ops.py                 # full table (a few minutes on 2 cores)
    python benchmarks/ops.py --quick         # small subset, seconds
    python benchmarks/ops.py --json out.json --batch 16
    python benchmarks/ops.py --device cuda --dtype float16 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hpcgan.ops import _native
from hpcgan.ops.bias_act import bias_act, bias_act_ref
from hpcgan.ops.modulated_conv2d import modulated_conv2d, modulated_conv2d_ref
from hpcgan.ops.upfirdn2d import downsample2d, setup_filter, upsample2d

CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SYNC = {"fn": lambda: None}  # torch.cuda.synchronize when timing CUDA


def _median_ms(fn, reps: int, warmup: int = 2) -> float:
    # two warm-up calls: the first touches of large fresh buffers (page faults,
    # huge-page compaction) are not what a training loop sees in steady state
    sync = _SYNC["fn"]
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _fwd_bwd(fn, inputs):
    """A closure running fn(*inputs) and backward with a fixed upstream gradient."""
    leaves = [t.detach().requires_grad_(True) if t is not None and t.is_floating_point() else t for t in inputs]
    gy = {}

    def run():
        for t in leaves:
            if t is not None and t.grad is not None:
                t.grad = None
        y = fn(*leaves)
        if "g" not in gy:
            gy["g"] = torch.randn_like(y)
        y.backward(gy["g"])

    return run


def _nonfused_modconv(x, w, s, noise, b):
    """StyleGAN2's training-time modulated convolution in plain PyTorch (weights cast to x's dtype)."""
    d = (s.square() @ w.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt().to(x.dtype)
    y = F.conv2d(x * s.to(x.dtype)[:, :, None, None], w.to(x.dtype), padding=1)
    y = y * d[:, :, None, None] + noise
    return bias_act_ref(y, b, 1, "lrelu", None, None, 256)


def bench(args) -> list[dict]:
    torch.manual_seed(0)
    dev, dt = torch.device(args.device), DTYPES[args.dtype]
    N = args.batch
    reps = args.reps
    rows: list[dict] = []
    res_list = args.res or ([8, 64, 256] if args.quick else [4, 8, 16, 32, 64, 128, 256])

    def add(op, shape, native_ms, ref_ms, nbytes=None, extra=None):
        row = dict(op=op, shape=shape, native_ms=native_ms, ref_ms=ref_ms, speedup=ref_ms / native_ms)
        if nbytes is not None:
            row["native_GBps"] = nbytes / native_ms / 1e6
        row.update(extra or {})
        rows.append(row)
        print(_fmt_row(row), flush=True)

    print(_header(), flush=True)
    f = setup_filter([1, 3, 3, 1], device=dev)
    for R in res_list:
        C = CHANNELS[R]
        x = torch.randn(N, C, R, R, device=dev).to(dt)
        b = torch.randn(C, device=dev).to(dt)
        shape = f"{N}x{C}x{R}x{R}"
        nbytes = x.numel() * x.element_size()

        # --- bias_act and a copy of the same bytes --------------------------------
        # the bandwidth ceiling: copy the same bytes into a preallocated tensor
        # (no allocation, no page faults), so bias_act's fraction of it is honest
        dst = torch.empty_like(x)
        copy_ms = _median_ms(lambda: dst.copy_(x), reps)
        kw = dict(act="lrelu", clamp=256.0)
        nat = _median_ms(lambda: bias_act(x, b, impl="native", **kw), reps)
        ref = _median_ms(lambda: bias_act_ref(x, b, **kw), reps)
        copy_gbps = 2 * nbytes / copy_ms / 1e6
        add("bias_act fwd", shape, nat, ref, 2 * nbytes, dict(copy_ms=copy_ms, copy_GBps=copy_gbps, pct_of_copy=100 * copy_ms / nat))
        nat = _median_ms(_fwd_bwd(lambda x, b: bias_act(x, b, impl="native", **kw), [x, b]), reps)
        ref = _median_ms(_fwd_bwd(lambda x, b: bias_act_ref(x, b, **kw), [x, b]), reps)
        add("bias_act fwd+bwd", shape, nat, ref, 5 * nbytes)

        # --- upfirdn2d ---------------------------------------------------------------
        if R <= 128:
            nat = _median_ms(lambda: upsample2d(x, f, impl="native"), reps)
            ref = _median_ms(lambda: upsample2d(x, f, impl="ref"), reps)
            add("upfirdn2d up=2 fwd", shape, nat, ref, 5 * nbytes)
            nat = _median_ms(_fwd_bwd(lambda x: upsample2d(x, f, impl="native"), [x]), reps)
            ref = _median_ms(_fwd_bwd(lambda x: upsample2d(x, f, impl="ref"), [x]), reps)
            add("upfirdn2d up=2 fwd+bwd", shape, nat, ref, 10 * nbytes)
        if R >= 8:
            nat = _median_ms(lambda: downsample2d(x, f, impl="native"), reps)
            ref = _median_ms(lambda: downsample2d(x, f, impl="ref"), reps)
            add("upfirdn2d down=2 fwd", shape, nat, ref, nbytes * 5 // 4)
            nat = _median_ms(_fwd_bwd(lambda x: downsample2d(x, f, impl="native"), [x]), reps)
            ref = _median_ms(_fwd_bwd(lambda x: downsample2d(x, f, impl="ref"), [x]), reps)
            add("upfirdn2d down=2 fwd+bwd", shape, nat, ref, nbytes * 5 // 2)

        # --- modulated convolution layer ------------------------------------------
        w = torch.randn(C, C, 3, 3, device=dev) / math.sqrt(C * 9)  # float32 parameters, as in training
        s = torch.randn(N, C, device=dev) + 1
        noise = (torch.randn(N, 1, R, R, device=dev) * 0.1).to(dt)
        layer = dict(padding=1, act="lrelu", clamp=256.0)
        mreps = max(5, reps // 2)
        nat = _median_ms(_fwd_bwd(lambda x, w, s, n, b: modulated_conv2d(x, w, s, n, bias=b, impl="native", **layer), [x, w, s, noise, b]), mreps)
        ref_grouped = _median_ms(_fwd_bwd(lambda x, w, s, n, b: modulated_conv2d_ref(x, w, s, n, bias=b, **layer), [x, w, s, noise, b]), mreps)
        ref_nonfused = _median_ms(_fwd_bwd(_nonfused_modconv, [x, w, s, noise, b]), mreps)
        add(
            "modconv layer fwd+bwd",
            shape,
            nat,
            min(ref_grouped, ref_nonfused),
            None,
            dict(ref_grouped_ms=ref_grouped, ref_nonfused_ms=ref_nonfused),
        )
    return rows


def _header() -> str:
    return (
        "| op | shape (NxCxHxW) | native ms | ref ms | speedup | native GB/s | note |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | --- |"
    )


def _fmt_row(r: dict) -> str:
    gb = f"{r['native_GBps']:.1f}" if "native_GBps" in r else ""
    note = ""
    if "copy_ms" in r:
        note = f"copy {r['copy_ms']:.2f} ms ({r['copy_GBps']:.1f} GB/s): bias_act at {r['pct_of_copy']:.0f}% of copy bandwidth"
    if "ref_grouped_ms" in r:
        note = f"ref = min(grouped {r['ref_grouped_ms']:.1f}, non-fused {r['ref_nonfused_ms']:.1f})"
    return f"| {r['op']} | {r['shape']} | {r['native_ms']:.2f} | {r['ref_ms']:.2f} | {r['speedup']:.2f}x | {gb} | {note} |"


def summary(rows: list[dict]) -> str:
    """Geometric-mean speedup per op, and the weakest shape."""
    by_op: dict[str, list[dict]] = {}
    for r in rows:
        by_op.setdefault(r["op"], []).append(r)
    lines = ["", "| op | geo-mean speedup | min speedup (shape) |", "| --- | ---: | --- |"]
    for op, rs in by_op.items():
        gm = math.exp(sum(math.log(r["speedup"]) for r in rs) / len(rs))
        worst = min(rs, key=lambda r: r["speedup"])
        lines.append(f"| {op} | {gm:.2f}x | {worst['speedup']:.2f}x ({worst['shape']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="batch size N (default 8)")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per measurement; the median is reported (default 7)")
    p.add_argument("--res", type=int, nargs="*", choices=sorted(CHANNELS), help="resolutions to time (default all, 4 to 256)")
    p.add_argument("--quick", action="store_true", help="a small subset (resolutions 8, 64, 256; fewer reps) for a smoke run")
    p.add_argument("--threads", type=int, default=None, help="torch thread count (default: torch's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the ops run (default cpu); cuda fails without a GPU or without CUDA kernels in hpcgan._C")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                   help="activation dtype (default float32); half types are what mixed precision feeds the ops")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = min(args.reps, 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not _native.available():
        print(f"hpcgan._C is not built ({_native.import_error()}); run bash scripts/install.sh", file=sys.stderr)
        return 1
    where = platform.processor() or platform.machine()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: torch sees no GPU (torch.cuda.is_available() is False); run on a GPU node",
                  file=sys.stderr)
            return 1
        if not _native.cuda_built():
            print("--device cuda: hpcgan._C was built without CUDA kernels; rebuild with "
                  "HPCGAN_CUDA=1 bash scripts/install.sh", file=sys.stderr)
            return 1
        _SYNC["fn"] = torch.cuda.synchronize
        where = torch.cuda.get_device_name()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {where}, {args.device} {args.dtype}, "
          f"batch {args.batch}, median of {args.reps} runs\n")
    rows = bench(args)
    print(summary(rows))
    if args.json:
        meta = dict(torch=torch.__version__, threads=torch.get_num_threads(), batch=args.batch, reps=args.reps,
                    device=args.device, dtype=args.dtype, hardware=where)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(dict(meta=meta, rows=rows), fh, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
