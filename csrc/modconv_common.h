// Geometry and checks shared by the CPU and CUDA kernels of the modulated
// convolution's fused pieces (modulate, epilogue and their backward passes).
#pragma once

#include <ATen/ATen.h>

#include "activations.h"
#include "checks.h"

namespace hpcgan {

// A 4-D activation [N, C, H, W] stored either NCHW-contiguous or channels_last.
struct Act4 {
  int64_t N = 0, C = 0, HW = 0;
  bool cl = false;  // channels_last: offset = (n * HW + hw) * C + c
  inline int64_t off(int64_t n, int64_t c, int64_t hw) const {
    return cl ? (n * HW + hw) * C + c : (n * C + c) * HW + hw;
  }
};

// t as NCHW-contiguous or channels_last (channels_last when `prefer_cl` and t is
// neither already).
inline at::Tensor as_act4(const at::Tensor& t, bool prefer_cl, Act4& g, const char* name) {
  TORCH_CHECK(t.dim() == 4, name, " must be 4-D [N, C, H, W], got shape ", t.sizes());
  HPCGAN_CHECK_FLOAT(t);
  at::Tensor r;
  if (t.is_contiguous())
    r = t;
  else if (t.is_contiguous(at::MemoryFormat::ChannelsLast))
    r = t;
  else
    r = t.contiguous(prefer_cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  g.N = r.size(0);
  g.C = r.size(1);
  g.HW = r.size(2) * r.size(3);
  g.cl = !r.is_contiguous();
  return r;
}

// Per-sample, per-channel coefficients [N, C] (contiguous), or undefined.
inline at::Tensor coef_nc(const std::optional<at::Tensor>& t, const at::Tensor& like, const Act4& g,
                          const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK(t->dim() == 2 && t->size(0) == g.N && t->size(1) == g.C, name, " must have shape [", g.N, ", ",
              g.C, "], got ", t->sizes());
  HPCGAN_CHECK_SAME_DEVICE((*t), like);
  HPCGAN_CHECK_SAME_DTYPE((*t), like);
  return t->contiguous();
}

// Noise [N or 1, 1, H, W] (contiguous), or undefined. Sets *batch_stride to HW or 0.
inline at::Tensor noise_nhw(const std::optional<at::Tensor>& t, const at::Tensor& like, int64_t* batch_stride) {
  *batch_stride = 0;
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK(t->dim() == 4 && t->size(1) == 1 && t->size(2) == like.size(2) && t->size(3) == like.size(3) &&
                  (t->size(0) == like.size(0) || t->size(0) == 1),
              "noise must have shape [", like.size(0), " or 1, 1, ", like.size(2), ", ", like.size(3), "], got ",
              t->sizes());
  HPCGAN_CHECK_SAME_DEVICE((*t), like);
  HPCGAN_CHECK_SAME_DTYPE((*t), like);
  *batch_stride = t->size(0) == 1 ? 0 : like.size(2) * like.size(3);
  return t->contiguous();
}

inline at::Tensor bias_c(const std::optional<at::Tensor>& t, const at::Tensor& like, int64_t C) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK(t->dim() == 1 && t->size(0) == C, "b must have shape [", C, "], got ", t->sizes());
  HPCGAN_CHECK_SAME_DEVICE((*t), like);
  HPCGAN_CHECK_SAME_DTYPE((*t), like);
  return t->contiguous();
}

// The epilogue's operands, checked: z laid out as Act4 and its optional
// per-(sample, channel) scale d, per-pixel noise and per-channel bias b.
struct Epi {
  Act4 g;
  at::Tensor z, d, noise, b;
  int64_t noise_bs = 0;  // batch stride of noise (0: shared by all samples)
};

inline Epi epi_prepare(const at::Tensor& z_in, const std::optional<at::Tensor>& d_in,
                       const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& b_in,
                       int64_t act) {
  TORCH_CHECK(act >= 0 && act < kNumActs, "modconv_epilogue: unknown activation code ", act);
  Epi e;
  e.z = as_act4(z_in, true, e.g, "z");
  e.d = coef_nc(d_in, e.z, e.g, "d");
  e.noise = noise_nhw(noise_in, e.z, &e.noise_bs);
  e.b = bias_c(b_in, e.z, e.g.C);
  return e;
}

// dy of the epilogue's backward, checked against z.
inline at::Tensor epi_grad_input(const at::Tensor& dy_in, const Epi& e, Act4& gdy) {
  at::Tensor dy = as_act4(dy_in, true, gdy, "dy");
  TORCH_CHECK(dy.sizes() == e.z.sizes(), "dy must have the shape of z ", e.z.sizes(), ", got ", dy.sizes());
  HPCGAN_CHECK_SAME_DTYPE(dy, e.z);
  return dy;
}

template <typename T>
inline const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace hpcgan
