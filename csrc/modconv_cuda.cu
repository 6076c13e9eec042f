// The fused pieces of the modulated convolution on CUDA. Elementwise work runs
// in one kernel each (math in float for half types); the per-channel and
// per-pixel reductions of the backward passes use ATen's reductions over the
// kernels' outputs.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "activations.h"
#include "checks.h"
#include "modconv_common.h"

namespace hpcgan {
namespace {

constexpr int kThreads = 256;

inline int64_t num_blocks(int64_t n) { return std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 8); }

// Decompose a linear index of a tensor stored as `g` into (n, c, hw).
__device__ __forceinline__ void decompose(int64_t i, int64_t C, int64_t HW, bool cl, int64_t& n, int64_t& c,
                                          int64_t& hw) {
  if (cl) {
    c = i % C;
    const int64_t p = i / C;
    hw = p % HW;
    n = p / HW;
  } else {
    hw = i % HW;
    const int64_t p = i / HW;
    c = p % C;
    n = p / C;
  }
}

__device__ __forceinline__ int64_t offset(int64_t n, int64_t c, int64_t hw, int64_t C, int64_t HW, bool cl) {
  return cl ? (n * HW + hw) * C + c : (n * C + c) * HW + hw;
}

template <typename T, typename M>
__global__ void modulate_kernel(T* __restrict__ xs, const T* __restrict__ x, const T* __restrict__ s, int64_t total,
                                int64_t C, int64_t HW, bool x_cl, bool out_cl) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x) {
    int64_t n, c, hw;
    decompose(i, C, HW, out_cl, n, c, hw);
    xs[i] = static_cast<T>(static_cast<M>(x[offset(n, c, hw, C, HW, x_cl)]) * static_cast<M>(s[n * C + c]));
  }
}

at::Tensor modulate_cuda(const at::Tensor& x_in, const at::Tensor& s_in, bool channels_last) {
  HPCGAN_CHECK_CUDA(x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  Act4 g;
  at::Tensor x = as_act4(x_in, true, g, "x");
  at::Tensor s = coef_nc(s_in, x, g, "s");
  at::Tensor xs = at::empty(x.sizes(), x.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                              : at::MemoryFormat::Contiguous));
  const int64_t total = x.numel();
  if (total == 0) return xs;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hpcgan::modulate_cuda", [&] {
    modulate_kernel<scalar_t, at::opmath_type<scalar_t>>
        <<<num_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            xs.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), total, g.C, g.HW, g.cl,
            channels_last);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return xs;
}

template <typename T, typename M>
__global__ void modulate_backward_kernel(T* __restrict__ gx, const T* __restrict__ gxs, const T* __restrict__ s,
                                         int64_t total, int64_t C, int64_t HW, bool x_cl, bool g_cl) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x) {
    int64_t n, c, hw;
    decompose(i, C, HW, x_cl, n, c, hw);  // gx is laid out like x
    gx[i] = static_cast<T>(static_cast<M>(gxs[offset(n, c, hw, C, HW, g_cl)]) * static_cast<M>(s[n * C + c]));
  }
}

std::tuple<at::Tensor, at::Tensor> modulate_backward_cuda(const at::Tensor& gxs_in, const at::Tensor& x_in,
                                                          const at::Tensor& s_in) {
  HPCGAN_CHECK_CUDA(x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  Act4 g, gg;
  at::Tensor x = as_act4(x_in, true, g, "x");
  at::Tensor gxs = as_act4(gxs_in, true, gg, "gxs");
  TORCH_CHECK(gxs.sizes() == x.sizes(), "gxs must have the shape of x ", x.sizes(), ", got ", gxs.sizes());
  HPCGAN_CHECK_SAME_DTYPE(gxs, x);
  at::Tensor s = coef_nc(s_in, x, g, "s");
  at::Tensor gx = at::empty_like(x);
  const int64_t total = x.numel();
  if (total == 0) return {gx, at::zeros_like(s)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hpcgan::modulate_backward_cuda", [&] {
    modulate_backward_kernel<scalar_t, at::opmath_type<scalar_t>>
        <<<num_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            gx.data_ptr<scalar_t>(), gxs.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), total, g.C, g.HW, g.cl,
            gg.cl);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // gs in float32 for half types: products and sums are not rounded to half
  const auto acc = at::toOpMathType(x.scalar_type());
  at::Tensor gs = (gxs.to(acc) * x.to(acc)).sum({2, 3}).to(x.scalar_type());
  return {gx, gs};
}

