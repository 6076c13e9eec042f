// The fused pieces of the modulated convolution on the CPU.
//
//   modulate:                  xs = x * s[n, c], written channels_last so the
//                              following oneDNN convolution runs on its fast layout
//   modulate_backward:         gx = gxs * s,  gs[n, c] = sum_hw gxs * x   (one pass)
//   modconv_epilogue:          y = clamp(act(z * d[n, c] + noise[n, hw] + b[c]) * gain)
//   modconv_epilogue_backward: gz, gd, gnoise, gb of the epilogue  (one pass)
//
// Work is split into tasks of (sample, block of pixels) with at::parallel_for;
// reductions over pixels go to per-task partial sums that are added at the end,
// so results do not depend on the thread count. float16 and bfloat16 are
// computed in float32 (checks.h: widen).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "activations.h"
#include "checks.h"
#include "cpu_vec.h"
#include "modconv_common.h"

namespace hpcgan {
namespace {

constexpr int64_t kBlock = 256;  // pixels per task

struct Tasks {
  int64_t HW, per_sample, count;
  Tasks(const Act4& g)
      : HW(g.HW), per_sample((g.HW + kBlock - 1) / kBlock), count(g.N * ((g.HW + kBlock - 1) / kBlock)) {}
  // Task t covers sample n, pixels [hw0, hw1).
  void range(int64_t t, int64_t& n, int64_t& hw0, int64_t& hw1) const {
    n = t / per_sample;
    hw0 = (t % per_sample) * kBlock;
    hw1 = std::min(HW, hw0 + kBlock);
  }
};

// The epilogue's optional operands per sample, with absent ones replaced by
// neutral values (d = 1, noise = 0, b = 0) so the row loops need no branches.
template <typename T>
struct EpiOperands {
  const T *d, *noise, *b;
  int64_t C, noise_bs;
  std::vector<T> ones, zeros;
  EpiOperands(const Act4& g, int64_t noise_bs_, const T* d_, const T* noise_, const T* b_)
      : d(d_), noise(noise_), b(b_), C(g.C), noise_bs(noise_bs_), ones(g.C, T(1)), zeros(std::max(g.C, g.HW), T(0)) {}
  const T* dn(int64_t n) const { return d ? d + n * C : ones.data(); }
  const T* bn() const { return b ? b : zeros.data(); }
  const T* nz(int64_t n) const { return noise ? noise + n * noise_bs : zeros.data(); }
};

// ------------------------------------------------------------ row kernels ---
// The innermost loops, vectorised and dispatched by CPU capability (cpu_vec.h).

template <typename T>
HPCGAN_CPU_CLONES void scale_row(T* __restrict__ out, const T* __restrict__ in, const T* __restrict__ s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] * s[i];
}

// gx = g * s and acc += g * x along a channels_last row.
template <typename T>
HPCGAN_CPU_CLONES void scale_grad_row(T* __restrict__ gx, T* __restrict__ acc, const T* __restrict__ g,
                                      const T* __restrict__ x, const T* __restrict__ s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    gx[i] = g[i] * s[i];
    acc[i] += g[i] * x[i];
  }
}

template <int ACT, typename T>
inline T epi_fwd(T v, T alpha, T gain, T clamp) {
  return apply_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp);
}

template <int ACT, typename T>
inline T epi_grad(T v, T dy, T alpha, T gain, T clamp) {
  T gp = dy * act_eval<ACT, 1>(v, alpha) * gain;
  return (clamp >= T(0) && !within_clamp(act_eval<ACT, 0>(v, alpha) * gain, clamp)) ? T(0) : gp;
}

// channels_last row of C channels at one pixel: y = f(z * d + nv + b)
template <int ACT, typename T>
HPCGAN_CPU_CLONES void epi_row_cl(T* __restrict__ y, const T* __restrict__ z, const T* __restrict__ d,
                                  const T* __restrict__ b, T nv, int64_t C, T alpha, T gain, T clamp) {
  for (int64_t c = 0; c < C; ++c) y[c] = epi_fwd<ACT>(z[c] * d[c] + nv + b[c], alpha, gain, clamp);
}

