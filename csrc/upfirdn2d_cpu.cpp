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
// Layouts: NHWC works one output pixel at a time with the channels as the
// contiguous, vectorised inner loop, in parallel over output rows, keeping
// partial sums in registers across all taps, so every output element is
// written once. NCHW uses the "flat" path below (polyphase components of the
// zero-padded input). Filters must be finite (the flat path multiplies padding
// by every weight); the Python function rejects others with a clear error.
//
// CPU dispatch: why this file does not use cpu_vec.h's HPCGAN_CPU_CLONES.
// Threading is the same as in the other ops (at::parallel_for); only the ISA
// dispatch differs, for three reasons:
// - Granularity. bias_act and modconv clone their innermost row loops (noinline,
//   one call per row of hundreds of elements). Here the innermost loop is one
//   output pixel (NHWC: C channels of a few taps) or one phase of a group, too
//   short for a call each; so the loops are force-inlined into the two row
//   functions (nhwc_rows, flat_items) and those are compiled per ISA.
// - FMA. The AVX2 version is built with target("avx2,fma"). cpu_vec.h's "avx2"
//   clone has no FMA (GCC's avx2 does not imply it, and its avx512f clone does
//   not give 256-bit FMA either); putting "fma" into cpu_vec.h would change the
//   rounding of bias_act and modconv, and dropping it here would change the
//   rounding of this op on every AVX2 machine. The explicit 256-bit vectors
//   of the flat path gain nothing from an AVX-512 clone.
// - Measured (issue 15 item 6): nhwc_rows and flat_items as HPCGAN_CPU_CLONES
//   (avx512f clone picked on the AMD EPYC build machine) were not faster:
//   upsample2d/downsample2d, NCHW and channels_last, 8x512x8x8 to 8x64x128x128,
//   one thread, min of 15 calls, 5 interleaved runs of each build on a loaded
//   2-core machine: geometric mean of the ratios 1.15 (new/old; 0.86 to 2.5
//   per case). benchmarks/ops.py --res 16 64 gave 0.87 for the upfirdn2d rows,
//   but 0.44 for bias_act, whose code had not changed: noise of that size.
// So the dispatch stays as it is (nhwc_rows_avx2, flat_items_avx2 and
// cpu_has_avx2, at the end of the file); no other op uses it.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <memory>
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
template <typename T>
void nhwc_rows_base(const Plan<T>& pl, const T* x, T* y, int64_t r0, int64_t r1) {
  nhwc_rows<T>(pl, x, y, r0, r1);
}
#if HPCGAN_HAVE_AVX2_CLONE
template <typename T>
__attribute__((target("avx2,fma"))) void nhwc_rows_avx2(const Plan<T>& pl, const T* x, T* y, int64_t r0,
                                                        int64_t r1) {
  nhwc_rows<T>(pl, x, y, r0, r1);
}
#endif

// ---------------------------------------------------------------------------
// NCHW "flat" path: polyphase components of the zero-padded input.
//
// Along one axis, output pixel P*k + p reads input pixel S*k + c for its taps
// (see the top of the file). Writing c = S*d + a (a in [0, S)), that is pixel
// k + d of the polyphase component a of the input (component a holds pixels a,
// S + a, 2S + a, ...). So once the input is split into its S_y x S_x
// components, each padded with zeros (so every tap is valid for every k), the
// output phase (p_y, p_x) is, for each tap, a unit-stride read at a constant
// offset in both dimensions. With the component rows stored back to back
// (pitch len_x) and the planes of a group back to back, a whole group of
// planes is one flat loop per phase,
//   o[q] = sum over taps of w * comp[off + q],
// over q = ky * len_x + kx: no borders, no per-row tap lists, long vectorised
// loops even for 4x4 planes. The few extra columns (len_x - K_x) and rows
// computed are garbage and not copied out. Large planes are cut into bands of
// output rows so the working set stays in cache.
// ---------------------------------------------------------------------------