// MODE 0: y = epilogue(z). MODE 1: gp = d(epilogue)/d(pre) * dy (kept in M,
// the math type, for the reductions that follow), gz = gp * d.
template <int ACT, int MODE, typename T, typename M>
__global__ void epilogue_kernel(T* __restrict__ out, M* __restrict__ gp_out, const T* __restrict__ z,
                                const T* __restrict__ dy, const T* __restrict__ d, const T* __restrict__ noise,
                                const T* __restrict__ b, int64_t total, int64_t C, int64_t HW, bool cl, bool dy_cl,
                                int64_t noise_bs, M alpha, M gain, M clamp) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x) {
    int64_t n, c, hw;
    decompose(i, C, HW, cl, n, c, hw);
    const M dc = d ? static_cast<M>(d[n * C + c]) : M(1);
    M v = static_cast<M>(z[i]) * dc;
    if (noise) v += static_cast<M>(noise[n * noise_bs + hw]);
    if (b) v += static_cast<M>(b[c]);
    if (MODE == 0) {
      out[i] = static_cast<T>(apply_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp));
    } else {
      M gp = static_cast<M>(dy[offset(n, c, hw, C, HW, dy_cl)]) * act_eval<ACT, 1>(v, alpha) * gain;
      if (clamp >= M(0) && !within_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp)) gp = M(0);
      gp_out[i] = gp;
      out[i] = static_cast<T>(gp * dc);
    }
  }
}

at::Tensor modconv_epilogue_cuda(const at::Tensor& z_in, const std::optional<at::Tensor>& d_in,
                                 const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& b_in,
                                 int64_t act, double alpha, double gain, double clamp) {
  HPCGAN_CHECK_CUDA(z_in);
  const c10::cuda::CUDAGuard guard(z_in.device());
  Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);
  at::Tensor y = at::empty_like(e.z);
  const int64_t total = e.z.numel();
  if (total == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, e.z.scalar_type(), "hpcgan::modconv_epilogue_cuda", [&] {
    using T = scalar_t;
    using M = at::opmath_type<T>;
    HPCGAN_DISPATCH_ACT(act, [&] {
      epilogue_kernel<ACT_, 0, T, M><<<num_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          y.data_ptr<T>(), nullptr, e.z.data_ptr<T>(), nullptr, ptr_or_null<T>(e.d), ptr_or_null<T>(e.noise),
          ptr_or_null<T>(e.b), total, e.g.C, e.g.HW, e.g.cl, e.g.cl, e.noise_bs, M(alpha), M(gain), M(clamp));
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> modconv_epilogue_backward_cuda(
    const at::Tensor& dy_in, const at::Tensor& z_in, const std::optional<at::Tensor>& d_in,
    const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& b_in, int64_t act, double alpha,
    double gain, double clamp) {
  HPCGAN_CHECK_CUDA(z_in);
  const c10::cuda::CUDAGuard guard(z_in.device());
  Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);
  Act4 gdy;
  at::Tensor dy = epi_grad_input(dy_in, e, gdy);
  at::Tensor gz = at::empty_like(e.z);
  const auto acc = at::toOpMathType(e.z.scalar_type());  // float32 for half types
  at::Tensor gp = at::empty_like(e.z, e.z.options().dtype(acc));
  const int64_t total = e.z.numel();
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, e.z.scalar_type(), "hpcgan::modconv_epilogue_backward_cuda", [&] {
          using T = scalar_t;
          using M = at::opmath_type<T>;
          HPCGAN_DISPATCH_ACT(act, [&] {
            epilogue_kernel<ACT_, 1, T, M><<<num_blocks(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                gz.data_ptr<T>(), gp.data_ptr<M>(), e.z.data_ptr<T>(), dy.data_ptr<T>(), ptr_or_null<T>(e.d),
                ptr_or_null<T>(e.noise), ptr_or_null<T>(e.b), total, e.g.C, e.g.HW, e.g.cl, gdy.cl, e.noise_bs,
                M(alpha), M(gain), M(clamp));
          });
        });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor empty = at::empty({0}, e.z.options());
  const auto dt = e.z.scalar_type();
  at::Tensor gd = e.d.defined() ? (gp * e.z.to(acc)).sum({2, 3}).to(dt) : empty;
  at::Tensor gn = e.noise.defined() ? gp.sum({1}, /*keepdim=*/true).to(dt).contiguous() : empty;
  at::Tensor gb = e.b.defined() ? gp.sum({0, 2, 3}).to(dt) : empty;
  return {gz, gd, gn, gb};
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CUDA, m) {
  m.impl("modulate", &hpcgan::modulate_cuda);
  m.impl("modulate_backward", &hpcgan::modulate_backward_cuda);
  m.impl("modconv_epilogue", &hpcgan::modconv_epilogue_cuda);
  m.impl("modconv_epilogue_backward", &hpcgan::modconv_epilogue_backward_cuda);
}
