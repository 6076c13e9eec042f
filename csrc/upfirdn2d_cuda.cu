// upfirdn2d on CUDA: one thread per output element (grid-stride loop), in
// NCHW or NHWC order matching the memory layout so that neighbouring threads
// write neighbouring addresses. Each thread visits only the filter taps that
// land on real input pixels (no inserted zeros, no padding): along x these are
// the taps j = j0, j0 + upx, ... with input column (ox*downx - padx0 + j) / upx,
// clipped to the image. Math in float for half/bfloat16 (opmath), double for
// double. The filter (flipped unless `flip`, i.e. as correlated) is staged in
// shared memory when it fits.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "upfirdn2d_common.h"

namespace hpcgan {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSharedTaps = 1024;  // filters up to 32x32 go to shared memory

__device__ __forceinline__ int64_t dev_floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

struct KernelGeom {
  int64_t numel;
  int64_t C, H, W, outH, outW;
  int64_t fh, fw;
  int64_t upx, upy, downx, downy, padx0, pady0;
  int64_t sN, sC, sH, sW;  // strides of x (dense, NCHW or NHWC)
  bool nhwc;
};

// Taps t (= first + step * m) of one axis that read input pixels i0 + m,
// m in [m0, m1): tap positions o*down - pad0 + t divisible by up, pixel in [0, in).
struct AxisTaps {
  int64_t first, i0, m0, m1;
};

__device__ __forceinline__ AxisTaps axis_taps(int64_t o, int64_t down, int64_t up, int64_t pad0, int64_t in,
                                              int64_t taps) {
  const int64_t q = o * down - pad0;           // padded-upsampled position of tap 0
  const int64_t first = q - dev_floor_div(q, up) * up == 0 ? 0 : up - (q - dev_floor_div(q, up) * up);
  const int64_t i0 = dev_floor_div(q + first, up);  // exact
  const int64_t ntaps = first < taps ? (taps - first + up - 1) / up : 0;
  AxisTaps a;
  a.first = first;
  a.i0 = i0;
  a.m0 = i0 < 0 ? -i0 : 0;
  a.m1 = ntaps < in - i0 ? ntaps : in - i0;
  return a;
}

template <typename T, typename M>
__global__ void upfirdn2d_kernel(T* __restrict__ y, const T* __restrict__ x, const M* __restrict__ f, KernelGeom g,
                                 M gain, bool use_shared) {
  __shared__ M sf[kMaxSharedTaps];
  const int64_t nf = g.fh * g.fw;
  if (use_shared) {
    for (int64_t t = threadIdx.x; t < nf; t += blockDim.x) sf[t] = f[t];
    __syncthreads();
  }
  const M* fk = use_shared ? sf : f;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < g.numel;
       idx += (int64_t)blockDim.x * gridDim.x) {
    int64_t rem = idx, n, c, oy, ox;
    if (g.nhwc) {
      c = rem % g.C;
      rem /= g.C;
      ox = rem % g.outW;
      rem /= g.outW;
      oy = rem % g.outH;
      n = rem / g.outH;
    } else {
      ox = rem % g.outW;
      rem /= g.outW;
      oy = rem % g.outH;
      rem /= g.outH;
      c = rem % g.C;
      n = rem / g.C;
    }
    const AxisTaps ay = axis_taps(oy, g.downy, g.upy, g.pady0, g.H, g.fh);
    const AxisTaps ax = axis_taps(ox, g.downx, g.upx, g.padx0, g.W, g.fw);
    const T* xp = x + n * g.sN + c * g.sC;
    M acc = M(0);
    for (int64_t my = ay.m0; my < ay.m1; ++my) {
      const int64_t fi = ay.first + my * g.upy;
      const T* xr = xp + (ay.i0 + my) * g.sH;
      const M* fr = fk + fi * g.fw;
      for (int64_t mx = ax.m0; mx < ax.m1; ++mx) {
        const int64_t fj = ax.first + mx * g.upx;
        acc += fr[fj] * static_cast<M>(xr[(ax.i0 + mx) * g.sW]);
      }
    }
    y[idx] = static_cast<T>(acc * gain);
  }
}

at::Tensor upfirdn2d_cuda(const at::Tensor& x_in, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                          int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                          double gain) {
  HPCGAN_CHECK_CUDA(x_in);
  HPCGAN_CHECK_CUDA(f);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor x;
  const UpFirDnGeom geom = upfirdn2d_prepare(x_in, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, x);
  at::Tensor y = upfirdn2d_empty_output(x, geom);
  if (y.numel() == 0) return y;

  KernelGeom g;
  g.numel = y.numel();
  g.C = geom.C;
  g.H = geom.H;
  g.W = geom.W;
  g.outH = geom.outH;
  g.outW = geom.outW;
  g.fh = geom.fh;
  g.fw = geom.fw;
  g.upx = upx;
  g.upy = upy;
  g.downx = downx;
  g.downy = downy;
  g.padx0 = padx0;
  g.pady0 = pady0;
  g.sN = x.stride(0);
  g.sC = x.stride(1);
  g.sH = x.stride(2);
  g.sW = x.stride(3);
  g.nhwc = geom.channels_last;
  const bool use_shared = geom.fh * geom.fw <= kMaxSharedTaps;

  const int64_t blocks = std::min<int64_t>((g.numel + kThreads - 1) / kThreads, 65535LL * 32);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hpcgan::upfirdn2d_cuda", [&] {
    using T = scalar_t;
    using M = at::opmath_type<T>;
    // The filter as correlated: flip=false means true convolution.
    const auto mtype = c10::CppTypeToScalarType<M>::value;
    at::Tensor fk = (flip ? f : f.flip({0, 1})).to(x.device(), mtype).contiguous();
    upfirdn2d_kernel<T, M><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        y.data_ptr<T>(), x.data_ptr<T>(), fk.data_ptr<M>(), g, static_cast<M>(gain), use_shared);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CUDA, m) { m.impl("upfirdn2d", &hpcgan::upfirdn2d_cuda); }