// NCHW row of pixels of one channel: y = f(z * dc + noise + bc)
template <int ACT, typename T>
HPCGAN_CPU_CLONES void epi_row_nchw(T* __restrict__ y, const T* __restrict__ z, const T* __restrict__ nz, T dc,
                                    T bc, int64_t n, T alpha, T gain, T clamp) {
  for (int64_t i = 0; i < n; ++i) y[i] = epi_fwd<ACT>(z[i] * dc + nz[i] + bc, alpha, gain, clamp);
}

// Backward along a channels_last row; returns the sum over channels (noise gradient).
template <int ACT, typename T>
HPCGAN_CPU_CLONES T epi_grad_row_cl(T* __restrict__ gz, T* __restrict__ accd, T* __restrict__ accb,
                                    const T* __restrict__ dy, const T* __restrict__ z, const T* __restrict__ d,
                                    const T* __restrict__ b, T nv, int64_t C, T alpha, T gain, T clamp) {
  T an = T(0);
#pragma omp simd reduction(+ : an)
  for (int64_t c = 0; c < C; ++c) {
    const T zv = z[c];
    const T gp = epi_grad<ACT>(zv * d[c] + nv + b[c], dy[c], alpha, gain, clamp);
    gz[c] = gp * d[c];
    accd[c] += gp * zv;
    accb[c] += gp;
    an += gp;
  }
  return an;
}

// Backward along an NCHW row of one channel; adds to the noise gradient row and
// returns the sums of gp * z and gp.
template <int ACT, typename T>
HPCGAN_CPU_CLONES void epi_grad_row_nchw(T* __restrict__ gz, T* __restrict__ gn, const T* __restrict__ dy,
                                         const T* __restrict__ z, const T* __restrict__ nz, T dc, T bc, int64_t n,
                                         T alpha, T gain, T clamp, T* sums) {
  T ad = T(0), ab = T(0);
#pragma omp simd reduction(+ : ad, ab)
  for (int64_t i = 0; i < n; ++i) {
    const T zv = z[i];
    const T gp = epi_grad<ACT>(zv * dc + nz[i] + bc, dy[i], alpha, gain, clamp);
    gz[i] = gp * dc;
    gn[i] += gp;
    ad += gp * zv;
    ab += gp;
  }
  sums[0] = ad;
  sums[1] = ab;
}

// ---------------------------------------------------------------- modulate ---
template <typename T>
HPCGAN_CPU_CLONES void scale_const_row(T* __restrict__ out, const T* __restrict__ in, T s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] * s;
}

template <typename T>
void modulate_kernel(const Act4& g, bool out_cl, const T* x, const T* s, T* xs) {
  Tasks tk(g);
  at::parallel_for(0, tk.count, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t n, hw0, hw1;
      tk.range(t, n, hw0, hw1);
      const T* sn = s + n * g.C;
      const T* in = x + n * g.HW * g.C;
      T* out = xs + n * g.HW * g.C;
      if (out_cl && g.cl) {
        for (int64_t hw = hw0; hw < hw1; ++hw) scale_row<T>(out + hw * g.C, in + hw * g.C, sn, g.C);
      } else if (!out_cl && !g.cl) {
        for (int64_t c = 0; c < g.C; ++c)
          scale_const_row<T>(out + c * g.HW + hw0, in + c * g.HW + hw0, sn[c], hw1 - hw0);
      } else if (out_cl) {  // NCHW -> NHWC, block by block, while scaling
        for (int64_t c = 0; c < g.C; ++c) {
          const T sc = sn[c];
          const T* row = in + c * g.HW;
          for (int64_t hw = hw0; hw < hw1; ++hw) out[hw * g.C + c] = row[hw] * sc;
        }
      } else {  // NHWC -> NCHW
        for (int64_t hw = hw0; hw < hw1; ++hw)
          for (int64_t c = 0; c < g.C; ++c) out[c * g.HW + hw] = in[hw * g.C + c] * sn[c];
      }
    }
  });
}

