// bias_act on the CPU: one pass over memory, parallel over rows of the
// channel dimension with at::parallel_for, inner loops the compiler vectorises.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "activations.h"
#include "bias_act_common.h"
#include "checks.h"

namespace hpcgan {
namespace {

// Forward (ORDER < 0) or the ORDER-th derivative times dy (ORDER 1 or 2).
template <int ACT, int ORDER, typename T>
inline T bias_act_elem(T x, T dy, T alpha, T gain, T clamp) {
  if constexpr (ORDER < 0) {
    return apply_clamp(act_eval<ACT, 0>(x, alpha) * gain, clamp);
  } else {
    T d = dy * act_eval<ACT, ORDER>(x, alpha) * gain;
    if (clamp >= T(0) && !within_clamp(act_eval<ACT, 0>(x, alpha) * gain, clamp)) d = T(0);
    return d;
  }
}

template <int ACT, int ORDER, typename T>
void run(const BiasActGeom& g, T* y, const T* x, const T* b, const T* dy, T alpha, T gain, T clamp) {
  constexpr int64_t kGrain = 1 << 15;
  if (g.channels == 1) {
    // No bias or a single channel: one flat loop.
    const T bias = b ? b[0] : T(0);
    at::parallel_for(0, g.numel, kGrain, [&](int64_t i0, int64_t i1) {
      if (dy) {
        for (int64_t i = i0; i < i1; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + bias, dy[i], alpha, gain, clamp);
      } else {
        for (int64_t i = i0; i < i1; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + bias, T(0), alpha, gain, clamp);
      }
    });
    return;
  }
  if (g.inner == 1) {
    // Channel dimension innermost (channels_last): vectorise along channels.
    const int64_t rows = g.numel / g.channels, C = g.channels;
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t base = r * C;
        for (int64_t c = 0; c < C; ++c) {
          T v = x[base + c] + b[c];
          y[base + c] = bias_act_elem<ACT, ORDER>(v, dy ? dy[base + c] : T(0), alpha, gain, clamp);
        }
      }
    });
    return;
  }
  // Rows of `inner` elements that share one channel (and so one bias value).
  const int64_t inner = g.inner, rows = g.numel / inner;
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T bias = b[r % g.channels];
      const int64_t base = r * inner;
      const T* xr = x + base;
      T* yr = y + base;
      if (dy) {
        const T* dyr = dy + base;
        for (int64_t i = 0; i < inner; ++i) yr[i] = bias_act_elem<ACT, ORDER>(xr[i] + bias, dyr[i], alpha, gain, clamp);
      } else {
        for (int64_t i = 0; i < inner; ++i) yr[i] = bias_act_elem<ACT, ORDER>(xr[i] + bias, T(0), alpha, gain, clamp);
      }
    }
  });
}

template <int ORDER>
at::Tensor launch(const at::Tensor& dy_in, const at::Tensor& x_in, const std::optional<at::Tensor>& b_in, int64_t dim,
                  int64_t act, double alpha, double gain, double clamp) {
  HPCGAN_CHECK_CPU(x_in);
  at::Tensor x, b, dy;
  BiasActGeom g = bias_act_prepare(x_in, b_in, dim, act, x, b);
  if (ORDER >= 0) dy = match_layout(dy_in, x);
  at::Tensor y = at::empty_like(x);
  if (g.numel == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hpcgan::bias_act_cpu", [&] {
    using T = scalar_t;
    const T* bp = b.defined() ? b.data_ptr<T>() : nullptr;
    const T* dyp = ORDER >= 0 ? dy.data_ptr<T>() : nullptr;
    HPCGAN_DISPATCH_ACT(act, [&] {
      run<ACT_, (ORDER < 0 ? -1 : ORDER), T>(g, y.data_ptr<T>(), x.data_ptr<T>(), bp, dyp, T(alpha), T(gain),
                                             T(clamp));
    });
  });
  return y;
}

at::Tensor bias_act_cpu(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                        double alpha, double gain, double clamp) {
  return launch<-1>(at::Tensor(), x, b, dim, act, alpha, gain, clamp);
}

at::Tensor bias_act_grad_cpu(const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b,
                             int64_t dim, int64_t act, double alpha, double gain, double clamp, int64_t order) {
  TORCH_CHECK(order == 1 || order == 2, "bias_act_grad: order must be 1 or 2, got ", order);
  return order == 1 ? launch<1>(dy, x, b, dim, act, alpha, gain, clamp)
                    : launch<2>(dy, x, b, dim, act, alpha, gain, clamp);
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CPU, m) {
  m.impl("bias_act", &hpcgan::bias_act_cpu);
  m.impl("bias_act_grad", &hpcgan::bias_act_grad_cpu);
}
