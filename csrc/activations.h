// Activation functions of bias_act and the modulated-convolution epilogue,
// with their first and second derivatives. Shared by the CPU and CUDA kernels.
//
// Codes (kept in sync with hpcgan/ops/bias_act.py ACTIVATIONS):
//   0 linear, 1 relu, 2 lrelu, 3 tanh, 4 sigmoid, 5 elu, 6 selu, 7 softplus, 8 swish
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define HPCGAN_HD __host__ __device__ __forceinline__
#else
#define HPCGAN_HD inline
#endif

namespace hpcgan {

enum Act : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish, kNumActs };

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

template <typename T>
HPCGAN_HD T sigmoid_of(T x) {
  using std::exp;
  return T(1) / (T(1) + exp(-x));
}

// order 0: f(x); order 1: f'(x); order 2: f''(x).
template <int ACT, int ORDER, typename T>
HPCGAN_HD T act_eval(T x, T alpha) {
  using std::exp;
  using std::log1p;
  using std::tanh;
  if (ACT == kLinear) {
    return ORDER == 0 ? x : (ORDER == 1 ? T(1) : T(0));
  } else if (ACT == kRelu) {
    if (ORDER == 0) return x > T(0) ? x : T(0);
    return ORDER == 1 ? (x > T(0) ? T(1) : T(0)) : T(0);
  } else if (ACT == kLrelu) {
    if (ORDER == 0) return x > T(0) ? x : x * alpha;
    return ORDER == 1 ? (x > T(0) ? T(1) : alpha) : T(0);
  } else if (ACT == kTanh) {
    T t = tanh(x);
    if (ORDER == 0) return t;
    if (ORDER == 1) return T(1) - t * t;
    return T(-2) * t * (T(1) - t * t);
  } else if (ACT == kSigmoid) {
    T s = sigmoid_of(x);
    if (ORDER == 0) return s;
    if (ORDER == 1) return s * (T(1) - s);
    return s * (T(1) - s) * (T(1) - T(2) * s);
  } else if (ACT == kElu) {
    if (x > T(0)) return ORDER == 0 ? x : (ORDER == 1 ? T(1) : T(0));
    T e = exp(x);
    return ORDER == 0 ? alpha * (e - T(1)) : alpha * e;
  } else if (ACT == kSelu) {
    const T sc = T(kSeluScale), al = T(kSeluAlpha);
    if (x > T(0)) return ORDER == 0 ? sc * x : (ORDER == 1 ? sc : T(0));
    T e = exp(x);
    return ORDER == 0 ? sc * al * (e - T(1)) : sc * al * e;
  } else if (ACT == kSoftplus) {
    if (ORDER == 0) return x > T(20) ? x : log1p(exp(x));
    T s = sigmoid_of(x);
    return ORDER == 1 ? s : s * (T(1) - s);
  } else {  // kSwish
    T s = sigmoid_of(x);
    if (ORDER == 0) return x * s;
    if (ORDER == 1) return s + x * s * (T(1) - s);
    return s * (T(1) - s) * (T(2) + x * (T(1) - T(2) * s));
  }
}

// The clamp mask: gradients flow where the clamped value equals the unclamped
// one (torch.clamp's convention: the bounds themselves pass the gradient).
template <typename T>
HPCGAN_HD bool within_clamp(T v, T clamp) {
  return clamp < T(0) || (v >= -clamp && v <= clamp);
}

template <typename T>
HPCGAN_HD T apply_clamp(T v, T clamp) {
  if (clamp < T(0)) return v;
  return v < -clamp ? -clamp : (v > clamp ? clamp : v);
}

}  // namespace hpcgan

// Expands BODY once per activation with the compile-time constant ACT_ set.
#define HPCGAN_DISPATCH_ACT(act, ...)                                   \
  switch (act) {                                                        \
    case hpcgan::kLinear: { constexpr int ACT_ = hpcgan::kLinear; __VA_ARGS__(); break; } \
    case hpcgan::kRelu: { constexpr int ACT_ = hpcgan::kRelu; __VA_ARGS__(); break; }     \
    case hpcgan::kLrelu: { constexpr int ACT_ = hpcgan::kLrelu; __VA_ARGS__(); break; }   \
    case hpcgan::kTanh: { constexpr int ACT_ = hpcgan::kTanh; __VA_ARGS__(); break; }     \
    case hpcgan::kSigmoid: { constexpr int ACT_ = hpcgan::kSigmoid; __VA_ARGS__(); break; } \
    case hpcgan::kElu: { constexpr int ACT_ = hpcgan::kElu; __VA_ARGS__(); break; }       \
    case hpcgan::kSelu: { constexpr int ACT_ = hpcgan::kSelu; __VA_ARGS__(); break; }     \
    case hpcgan::kSoftplus: { constexpr int ACT_ = hpcgan::kSoftplus; __VA_ARGS__(); break; } \
    case hpcgan::kSwish: { constexpr int ACT_ = hpcgan::kSwish; __VA_ARGS__(); break; }   \
    default: TORCH_CHECK(false, "unknown activation code ", act);       \
  }
