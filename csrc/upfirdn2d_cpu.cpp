// upfirdn2d on the CPU.
//
// Only the kept output pixels are computed and only filter taps that land on a
// real (not inserted-zero, not padding) input pixel are visited; neither the
// upsampled nor the padded image is ever materialised.
//
// Horizontal geometry (the vertical one is the same with y in place of x): with
// g = gcd(up, down), P = up / g and S = down / g, output pixel ox = P*k + p
// (phase p in [0, P)) reads, for filter tap j, the input pixel S*k + c(p, j),
// where c(p, j) = (p*down - pad0 + j) / up, provided that p*down - pad0 + j is a
// multiple of up (otherwise the tap hits an inserted zero). Vertically, output
// row oy reads input rows (oy*down - pad0 + i) / up for the filter rows i that
// give a multiple of up. So, for one output row and one phase, the output is
//   o[k] = sum over taps t of w_t * x[off_t + k * S],   k in [k0_t, k1_t)
// (a tap outside its k range reads padding). These tap lists depend only on
// (oy, p) and are built once per call (Plan::rows).
//
// Layouts: NCHW works one output row of one plane at a time, phase by phase
// into a small row buffer that is interleaved into the output at the end
// (vectorised along k); NHWC works one output pixel at a time with the
// channels as the contiguous, vectorised inner loop. Both run in parallel over
// output rows and keep partial sums in registers across all taps, so every
// output element is written once.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "checks.h"
#include "cpu_vec.h"
#include "upfirdn2d_common.h"

// Hot loops are force-inlined into ISA-specific row functions (see the end).
#if defined(__GNUC__)
#define HPCGAN_INLINE inline __attribute__((always_inline))
#else
#define HPCGAN_INLINE inline
#endif
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__AVX2__)
#define HPCGAN_HAVE_AVX2_CLONE 1
#else
#define HPCGAN_HAVE_AVX2_CLONE 0
#endif