struct FlatTap1 {
  int64_t j;  // filter index
  int64_t a;  // polyphase component
  int64_t d;  // shift in the component, minus the smallest shift
};

struct FlatAxis {
  int64_t P = 1, S = 1, K = 0;           // output phases, components, k count of phase 0
  int64_t dmin = 0, ext = 0, len = 0;    // smallest shift, shift range, component length (K + ext)
  std::vector<std::vector<FlatTap1>> taps;  // [P]
};

inline FlatAxis make_flat_axis(int64_t in, int64_t out, int64_t up, int64_t down, int64_t pad0, int64_t flen) {
  FlatAxis a;
  const int64_t g = std::gcd(up, down);
  a.P = up / g;
  a.S = down / g;
  a.K = (out + a.P - 1) / a.P;
  a.taps.resize(a.P);
  int64_t dmin = 0, dmax = 0;
  bool any = false;
  for (int64_t p = 0; p < a.P && p < out; ++p) {
    const int64_t Kp = (out - p + a.P - 1) / a.P;
    for (int64_t j = 0; j < flen; ++j) {
      const int64_t r = p * down - pad0 + j;
      if (floor_mod(r, up) != 0) continue;  // inserted zero
      const int64_t c = floor_div(r, up);
      const int64_t k0 = std::max<int64_t>(0, -floor_div(c, a.S));
      const int64_t k1 = std::min<int64_t>(Kp, floor_div(in - 1 - c, a.S) + 1);
      if (k1 <= k0) continue;  // only ever reads padding
      const int64_t d = floor_div(c, a.S);
      a.taps[p].push_back({j, floor_mod(c, a.S), d});
      dmin = any ? std::min(dmin, d) : d;
      dmax = any ? std::max(dmax, d) : d;
      any = true;
    }
  }
  for (auto& v : a.taps)
    for (auto& t : v) t.d -= dmin;
  a.dmin = dmin;
  a.ext = dmax - dmin;
  a.len = a.K + a.ext;
  return a;
}

template <typename T>
struct FlatPlan {
  UpFirDnGeom g;
  FlatAxis ax, ay;
  int64_t planes = 0;       // N * C
  int64_t G = 1;            // planes per item
  int64_t band = 1, Hb = 1; // output phase rows per item; component rows per plane (band + ay.ext)
  int64_t plane_stride = 0, comp_stride = 0;  // Hb * len_x; G * plane_stride
  int64_t ngroups = 0, nbands = 0;
  int64_t buf_size = 0;     // elements of the component buffer (with zero slack)
  std::vector<Tap<T>> taps;     // per output phase (py * Px + px), offsets into the buffer
  std::vector<int64_t> begin;   // [Py * Px + 1]
};

// Bytes of component buffer plus phase outputs per item: well inside L2.
inline constexpr int64_t kFlatBudgetBytes = int64_t(192) << 10;

