// Argument checks and memory geometry shared by the CPU and CUDA bias_act.
#pragma once

#include <ATen/ATen.h>

#include "activations.h"
#include "checks.h"

namespace hpcgan {

// The tensor is viewed as `numel / inner` rows of `inner` elements; row r holds
// channel r % channels. This holds for every dense layout (contiguous,
// channels_last, ...), because the channel index of the element at memory
// offset i is (i / stride[dim]) % size[dim].
struct BiasActGeom {
  int64_t numel = 0;
  int64_t channels = 1;
  int64_t inner = 1;
};

inline BiasActGeom bias_act_prepare(const at::Tensor& x_in, const std::optional<at::Tensor>& b_in, int64_t dim,
                                    int64_t act, at::Tensor& x, at::Tensor& b) {
  HPCGAN_CHECK_FLOAT(x_in);
  TORCH_CHECK(act >= 0 && act < kNumActs, "bias_act: unknown activation code ", act);
  x = dense(x_in);
  BiasActGeom g;
  g.numel = x.numel();
  g.inner = g.numel;
  if (b_in.has_value() && b_in->defined()) {
    TORCH_CHECK(x.dim() > 0, "bias_act: x must have at least one dimension when b is given");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for x of shape ", x.sizes());
    b = b_in->contiguous();
    HPCGAN_CHECK_SAME_DEVICE(x, b);
    HPCGAN_CHECK_SAME_DTYPE(x, b);
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must have shape [", x.size(dim),
                "], got ", b.sizes());
    g.channels = x.size(dim);
    g.inner = x.stride(dim);
    if (g.channels == 1) g.inner = g.numel;  // one channel: all elements share b[0]
  }
  if (g.inner == 0) g.inner = 1;
  return g;
}

// dy laid out exactly like x (same sizes and strides).
inline at::Tensor match_layout(const at::Tensor& dy, const at::Tensor& x) {
  TORCH_CHECK(dy.sizes() == x.sizes(), "bias_act_grad: dy of shape ", dy.sizes(), " does not match x of shape ",
              x.sizes());
  HPCGAN_CHECK_SAME_DEVICE(dy, x);
  HPCGAN_CHECK_SAME_DTYPE(dy, x);
  if (dy.strides() == x.strides()) return dy;
  return at::empty_like(x).copy_(dy);
}

}  // namespace hpcgan