namespace hpcgan {
namespace {

// Elements per register block of the accumulation loops: 128 bytes (eight SSE
// or four AVX registers of partial sums).
template <typename T>
inline constexpr int64_t kBlock = 128 / sizeof(T);

// One horizontal filter tap of one phase (see the top of the file).
struct HTap {
  int64_t j;       // filter column
  int64_t c;       // input column read for k = 0
  int64_t k0, k1;  // k range with the input column inside the image
};

// One 2-D filter tap as seen by one output row and phase: weight (gain
// included) and offset from the plane (NCHW) or image (NHWC) base of the input
// element read for k = 0, in elements; valid for k in [k0, k1).
template <typename T>
struct Tap {
  T w;
  int64_t off;
  int64_t k0, k1;
};

// The taps of one output row, phase by phase; for k in [kin0, kin1) of a phase
// all its taps are valid (the interior).
template <typename T>
struct RowTaps {
  std::vector<Tap<T>> taps;
  std::vector<int64_t> begin;  // taps of phase p: [begin[p], begin[p + 1])
  std::vector<int64_t> kin0, kin1;
};

template <typename T>
struct Plan {
  UpFirDnGeom g;
  int64_t P = 1, S = 1, Kmax = 0;        // horizontal phases, input stride, k count of phase 0
  int64_t unit = 1;                      // elements per input pixel along W (1 NCHW, C NHWC)
  std::vector<std::vector<HTap>> htaps;  // [P]
  std::vector<T> w;                      // [fh, fw] filter as correlated (flip applied), times gain
  std::vector<RowTaps<T>> rows;          // [outH], or empty when too large: built per row
};

template <typename T>
void build_row_taps(const Plan<T>& pl, int64_t oy, RowTaps<T>& rt) {
  const UpFirDnGeom& g = pl.g;
  rt.taps.clear();
  rt.begin.assign(pl.P + 1, 0);
  rt.kin0.assign(pl.P, 0);
  rt.kin1.assign(pl.P, 0);
  const int64_t base = oy * g.downy - g.pady0;  // padded-upsampled row of filter row 0
  for (int64_t p = 0; p < pl.P; ++p) {
    rt.begin[p] = static_cast<int64_t>(rt.taps.size());
    const int64_t Kp = p < g.outW ? (g.outW - p + pl.P - 1) / pl.P : 0;
    int64_t kin0 = 0, kin1 = Kp;
    for (int64_t i = floor_mod(-base, g.upy); i < g.fh; i += g.upy) {
      const int64_t iy = floor_div(base + i, g.upy);
      if (iy < 0 || iy >= g.H) continue;  // padding row
      const T* wrow = pl.w.data() + i * g.fw;
      for (const HTap& d : pl.htaps[p]) {
        const T w = wrow[d.j];
        if (w == T(0)) continue;
        rt.taps.push_back({w, (iy * g.W + d.c) * pl.unit, d.k0, d.k1});
        kin0 = std::max(kin0, d.k0);
        kin1 = std::min(kin1, d.k1);
      }
    }
    rt.kin0[p] = kin0;
    rt.kin1[p] = std::max(kin0, kin1);
  }
  rt.begin[pl.P] = static_cast<int64_t>(rt.taps.size());
}

template <typename T>
Plan<T> make_plan(const UpFirDnGeom& g, const at::Tensor& f, bool flip, double gain) {
  Plan<T> pl;
  pl.g = g;
  const int64_t gx = std::gcd(g.upx, g.downx);
  pl.P = g.upx / gx;
  pl.S = g.downx / gx;
  pl.Kmax = (g.outW + pl.P - 1) / pl.P;
  pl.unit = g.channels_last ? g.C : 1;
  pl.htaps.resize(pl.P);
  for (int64_t p = 0; p < pl.P && p < g.outW; ++p) {
    const int64_t Kp = (g.outW - p + pl.P - 1) / pl.P;
    for (int64_t j = 0; j < g.fw; ++j) {
      const int64_t r = p * g.downx - g.padx0 + j;
      if (floor_mod(r, g.upx) != 0) continue;  // lands on an inserted zero
      const int64_t c = floor_div(r, g.upx);
      // 0 <= S*k + c <= W - 1
      const int64_t k0 = std::max<int64_t>(0, -floor_div(c, pl.S));  // ceil(-c / S)
      const int64_t k1 = std::min<int64_t>(Kp, floor_div(g.W - 1 - c, pl.S) + 1);
      if (k1 > k0) pl.htaps[p].push_back({j, c, k0, k1});
    }
  }
  // Filter as correlated: flip=false means true convolution (filter reversed).
  at::Tensor fd = f.to(at::kCPU, at::kDouble).contiguous();
  if (!flip) fd = fd.flip({0, 1}).contiguous();
  const double* fp = fd.data_ptr<double>();
  pl.w.resize(g.fh * g.fw);
  for (int64_t i = 0; i < g.fh * g.fw; ++i) pl.w[i] = static_cast<T>(fp[i] * gain);
  // Per-row tap lists, unless they would be large (huge outputs with big filters).
  if (g.outH * g.fh * g.fw <= (int64_t(1) << 18)) {
    pl.rows.resize(g.outH);
    for (int64_t oy = 0; oy < g.outH; ++oy) build_row_taps(pl, oy, pl.rows[oy]);
  }
  return pl;
}

template <typename T>
inline const RowTaps<T>& row_taps(const Plan<T>& pl, int64_t oy, RowTaps<T>& scratch) {
  if (!pl.rows.empty()) return pl.rows[oy];
  build_row_taps(pl, oy, scratch);
  return scratch;
}


// o[k] = sum_t taps[t].w * x[taps[t].off + k * xs] for k in [0, n), xs = XS_CT
// when XS_CT > 0 (compile time) else xs_rt; every tap valid for every k.
// Partial sums stay in registers (blocks of kBlock) across all taps.
template <typename T, int64_t XS_CT>
HPCGAN_INLINE void accumulate_interior(T* __restrict__ o, const T* __restrict__ x, const Tap<T>* taps, int64_t nt,
                                       int64_t n, int64_t xs_rt) {
  constexpr int64_t B = kBlock<T>;
  const int64_t xs = XS_CT > 0 ? XS_CT : xs_rt;
  int64_t k = 0;
  for (; k + B <= n; k += B) {
    T acc[B] = {};
    for (int64_t t = 0; t < nt; ++t) {
      const T w = taps[t].w;
      const T* __restrict__ p = x + (taps[t].off + k * xs);
      for (int64_t b = 0; b < B; ++b) acc[b] += w * p[b * xs];
    }
    for (int64_t b = 0; b < B; ++b) o[k + b] = acc[b];
  }
  if (k < n) {
    T acc[B] = {};
    const int64_t m = n - k;
    for (int64_t t = 0; t < nt; ++t) {
      const T w = taps[t].w;
      const T* __restrict__ p = x + (taps[t].off + k * xs);
      for (int64_t b = 0; b < m; ++b) acc[b] += w * p[b * xs];
    }
    for (int64_t b = 0; b < m; ++b) o[k + b] = acc[b];
  }
}

// The same for k in [ka, kb) near the borders, where taps may be out of range.
template <typename T>
HPCGAN_INLINE void accumulate_border(T* __restrict__ o, const T* __restrict__ x, const Tap<T>* taps, int64_t nt,
                                     int64_t ka, int64_t kb, int64_t xs) {
  for (int64_t k = ka; k < kb; ++k) {
    T s = T(0);
    for (int64_t t = 0; t < nt; ++t)
      if (k >= taps[t].k0 && k < taps[t].k1) s += taps[t].w * x[taps[t].off + k * xs];
    o[k] = s;
  }
}

// NCHW: r indexes (plane, oy); one output row at a time, phase by phase.
template <typename T, int SS>
HPCGAN_INLINE void nchw_rows(const Plan<T>& pl, const T* x, T* y, int64_t r0, int64_t r1) {
  const UpFirDnGeom& g = pl.g;
  const int64_t P = pl.P, Kmax = pl.Kmax, S = pl.S;
  std::vector<T> tmp(P > 1 ? P * Kmax : 0);
  RowTaps<T> scratch;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t plane = r / g.outH, oy = r - plane * g.outH;
    const T* xp = x + plane * g.H * g.W;
    T* yr = y + r * g.outW;
    const RowTaps<T>& rt = row_taps(pl, oy, scratch);
    for (int64_t p = 0; p < P && p < g.outW; ++p) {
      const int64_t Kp = (g.outW - p + P - 1) / P;
      T* o = P == 1 ? yr : tmp.data() + p * Kmax;
      const Tap<T>* taps = rt.taps.data() + rt.begin[p];
      const int64_t nt = rt.begin[p + 1] - rt.begin[p];
      const int64_t kin0 = rt.kin0[p], kin1 = rt.kin1[p];
      accumulate_border(o, xp, taps, nt, 0, kin0, S);
      accumulate_interior<T, SS>(o + kin0, xp + kin0 * S, taps, nt, kin1 - kin0, S);
      accumulate_border(o, xp, taps, nt, kin1, Kp, S);
    }
    if (P == 2) {
      const T* __restrict__ a0 = tmp.data();
      const T* __restrict__ a1 = a0 + Kmax;
      const int64_t n1 = g.outW / 2;  // pixels of phase 1
      for (int64_t k = 0; k < n1; ++k) {
        yr[2 * k] = a0[k];
        yr[2 * k + 1] = a1[k];
      }
      if (g.outW & 1) yr[g.outW - 1] = a0[n1];
    } else if (P > 2) {
      for (int64_t p = 0; p < P; ++p) {
        const T* a = tmp.data() + p * Kmax;
        for (int64_t k = 0, ox = p; ox < g.outW; ++k, ox += P) yr[ox] = a[k];
      }
    }
  }
}

// NHWC: r indexes (n, oy); one output pixel (C contiguous values) at a time,
// the channels being the vectorised dimension.
template <typename T>
HPCGAN_INLINE void nhwc_rows(const Plan<T>& pl, const T* x, T* y, int64_t r0, int64_t r1) {
  const UpFirDnGeom& g = pl.g;
  const int64_t C = g.C, P = pl.P, S = pl.S;
  RowTaps<T> scratch;
  std::vector<Tap<T>> valid;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.outH, oy = r - n * g.outH;
    const T* xn = x + n * g.H * g.W * C;
    T* yr = y + r * g.outW * C;
    const RowTaps<T>& rt = row_taps(pl, oy, scratch);
    for (int64_t p = 0; p < P && p < g.outW; ++p) {
      const int64_t Kp = (g.outW - p + P - 1) / P;
      const Tap<T>* taps = rt.taps.data() + rt.begin[p];
      const int64_t ntaps = rt.begin[p + 1] - rt.begin[p];
      for (int64_t k = 0; k < Kp; ++k) {
        const Tap<T>* tp = taps;
        int64_t nt = ntaps;
        if (k < rt.kin0[p] || k >= rt.kin1[p]) {  // border pixel: keep the taps in range
          valid.clear();
          for (int64_t t = 0; t < ntaps; ++t)
            if (k >= taps[t].k0 && k < taps[t].k1) valid.push_back(taps[t]);
          tp = valid.data();
          nt = static_cast<int64_t>(valid.size());
        }
        accumulate_interior<T, 1>(yr + (k * P + p) * C, xn + k * S * C, tp, nt, C, 1);
      }
    }
  }
}