template <typename T>
FlatPlan<T> make_flat_plan(const UpFirDnGeom& g, const std::vector<T>& w) {
  FlatPlan<T> pl;
  pl.g = g;
  pl.ax = make_flat_axis(g.W, g.outW, g.upx, g.downx, g.padx0, g.fw);
  pl.ay = make_flat_axis(g.H, g.outH, g.upy, g.downy, g.pady0, g.fh);
  const FlatAxis &ax = pl.ax, &ay = pl.ay;
  pl.planes = g.N * g.C;
  const int64_t per_elem = (ax.S * ay.S + ax.P * ay.P) * int64_t(sizeof(T));
  const int64_t budget = kFlatBudgetBytes;
  const int64_t plane_cost = (ay.K + ay.ext) * ax.len * per_elem;
  const int64_t nthreads = std::max<int64_t>(1, at::get_num_threads());
  if (plane_cost <= budget) {
    pl.band = ay.K;
    pl.G = std::max<int64_t>(1, budget / plane_cost);
    // keep a few items per thread when there are enough planes
    pl.G = std::min(pl.G, std::max<int64_t>(1, pl.planes / (4 * nthreads)));
  } else {
    pl.G = 1;
    pl.band = std::max<int64_t>(1, budget / (ax.len * per_elem) - ay.ext);
    pl.band = std::min(pl.band, ay.K);
  }
  pl.Hb = pl.band + ay.ext;
  pl.plane_stride = pl.Hb * ax.len;
  pl.comp_stride = pl.G * pl.plane_stride;
  pl.ngroups = (pl.planes + pl.G - 1) / pl.G;
  pl.nbands = (ay.K + pl.band - 1) / pl.band;
  pl.buf_size = ax.S * ay.S * pl.comp_stride + (ay.ext + 1) * ax.len + ax.ext + 64;
  pl.begin.assign(ax.P * ay.P + 1, 0);
  for (int64_t py = 0; py < ay.P; ++py)
    for (int64_t px = 0; px < ax.P; ++px) {
      pl.begin[py * ax.P + px] = static_cast<int64_t>(pl.taps.size());
      for (const FlatTap1& ty : ay.taps[py])
        for (const FlatTap1& tx : ax.taps[px]) {
          const T wt = w[ty.j * g.fw + tx.j];
          if (wt == T(0)) continue;
          const int64_t off = (ty.a * ax.S + tx.a) * pl.comp_stride + ty.d * ax.len + tx.d;
          pl.taps.push_back({wt, off, 0, 0});
        }
    }
  pl.begin[ax.P * ay.P] = static_cast<int64_t>(pl.taps.size());
  return pl;
}

// e[i] = s[2i], o[i] = s[2i + 1] for i in [0, cnt): the two polyphase
// components of a stride-2 row, with explicit vector shuffles.
template <typename T>
HPCGAN_INLINE void deinterleave2(const T* __restrict__ s, T* __restrict__ e, T* __restrict__ o, int64_t cnt) {
  int64_t i = 0;
#if defined(__GNUC__)
  typedef T V __attribute__((vector_size(32)));
  typedef T VU __attribute__((vector_size(32), aligned(sizeof(T))));
  typedef T H __attribute__((vector_size(16)));
  typedef T HU __attribute__((vector_size(16), aligned(sizeof(T))));
  constexpr int64_t L = 32 / sizeof(T);
  for (; i + L <= cnt; i += L) {
    const V a = *reinterpret_cast<const VU*>(s + 2 * i);
    const V b = *reinterpret_cast<const VU*>(s + 2 * i + L);
    if constexpr (L == 8) {
      *reinterpret_cast<VU*>(e + i) = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
      *reinterpret_cast<VU*>(o + i) = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
    } else {
      *reinterpret_cast<VU*>(e + i) = __builtin_shufflevector(a, b, 0, 2, 4, 6);
      *reinterpret_cast<VU*>(o + i) = __builtin_shufflevector(a, b, 1, 3, 5, 7);
    }
  }
  for (; i + L / 2 <= cnt; i += L / 2) {
    const H a = *reinterpret_cast<const HU*>(s + 2 * i);
    const H b = *reinterpret_cast<const HU*>(s + 2 * i + L / 2);
    if constexpr (L == 8) {
      *reinterpret_cast<HU*>(e + i) = __builtin_shufflevector(a, b, 0, 2, 4, 6);
      *reinterpret_cast<HU*>(o + i) = __builtin_shufflevector(a, b, 1, 3, 5, 7);
    } else {
      *reinterpret_cast<HU*>(e + i) = __builtin_shufflevector(a, b, 0, 2);
      *reinterpret_cast<HU*>(o + i) = __builtin_shufflevector(a, b, 1, 3);
    }
  }
#endif
  for (; i < cnt; ++i) {
    e[i] = s[2 * i];
    o[i] = s[2 * i + 1];
  }
}

