// bias_act on the CPU: one pass over memory, parallel over rows of the
// channel dimension with at::parallel_for; the row loops are vectorised and
// dispatched at run time to AVX-512, AVX2 or SSE2 (cpu_vec.h). float16 and
// bfloat16 are computed in float32 (checks.h: widen).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "activations.h"
#include "bias_act_common.h"
#include "checks.h"
#include "cpu_vec.h"

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

// y[i] = f(x[i] + bias) for a run of elements that share one bias value.
template <int ACT, int ORDER, typename T>
HPCGAN_CPU_CLONES void run_shared_bias(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ dy,
                                       int64_t n, T bias, T alpha, T gain, T clamp) {
  if (dy) {
    for (int64_t i = 0; i < n; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + bias, dy[i], alpha, gain, clamp);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + bias, T(0), alpha, gain, clamp);
  }
}

// y[i] = f(x[i] + b[i]) for a run of channels (channels_last rows).
template <int ACT, int ORDER, typename T>
HPCGAN_CPU_CLONES void run_channel_bias(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ dy,
                                        const T* __restrict__ b, int64_t n, T alpha, T gain, T clamp) {
  if (dy) {
    for (int64_t i = 0; i < n; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + b[i], dy[i], alpha, gain, clamp);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = bias_act_elem<ACT, ORDER>(x[i] + b[i], T(0), alpha, gain, clamp);
  }
}

template <int ACT, int ORDER, typename T>
void run(const BiasActGeom& g, T* y, const T* x, const T* b, const T* dy, T alpha, T gain, T clamp) {
  constexpr int64_t kGrain = 1 << 16;  // elements per task: below this, threads cost more than they save
  if (g.channels == 1) {  // no bias or a single channel: one flat loop
    const T bias = b ? b[0] : T(0);
    at::parallel_for(0, g.numel, kGrain, [&](int64_t i0, int64_t i1) {
      run_shared_bias<ACT, ORDER, T>(y + i0, x + i0, dy ? dy + i0 : nullptr, i1 - i0, bias, alpha, gain, clamp);
    });
  } else if (g.inner == 1) {  // channels innermost (channels_last): rows of C channels
    const int64_t C = g.channels, rows = g.numel / C;
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        run_channel_bias<ACT, ORDER, T>(y + r * C, x + r * C, dy ? dy + r * C : nullptr, b, C, alpha, gain, clamp);
    });
  } else if (g.inner < 64 && g.channels * g.inner <= (int64_t(1) << 16)) {
    // Short rows (small images): one call per sample over a precomputed bias
    // pattern instead of one call per tiny row.
    const int64_t span = g.channels * g.inner, rows = g.numel / span;
    std::vector<T> pattern(span);
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t i = 0; i < g.inner; ++i) pattern[c * g.inner + i] = b[c];
    const T* pb = pattern.data();
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / span), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        run_channel_bias<ACT, ORDER, T>(y + r * span, x + r * span, dy ? dy + r * span : nullptr, pb, span, alpha,
                                        gain, clamp);
    });
  } else {  // rows of `inner` elements that share one channel
    const int64_t inner = g.inner, rows = g.numel / inner;
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r * inner;
        run_shared_bias<ACT, ORDER, T>(y + o, x + o, dy ? dy + o : nullptr, inner, b[r % g.channels], alpha, gain,
                                       clamp);
      }
    });
  }
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
  advise_huge_pages(y.data_ptr(), y.nbytes());
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
  if (is_half(x)) {  // computed in float32 (checks.h: widen)
    if (b.has_value() && b->defined()) HPCGAN_CHECK_SAME_DTYPE((*b), x);
    return narrow_to(launch<-1>(at::Tensor(), widen(x), widen(b), dim, act, alpha, gain, clamp), x.scalar_type());
  }
  return launch<-1>(at::Tensor(), x, b, dim, act, alpha, gain, clamp);
}

at::Tensor bias_act_grad_cpu(const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b,
                             int64_t dim, int64_t act, double alpha, double gain, double clamp, int64_t order) {
  TORCH_CHECK(order == 1 || order == 2, "bias_act_grad: order must be 1 or 2, got ", order);
  if (is_half(x)) {  // computed in float32 (checks.h: widen)
    HPCGAN_CHECK_SAME_DTYPE(dy, x);
    if (b.has_value() && b->defined()) HPCGAN_CHECK_SAME_DTYPE((*b), x);
    return narrow_to(bias_act_grad_cpu(widen(dy), widen(x), widen(b), dim, act, alpha, gain, clamp, order),
                     x.scalar_type());
  }
  return order == 1 ? launch<1>(dy, x, b, dim, act, alpha, gain, clamp)
                    : launch<2>(dy, x, b, dim, act, alpha, gain, clamp);
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CPU, m) {
  m.impl("bias_act", &hpcgan::bias_act_cpu);
  m.impl("bias_act_grad", &hpcgan::bias_act_grad_cpu);
}