// The row loops compiled twice: for the baseline ISA of the build and, on
// x86-64, for AVX2 (picked at run time when the CPU has it).
template <typename T, int SS>
void nchw_rows_base(const Plan<T>& pl, const T* x, T* y, int64_t r0, int64_t r1) {
  nchw_rows<T, SS>(pl, x, y, r0, r1);
}
template <typename T>
void nhwc_rows_base(const Plan<T>& pl, const T* x, T* y, int64_t r0, int64_t r1) {
  nhwc_rows<T>(pl, x, y, r0, r1);
}
#if HPCGAN_HAVE_AVX2_CLONE
template <typename T, int SS>
__attribute__((target("avx2,fma"))) void nchw_rows_avx2(const Plan<T>& pl, const T* x, T* y, int64_t r0,
                                                         int64_t r1) {
  nchw_rows<T, SS>(pl, x, y, r0, r1);
}
template <typename T>
__attribute__((target("avx2,fma"))) void nhwc_rows_avx2(const Plan<T>& pl, const T* x, T* y, int64_t r0,
                                                        int64_t r1) {
  nhwc_rows<T>(pl, x, y, r0, r1);
}
#endif

inline bool cpu_has_avx2() {
#if HPCGAN_HAVE_AVX2_CLONE
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

template <typename T, int SS>
void run_nchw(const Plan<T>& pl, const T* x, T* y) {
  const UpFirDnGeom& g = pl.g;
  const int64_t rows = g.N * g.C * g.outH;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.outW));
  auto* fn = &nchw_rows_base<T, SS>;