// The input row src (W pixels) scattered into the component rows dst + cx *
// cstride (cx in [0, S)): pixel ix goes to component ix % S, position
// ix / S - dmin, when that is in [0, len). Other positions are left alone (they
// hold zeros: padding).
template <typename T>
HPCGAN_INLINE void flat_fill_row(T* __restrict__ dst, int64_t cstride, const T* __restrict__ src, int64_t S,
                                 int64_t dmin, int64_t len, int64_t W) {
  if (S == 1) {
    const int64_t i0 = std::max<int64_t>(0, dmin), i1 = std::min<int64_t>(W, len + dmin);
    if (i1 > i0) std::copy(src + i0, src + i1, dst + (i0 - dmin));
  } else if (S == 2) {
    // pair i = pixels 2i, 2i + 1 -> position i - dmin of components 0 and 1
    const int64_t i0 = std::max<int64_t>(0, dmin), i1 = std::min<int64_t>(W / 2, len + dmin);
    if (i1 > i0) deinterleave2(src + 2 * i0, dst + (i0 - dmin), dst + cstride + (i0 - dmin), i1 - i0);
    if (W & 1) {
      const int64_t i = W / 2;
      if (i - dmin >= 0 && i - dmin < len) dst[i - dmin] = src[W - 1];
    }
  } else {
    for (int64_t ix = 0; ix < W; ++ix) {
      const int64_t n = ix / S - dmin;
      if (n >= 0 && n < len) dst[(ix % S) * cstride + n] = src[ix];
    }
  }
}

// o[q] = sum_t taps[t].w * x[taps[t].off + q] for q in [0, n), with explicit
// vectors (GCC/Clang vector extensions: one AVX2 register, or two SSE ones in
// the baseline build) so the partial sums of 4 registers stay in registers
// across all taps whatever the compiler's loop heuristics decide.
template <typename T>
HPCGAN_INLINE void flat_accumulate(T* __restrict__ o, const T* __restrict__ x, const Tap<T>* taps, int64_t nt,
                                   int64_t n) {
#if defined(__GNUC__)
  typedef T V __attribute__((vector_size(32)));
  typedef T VU __attribute__((vector_size(32), aligned(sizeof(T))));
  constexpr int64_t L = 32 / sizeof(T);
  int64_t q = 0;
  for (; q + 4 * L <= n; q += 4 * L) {
    V a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t t = 0; t < nt; ++t) {
      const T w = taps[t].w;
      const T* p = x + taps[t].off + q;
      a0 += w * *reinterpret_cast<const VU*>(p);
      a1 += w * *reinterpret_cast<const VU*>(p + L);
      a2 += w * *reinterpret_cast<const VU*>(p + 2 * L);
      a3 += w * *reinterpret_cast<const VU*>(p + 3 * L);
    }
    *reinterpret_cast<VU*>(o + q) = a0;
    *reinterpret_cast<VU*>(o + q + L) = a1;
    *reinterpret_cast<VU*>(o + q + 2 * L) = a2;
    *reinterpret_cast<VU*>(o + q + 3 * L) = a3;
  }
  for (; q + L <= n; q += L) {
    V a0 = {};
    for (int64_t t = 0; t < nt; ++t) a0 += taps[t].w * *reinterpret_cast<const VU*>(x + taps[t].off + q);
    *reinterpret_cast<VU*>(o + q) = a0;
  }
  for (; q < n; ++q) {
    T s = T(0);
    for (int64_t t = 0; t < nt; ++t) s += taps[t].w * x[taps[t].off + q];
    o[q] = s;
  }
#else
  accumulate_interior<T, 1>(o, x, taps, nt, n, 1);
#endif
}

// One work item of the flat path: which planes and which band of output phase
// rows it covers.
struct FlatItem {
  int64_t p0, gcnt;  // planes [p0, p0 + gcnt)
  int64_t ky0, nb;   // output phase rows [ky0, ky0 + nb) of every phase
};