at::Tensor modulate_cpu(const at::Tensor& x_in, const at::Tensor& s_in, bool channels_last) {
  HPCGAN_CHECK_CPU(x_in);
  if (is_half(x_in)) {  // computed in float32 (checks.h: widen)
    HPCGAN_CHECK_SAME_DTYPE(s_in, x_in);
    return narrow_to(modulate_cpu(widen(x_in), widen(s_in), channels_last), x_in.scalar_type());
  }
  Act4 g;
  at::Tensor x = as_act4(x_in, true, g, "x");
  at::Tensor s = coef_nc(s_in, x, g, "s");
  at::Tensor xs = at::empty(x.sizes(), x.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                              : at::MemoryFormat::Contiguous));
  if (x.numel() == 0) return xs;
  advise_huge_pages(xs.data_ptr(), xs.nbytes());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hpcgan::modulate_cpu", [&] {
    modulate_kernel<scalar_t>(g, channels_last, x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                              xs.data_ptr<scalar_t>());
  });
  return xs;
}

template <typename T>
void modulate_backward_kernel(const Act4& g, const Act4& gg, const T* gxs, const T* x, const T* s, T* gx,
                              T* partial) {
  Tasks tk(g);
  at::parallel_for(0, tk.count, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t n, hw0, hw1;
      tk.range(t, n, hw0, hw1);
      const T* sn = s + n * g.C;
      T* acc = partial + t * g.C;
      for (int64_t c = 0; c < g.C; ++c) acc[c] = T(0);
      if (g.cl && gg.cl) {
        const int64_t base = n * g.HW * g.C;
        for (int64_t hw = hw0; hw < hw1; ++hw) {
          const int64_t o = base + hw * g.C;
          scale_grad_row<T>(gx + o, acc, gxs + o, x + o, sn, g.C);
        }
      } else {
        for (int64_t c = 0; c < g.C; ++c) {
          const T sc = sn[c];
          T a = T(0);
          for (int64_t hw = hw0; hw < hw1; ++hw) {
            const T v = gxs[gg.off(n, c, hw)];
            gx[g.off(n, c, hw)] = v * sc;
            a += v * x[g.off(n, c, hw)];
          }
          acc[c] = a;
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> modulate_backward_cpu(const at::Tensor& gxs_in, const at::Tensor& x_in,
                                                         const at::Tensor& s_in) {
  HPCGAN_CHECK_CPU(x_in);
  if (is_half(x_in)) {  // computed in float32 (checks.h: widen)
    HPCGAN_CHECK_SAME_DTYPE(gxs_in, x_in);
    HPCGAN_CHECK_SAME_DTYPE(s_in, x_in);
    auto [gx, gs] = modulate_backward_cpu(widen(gxs_in), widen(x_in), widen(s_in));
    return {narrow_to(gx, x_in.scalar_type()), narrow_to(gs, x_in.scalar_type())};
  }
  Act4 g, gg;
  at::Tensor x = as_act4(x_in, true, g, "x");
  at::Tensor gxs = as_act4(gxs_in, true, gg, "gxs");
  TORCH_CHECK(gxs.sizes() == x.sizes(), "gxs must have the shape of x ", x.sizes(), ", got ", gxs.sizes());
  HPCGAN_CHECK_SAME_DTYPE(gxs, x);
  at::Tensor s = coef_nc(s_in, x, g, "s");
  at::Tensor gx = at::empty_like(x);
  advise_huge_pages(gx.data_ptr(), gx.nbytes());
  Tasks tk(g);
  at::Tensor partial = at::empty({std::max<int64_t>(tk.count, 1), g.N > 0 ? g.C : 0}, x.options());
  if (x.numel() == 0) return {gx, at::zeros_like(s)};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hpcgan::modulate_backward_cpu", [&] {
    modulate_backward_kernel<scalar_t>(g, gg, gxs.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                       s.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>());
  });
  at::Tensor gs = partial.view({g.N, tk.per_sample, g.C}).sum(1);
  return {gx, gs};
}

// ---------------------------------------------------------------- epilogue ---
template <int ACT, typename T>
void epilogue_kernel(const Act4& g, int64_t noise_bs, const T* z, const T* d, const T* noise, const T* b, T* y,
                     T alpha, T gain, T clamp) {
  Tasks tk(g);
  const EpiOperands<T> ops(g, noise_bs, d, noise, b);
  at::parallel_for(0, tk.count, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t n, hw0, hw1;
      tk.range(t, n, hw0, hw1);
      const T* dn = ops.dn(n);
      const T* bn = ops.bn();
      const T* nz = ops.nz(n);
      if (g.cl) {
        for (int64_t hw = hw0; hw < hw1; ++hw) {
          const int64_t o = (n * g.HW + hw) * g.C;
          epi_row_cl<ACT, T>(y + o, z + o, dn, bn, nz[hw], g.C, alpha, gain, clamp);
        }
      } else {
        for (int64_t c = 0; c < g.C; ++c) {
          const int64_t o = (n * g.C + c) * g.HW + hw0;
          epi_row_nchw<ACT, T>(y + o, z + o, nz + hw0, dn[c], bn[c], hw1 - hw0, alpha, gain, clamp);
        }
      }
    }
  });
}