#if HPCGAN_HAVE_AVX2_CLONE
  if (cpu_has_avx2()) fn = &nchw_rows_avx2<T, SS>;
#endif
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { fn(pl, x, y, r0, r1); });
}

template <typename T>
void run_nhwc(const Plan<T>& pl, const T* x, T* y) {
  const UpFirDnGeom& g = pl.g;
  const int64_t rows = g.N * g.outH;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.outW * g.C));
  auto* fn = &nhwc_rows_base<T>;
#if HPCGAN_HAVE_AVX2_CLONE
  if (cpu_has_avx2()) fn = &nhwc_rows_avx2<T>;
#endif
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { fn(pl, x, y, r0, r1); });
}

at::Tensor upfirdn2d_cpu(const at::Tensor& x_in, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                         int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                         double gain) {
  HPCGAN_CHECK_CPU(x_in);
  HPCGAN_CHECK_CPU(f);
  at::Tensor x;
  const UpFirDnGeom g = upfirdn2d_prepare(x_in, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, x);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "upfirdn2d (CPU): x must be float32 or float64, got ", x.scalar_type(),
              " (the Python wrapper computes float16/bfloat16 in float32)");
  at::Tensor y = upfirdn2d_empty_output(x, g);
  if (y.numel() == 0) return y;
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hpcgan::upfirdn2d_cpu", [&] {
    using T = scalar_t;
    const Plan<T> pl = make_plan<T>(g, f, flip, gain);
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    if (g.channels_last) {
      run_nhwc<T>(pl, xp, yp);
    } else if (pl.S == 1) {
      run_nchw<T, 1>(pl, xp, yp);
    } else if (pl.S == 2) {
      run_nchw<T, 2>(pl, xp, yp);
    } else {
      run_nchw<T, 0>(pl, xp, yp);
    }
  });
  return y;
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CPU, m) { m.impl("upfirdn2d", &hpcgan::upfirdn2d_cpu); }