template <typename T>
HPCGAN_INLINE FlatItem flat_item(const FlatPlan<T>& pl, int64_t it) {
  const int64_t gi = it / pl.nbands, bi = it - gi * pl.nbands;
  const int64_t p0 = gi * pl.G, ky0 = bi * pl.band;
  return {p0, std::min(pl.G, pl.planes - p0), ky0, std::min(pl.band, pl.ay.K - ky0)};
}

// Step 1 of an item: the polyphase components of the (zero-padded) input in
// buf. Positions that hold padding are never written, so they keep the zeros
// of the allocation; only in banded mode can a padding row have held data of
// another band, and those rows are zeroed first.
template <typename T>
HPCGAN_INLINE void flat_fill_components(const FlatPlan<T>& pl, const FlatItem& im, const T* x, T* buf) {
  const UpFirDnGeom& g = pl.g;
  const FlatAxis &ax = pl.ax, &ay = pl.ay;
  const int64_t lx = ax.len, Sx = ax.S, Sy = ay.S;
  const int64_t rows = im.nb + ay.ext;
  if (pl.nbands > 1) {
    for (int64_t gg = 0; gg < im.gcnt; ++gg)
      for (int64_t cy = 0; cy < Sy; ++cy)
        for (int64_t m = 0; m < rows; ++m) {
          const int64_t iy = Sy * (im.ky0 + m + ay.dmin) + cy;
          if (iy >= 0 && iy < g.H) continue;
          for (int64_t cx = 0; cx < Sx; ++cx) {
            T* dst = buf + (cy * Sx + cx) * pl.comp_stride + gg * pl.plane_stride + m * lx;
            std::fill(dst, dst + lx, T(0));
          }
        }
  }
  // input rows iy with m = iy / Sy - ky0 - dmin_y in [0, rows)
  const int64_t iy0 = std::max<int64_t>(0, Sy * (im.ky0 + ay.dmin));
  const int64_t iy1 = std::min<int64_t>(g.H, Sy * (im.ky0 + rows + ay.dmin));
  for (int64_t gg = 0; gg < im.gcnt; ++gg) {
    const T* xp = x + (im.p0 + gg) * g.H * g.W;
    T* bp = buf + gg * pl.plane_stride;
    for (int64_t iy = iy0; iy < iy1; ++iy) {
      const int64_t cy = iy % Sy, m = iy / Sy - im.ky0 - ay.dmin;
      flat_fill_row(bp + cy * Sx * pl.comp_stride + m * lx, pl.comp_stride, xp + iy * g.W, Sx, ax.dmin, lx, g.W);
    }
  }
}

// Step 3 of an item: the output phases in tmp interleaved into the output rows.
template <typename T>
HPCGAN_INLINE void flat_store_phases(const FlatPlan<T>& pl, const FlatItem& im, const T* tmp, T* y) {
  const UpFirDnGeom& g = pl.g;
  const int64_t lx = pl.ax.len, Px = pl.ax.P, Py = pl.ay.P;
  for (int64_t gg = 0; gg < im.gcnt; ++gg) {
    T* yp = y + (im.p0 + gg) * g.outH * g.outW;
    for (int64_t ky = 0; ky < im.nb; ++ky)
      for (int64_t py = 0; py < Py; ++py) {
        const int64_t oy = Py * (im.ky0 + ky) + py;
        if (oy >= g.outH) continue;
        T* __restrict__ yr = yp + oy * g.outW;
        const T* a0 = tmp + (py * Px) * pl.comp_stride + gg * pl.plane_stride + ky * lx;
        if (Px == 1) {
          for (int64_t k = 0; k < g.outW; ++k) yr[k] = a0[k];
        } else if (Px == 2) {
          const T* __restrict__ a1 = a0 + pl.comp_stride;
          const int64_t n1 = g.outW / 2;
          for (int64_t k = 0; k < n1; ++k) {
            yr[2 * k] = a0[k];
            yr[2 * k + 1] = a1[k];
          }
          if (g.outW & 1) yr[g.outW - 1] = a0[n1];
        } else {
          for (int64_t px = 0; px < Px; ++px) {
            const T* a = a0 + px * pl.comp_stride;
            for (int64_t k = 0, ox = px; ox < g.outW; ++k, ox += Px) yr[ox] = a[k];
          }
        }
      }
  }
}