at::Tensor modconv_epilogue_cpu(const at::Tensor& z_in, const std::optional<at::Tensor>& d_in,
                                const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& b_in,
                                int64_t act, double alpha, double gain, double clamp) {
  HPCGAN_CHECK_CPU(z_in);
  if (is_half(z_in)) {  // computed in float32 (checks.h: widen)
    const Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);  // the dtype checks
    return narrow_to(modconv_epilogue_cpu(widen(e.z), widen(d_in), widen(noise_in), widen(b_in), act, alpha, gain,
                                          clamp),
                     z_in.scalar_type());
  }
  const Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);
  const at::Tensor& z = e.z;
  at::Tensor y = at::empty_like(z);
  if (z.numel() == 0) return y;
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "hpcgan::modconv_epilogue_cpu", [&] {
    using T = scalar_t;
    HPCGAN_DISPATCH_ACT(act, [&] {
      epilogue_kernel<ACT_, T>(e.g, e.noise_bs, z.data_ptr<T>(), ptr_or_null<T>(e.d), ptr_or_null<T>(e.noise),
                               ptr_or_null<T>(e.b), y.data_ptr<T>(), T(alpha), T(gain), T(clamp));
    });
  });
  return y;
}

template <int ACT, typename T>
void epilogue_backward_kernel(const Act4& g, const Act4& gd_geom, int64_t noise_bs, const T* dy, const T* z,
                              const T* d, const T* noise, const T* b, T* gz, T* pd, T* pb, T* gnoise, T alpha,
                              T gain, T clamp) {
  Tasks tk(g);
  const EpiOperands<T> ops(g, noise_bs, d, noise, b);
  at::parallel_for(0, tk.count, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t n, hw0, hw1;
      tk.range(t, n, hw0, hw1);
      const T* dn = ops.dn(n);
      const T* bn = ops.bn();
      const T* nz = ops.nz(n);
      T* accd = pd + t * g.C;
      T* accb = pb + t * g.C;
      T* gn = gnoise + n * g.HW;
      for (int64_t c = 0; c < g.C; ++c) accd[c] = accb[c] = T(0);
      for (int64_t hw = hw0; hw < hw1; ++hw) gn[hw] = T(0);
      if (g.cl && gd_geom.cl) {
        for (int64_t hw = hw0; hw < hw1; ++hw) {
          const int64_t o = (n * g.HW + hw) * g.C;
          gn[hw] = epi_grad_row_cl<ACT, T>(gz + o, accd, accb, dy + o, z + o, dn, bn, nz[hw], g.C, alpha, gain,
                                           clamp);
        }
      } else if (!g.cl && !gd_geom.cl) {
        T sums[2];
        for (int64_t c = 0; c < g.C; ++c) {
          const int64_t o = (n * g.C + c) * g.HW + hw0;
          epi_grad_row_nchw<ACT, T>(gz + o, gn + hw0, dy + o, z + o, nz + hw0, dn[c], bn[c], hw1 - hw0, alpha, gain,
                                    clamp, sums);
          accd[c] = sums[0];
          accb[c] = sums[1];
        }
      } else {  // mixed layouts (rare): element by element
        for (int64_t c = 0; c < g.C; ++c) {
          const T dc = dn[c], bc = bn[c];
          T ad = T(0), ab = T(0);
          for (int64_t hw = hw0; hw < hw1; ++hw) {
            const int64_t o = g.off(n, c, hw);
            const T zv = z[o];
            const T gp = epi_grad<ACT>(zv * dc + nz[hw] + bc, dy[gd_geom.off(n, c, hw)], alpha, gain, clamp);
            gz[o] = gp * dc;
            ad += gp * zv;
            ab += gp;
            gn[hw] += gp;
          }
          accd[c] = ad;
          accb[c] = ab;
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> modconv_epilogue_backward_cpu(
    const at::Tensor& dy_in, const at::Tensor& z_in, const std::optional<at::Tensor>& d_in,
    const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& b_in, int64_t act, double alpha,
    double gain, double clamp) {
  HPCGAN_CHECK_CPU(z_in);
  if (is_half(z_in)) {  // computed in float32 (checks.h: widen)
    const Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);  // the dtype checks
    Act4 gdy;
    (void)epi_grad_input(dy_in, e, gdy);
    auto [gz, gd, gn, gb] = modconv_epilogue_backward_cpu(widen(dy_in), widen(e.z), widen(d_in), widen(noise_in),
                                                          widen(b_in), act, alpha, gain, clamp);
    const auto dt = z_in.scalar_type();
    return {narrow_to(gz, dt), narrow_to(gd, dt), narrow_to(gn, dt), narrow_to(gb, dt)};
  }
  const Epi e = epi_prepare(z_in, d_in, noise_in, b_in, act);
  const at::Tensor& z = e.z;
  const Act4& g = e.g;
  Act4 gdy;
  at::Tensor dy = epi_grad_input(dy_in, e, gdy);
  Tasks tk(g);
  at::Tensor gz = at::empty_like(z);
  advise_huge_pages(gz.data_ptr(), gz.nbytes());
  at::Tensor pd = at::zeros({tk.count, g.C}, z.options());
  at::Tensor pb = at::zeros({tk.count, g.C}, z.options());
  at::Tensor gnoise = at::zeros({g.N, 1, z.size(2), z.size(3)}, z.options());
  if (z.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "hpcgan::modconv_epilogue_backward_cpu", [&] {
      using T = scalar_t;
      HPCGAN_DISPATCH_ACT(act, [&] {
        epilogue_backward_kernel<ACT_, T>(g, gdy, e.noise_bs, dy.data_ptr<T>(), z.data_ptr<T>(), ptr_or_null<T>(e.d),
                                          ptr_or_null<T>(e.noise), ptr_or_null<T>(e.b), gz.data_ptr<T>(),
                                          pd.data_ptr<T>(), pb.data_ptr<T>(), gnoise.data_ptr<T>(), T(alpha),
                                          T(gain), T(clamp));
      });
    });
  }
  at::Tensor empty = at::empty({0}, z.options());
  at::Tensor gd = e.d.defined() ? pd.view({g.N, tk.per_sample, g.C}).sum(1) : empty;
  at::Tensor gb = e.b.defined() ? pb.sum(0) : empty;
  return {gz, gd, e.noise.defined() ? gnoise : empty, gb};
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CPU, m) {
  m.impl("modulate", &hpcgan::modulate_cpu);
  m.impl("modulate_backward", &hpcgan::modulate_backward_cpu);
  m.impl("modconv_epilogue", &hpcgan::modconv_epilogue_cpu);
  m.impl("modconv_epilogue_backward", &hpcgan::modconv_epilogue_backward_cpu);
}
