// Argument checks and geometry shared by the CPU and CUDA upfirdn2d.
//
// upfirdn2d: upsample x by inserting up-1 zeros after every pixel, pad (negative
// values crop), correlate with the filter (flipped first unless `flip`), keep
// every down-th pixel, multiply by gain. Along one axis the output pixel o reads
// the padded, upsampled input at positions o*down + t for the taps t of the
// (flipped) filter; position q holds input pixel q/up when q % up == 0 and
// 0 <= q/up < in, and is zero otherwise.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace hpcgan {

// Floor division and the matching non-negative remainder (b > 0).
inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0)) ? q - 1 : q;
}
inline int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

struct UpFirDnGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t outH = 0, outW = 0;          // output
  int64_t fh = 0, fw = 0;              // filter
  int64_t upx = 1, upy = 1, downx = 1, downy = 1;
  int64_t padx0 = 0, padx1 = 0, pady0 = 0, pady1 = 0;
  bool channels_last = false;  // x (and the output) laid out as NHWC
};

// Checks the arguments, makes x dense in its suggested memory format (NCHW or
// NHWC) and returns the geometry. Device checks are left to the caller.
inline UpFirDnGeom upfirdn2d_prepare(const at::Tensor& x_in, const at::Tensor& f, int64_t upx, int64_t upy,
                                     int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                                     int64_t pady1, at::Tensor& x) {
  HPCGAN_CHECK_DIM(x_in, 4);
  HPCGAN_CHECK_DIM(f, 2);
  HPCGAN_CHECK_FLOAT(x_in);
  HPCGAN_CHECK_FLOAT(f);
  HPCGAN_CHECK_SAME_DEVICE(x_in, f);
  TORCH_CHECK(upx >= 1 && upy >= 1, "upfirdn2d: up factors must be >= 1, got ", upx, ", ", upy);
  TORCH_CHECK(downx >= 1 && downy >= 1, "upfirdn2d: down factors must be >= 1, got ", downx, ", ", downy);
  TORCH_CHECK(f.size(0) >= 1 && f.size(1) >= 1, "upfirdn2d: f must not be empty, got shape ", f.sizes());
  UpFirDnGeom g;
  g.N = x_in.size(0);
  g.C = x_in.size(1);
  g.H = x_in.size(2);
  g.W = x_in.size(3);
  g.fh = f.size(0);
  g.fw = f.size(1);
  g.upx = upx;
  g.upy = upy;
  g.downx = downx;
  g.downy = downy;
  g.padx0 = padx0;
  g.padx1 = padx1;
  g.pady0 = pady0;
  g.pady1 = pady1;
  const int64_t pw = g.W * upx + padx0 + padx1, ph = g.H * upy + pady0 + pady1;
  TORCH_CHECK(pw >= g.fw && ph >= g.fh, "upfirdn2d: the filter (", g.fh, "x", g.fw,
              ") is larger than the upsampled and padded input (", ph, "x", pw, ")");
  g.outW = (pw - g.fw) / downx + 1;
  g.outH = (ph - g.fh) / downy + 1;
  g.channels_last = x_in.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  x = x_in.contiguous(g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  return g;
}

inline at::Tensor upfirdn2d_empty_output(const at::Tensor& x, const UpFirDnGeom& g) {
  return at::empty({g.N, g.C, g.outH, g.outW},
                   x.options().memory_format(g.channels_last ? at::MemoryFormat::ChannelsLast
                                                             : at::MemoryFormat::Contiguous));
}

}  // namespace hpcgan
