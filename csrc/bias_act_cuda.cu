// bias_act on CUDA: a grid-stride loop, one element per thread, math in float
// for half/bfloat16 inputs (opmath), double for double.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "activations.h"
#include "bias_act_common.h"
#include "checks.h"

namespace hpcgan {
namespace {

template <int ACT, int ORDER, typename T, typename M>
__global__ void bias_act_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ b,
                                const T* __restrict__ dy, int64_t numel, int64_t channels, int64_t inner, M alpha,
                                M gain, M clamp) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < numel; i += (int64_t)blockDim.x * gridDim.x) {
    M v = static_cast<M>(x[i]);
    if (b) v += static_cast<M>(b[(i / inner) % channels]);
    M out;
    if (ORDER < 0) {
      out = apply_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp);
    } else {
      out = static_cast<M>(dy[i]) * act_eval<ACT, (ORDER < 0 ? 0 : ORDER)>(v, alpha) * gain;
      if (clamp >= M(0) && !within_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp)) out = M(0);
    }
    y[i] = static_cast<T>(out);
  }
}

template <int ORDER>
at::Tensor launch(const at::Tensor& dy_in, const at::Tensor& x_in, const std::optional<at::Tensor>& b_in, int64_t dim,
                  int64_t act, double alpha, double gain, double clamp) {
  HPCGAN_CHECK_CUDA(x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor x, b, dy;
  BiasActGeom g = bias_act_prepare(x_in, b_in, dim, act, x, b);
  if (ORDER >= 0) dy = match_layout(dy_in, x);
  at::Tensor y = at::empty_like(x);
  if (g.numel == 0) return y;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((g.numel + threads - 1) / threads, 65535LL * 8);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hpcgan::bias_act_cuda", [&] {
    using T = scalar_t;
    using M = at::opmath_type<T>;
    const T* bp = b.defined() ? b.data_ptr<T>() : nullptr;
    const T* dyp = ORDER >= 0 ? dy.data_ptr<T>() : nullptr;
    HPCGAN_DISPATCH_ACT(act, [&] {
      bias_act_kernel<ACT_, ORDER, T, M><<<blocks, threads, 0, stream>>>(
          y.data_ptr<T>(), x.data_ptr<T>(), bp, dyp, g.numel, g.channels, g.inner, M(alpha), M(gain), M(clamp));
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor bias_act_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                         double alpha, double gain, double clamp) {
  return launch<-1>(at::Tensor(), x, b, dim, act, alpha, gain, clamp);
}

at::Tensor bias_act_grad_cuda(const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b,
                              int64_t dim, int64_t act, double alpha, double gain, double clamp, int64_t order) {
  TORCH_CHECK(order == 1 || order == 2, "bias_act_grad: order must be 1 or 2, got ", order);
  return order == 1 ? launch<1>(dy, x, b, dim, act, alpha, gain, clamp)
                    : launch<2>(dy, x, b, dim, act, alpha, gain, clamp);
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CUDA, m) {
  m.impl("bias_act", &hpcgan::bias_act_cuda);
  m.impl("bias_act_grad", &hpcgan::bias_act_grad_cuda);
}