// Items [i0, i1) of the flat path, each in three steps: fill the components,
// compute every output phase as one flat loop over the group, store.
template <typename T>
HPCGAN_INLINE void flat_items(const FlatPlan<T>& pl, const T* x, T* y, int64_t i0, int64_t i1) {
  const int64_t phases = pl.ax.P * pl.ay.P;
  std::vector<T> bufv(pl.buf_size, T(0));
  std::unique_ptr<T[]> tmpv(new T[phases * pl.comp_stride]);
  T* const buf = bufv.data();
  T* const tmp = tmpv.get();
  for (int64_t it = i0; it < i1; ++it) {
    const FlatItem im = flat_item(pl, it);
    flat_fill_components(pl, im, x, buf);
    const int64_t n = ((im.gcnt - 1) * pl.Hb + im.nb) * pl.ax.len;
    for (int64_t ph = 0; ph < phases; ++ph) {
      const int64_t b = pl.begin[ph], nt = pl.begin[ph + 1] - b;
      flat_accumulate<T>(tmp + ph * pl.comp_stride, buf, pl.taps.data() + b, nt, n);
    }
    flat_store_phases(pl, im, tmp, y);
  }
}

template <typename T>
void flat_items_base(const FlatPlan<T>& pl, const T* x, T* y, int64_t i0, int64_t i1) {
  flat_items<T>(pl, x, y, i0, i1);
}
#if HPCGAN_HAVE_AVX2_CLONE
template <typename T>
__attribute__((target("avx2,fma"))) void flat_items_avx2(const FlatPlan<T>& pl, const T* x, T* y, int64_t i0,
                                                          int64_t i1) {
  flat_items<T>(pl, x, y, i0, i1);
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

template <typename T>
void run_flat(const FlatPlan<T>& pl, const T* x, T* y) {
  const int64_t items = pl.ngroups * pl.nbands;
  auto* fn = &flat_items_base<T>;
#if HPCGAN_HAVE_AVX2_CLONE
  if (cpu_has_avx2()) fn = &flat_items_avx2<T>;
#endif
  at::parallel_for(0, items, 1, [&](int64_t i0, int64_t i1) { fn(pl, x, y, i0, i1); });
}

at::Tensor upfirdn2d_cpu(const at::Tensor& x_in, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                         int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                         double gain) {
  HPCGAN_CHECK_CPU(x_in);
  HPCGAN_CHECK_CPU(f);
  if (is_half(x_in))  // computed in float32 (checks.h: widen)
    return narrow_to(upfirdn2d_cpu(widen(x_in), f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain),
                     x_in.scalar_type());
  at::Tensor x;
  const UpFirDnGeom g = upfirdn2d_prepare(x_in, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, x);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "upfirdn2d (CPU): x must be float16, bfloat16, float32 or float64, got ", x.scalar_type());
  at::Tensor y = upfirdn2d_empty_output(x, g);
  if (y.numel() == 0) return y;
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hpcgan::upfirdn2d_cpu", [&] {
    using T = scalar_t;
    const Plan<T> pl = make_plan<T>(g, f, flip, gain);
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    // the flat path multiplies padding (zeros) by the weights: they must be finite
    for (T v : pl.w) TORCH_CHECK(std::isfinite(v), "upfirdn2d: the filter times gain must be finite, got ", v);
    if (g.channels_last) {
      run_nhwc<T>(pl, xp, yp);
    } else {
      run_flat<T>(make_flat_plan<T>(g, pl.w), xp, yp);
    }
  });
  return y;
}

}  // namespace
}  // namespace hpcgan

TORCH_LIBRARY_IMPL(hpcgan, CPU, m) { m.impl("upfirdn2d", &hpcgan::upfirdn2d_cpu); }
