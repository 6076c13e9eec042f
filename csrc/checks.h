// Shared argument checks for the native kernels.
//
// The Python layer (hpcgan/ops/*.py) validates user input and raises ValueError
// with the argument's name; these checks are the last line of defence for
// direct calls to torch.ops.hpcgan.* and raise c10::Error (RuntimeError).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>

#define HPCGAN_CHECK_FLOAT(t) \
  TORCH_CHECK(at::isFloatingType((t).scalar_type()), #t " must be a floating-point tensor, got ", (t).scalar_type())

#define HPCGAN_CHECK_SAME_DEVICE(a, b) \
  TORCH_CHECK((a).device() == (b).device(), #a " and " #b " must be on the same device, got ", (a).device(), " and ", (b).device())

#define HPCGAN_CHECK_SAME_DTYPE(a, b) \
  TORCH_CHECK((a).scalar_type() == (b).scalar_type(), #a " and " #b " must have the same dtype, got ", (a).scalar_type(), " and ", (b).scalar_type())

#define HPCGAN_CHECK_DIM(t, n) \
  TORCH_CHECK((t).dim() == (n), #t " must have ", (n), " dimensions, got shape ", (t).sizes())

#define HPCGAN_CHECK_CPU(t) TORCH_CHECK((t).device().is_cpu(), #t " must be a CPU tensor")
#define HPCGAN_CHECK_CUDA(t) TORCH_CHECK((t).device().is_cuda(), #t " must be a CUDA tensor")

namespace hpcgan {

// A tensor is "dense" when its elements fill a contiguous block of memory in
// some order of the dimensions (contiguous or channels_last, for example).
inline bool is_dense(const at::Tensor& t) { return t.is_non_overlapping_and_dense(); }

// Dense version of t, keeping channels_last when the input uses it.
inline at::Tensor dense(const at::Tensor& t) {
  if (is_dense(t)) return t;
  return t.contiguous(t.suggest_memory_format());
}

}  // namespace hpcgan

namespace hpcgan {

// float16 and bfloat16: stored in half precision, computed in float32.
inline bool is_half(const at::Tensor& t) {
  return t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16);
}

// The CPU kernels compute in float32 or float64. A half-precision call widens
// its tensors to float32 on entry (keeping their memory layout), runs the
// float32 kernel (so every sum accumulates in float32) and rounds each result
// back to the input dtype once.
inline at::Tensor widen(const at::Tensor& t) { return is_half(t) ? t.to(at::kFloat) : t; }

inline std::optional<at::Tensor> widen(const std::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return t;
  return widen(*t);
}

inline at::Tensor narrow_to(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

}  // namespace hpcgan
