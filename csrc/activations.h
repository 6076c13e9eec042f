// Activation functions of bias_act and the modulated-convolution epilogue,
// with their first and second derivatives. Shared by the CPU and CUDA kernels.
//
// Codes (kept in sync with hpcgan/ops/bias_act.py ACTIVATIONS):
//   0 linear, 1 relu, 2 lrelu, 3 tanh, 4 sigmoid, 5 elu, 6 selu, 7 softplus, 8 swish
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__CUDACC__)
#define HPCGAN_HD __host__ __device__ __forceinline__
#else
#define HPCGAN_HD inline
#endif

namespace hpcgan {

enum Act : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish, kNumActs };

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// exp(x). On the CPU in float it is computed with plain arithmetic (range
// reduction to 2^n * e^r and a degree-6 polynomial, within 2 ulp of expf), so
// loops over it vectorise instead of calling libm once per element. CUDA and
// double use the library exp.
template <typename T>
HPCGAN_HD T exp_of(T x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  if constexpr (!std::is_same_v<T, float>) {
    return std::exp(x);
  } else {
    const float hi = 88.3762626647949f, lo = -87.3365447504019f;
    const float xc = x > hi ? hi : (x < lo ? lo : x);  // NaN stays NaN
    const float fn = std::floor(xc * 1.44269504088896341f + 0.5f);
    const int32_t n = static_cast<int32_t>(fn == fn ? fn : 0.0f);  // int conversion needs a number
    const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    float out = p * scale;  // NaN in, NaN out
    out = x > hi ? std::numeric_limits<float>::infinity() : out;
    return x < lo ? 0.0f : out;
  }
#endif
}

template <typename T>
HPCGAN_HD T sigmoid_of(T x) {
  return T(1) / (T(1) + exp_of(-x));
}

template <typename T>
HPCGAN_HD T tanh_of(T x) {
#if defined(__CUDA_ARCH__)
  return tanh(x);
#else
  if constexpr (!std::is_same_v<T, float>) {
    return std::tanh(x);
  } else {
    // 1 - 2 / (e^2x + 1): absolute error below 1e-7 (near 0 this is what
    // float resolution allows anyway); saturates to +-1 for large |x|.
    return 1.0f - 2.0f / (exp_of(2.0f * x) + 1.0f);
  }
#endif
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
    // x * (1 or alpha): a select between constants, which compilers vectorise.
    if (ORDER == 0) return x * (x > T(0) ? T(1) : alpha);
    return ORDER == 1 ? (x > T(0) ? T(1) : alpha) : T(0);
  } else if (ACT == kTanh) {
    T t = tanh_of(x);
    if (ORDER == 0) return t;
    if (ORDER == 1) return T(1) - t * t;
    return T(-2) * t * (T(1) - t * t);
  } else if (ACT == kSigmoid) {
    T s = sigmoid_of(x);
    if (ORDER == 0) return s;
    if (ORDER == 1) return s * (T(1) - s);
    return s * (T(1) - s) * (T(1) - T(2) * s);
  } else if (ACT == kElu) {
    const T e = exp_of(x < T(0) ? x : T(0));
    if (ORDER == 0) return x > T(0) ? x : alpha * (e - T(1));
    if (ORDER == 1) return x > T(0) ? T(1) : alpha * e;
    return x > T(0) ? T(0) : alpha * e;
  } else if (ACT == kSelu) {
    const T sc = T(kSeluScale), al = T(kSeluAlpha);
    const T e = exp_of(x < T(0) ? x : T(0));
    if (ORDER == 0) return x > T(0) ? sc * x : sc * al * (e - T(1));
    if (ORDER == 1) return x > T(0) ? sc : sc * al * e;
    return x > T(0) ? T(0) : sc * al * e;
  } else if (ACT == kSoftplus) {
    if (ORDER == 0) return x > T(20) ? x : log1p(exp_of(x < T(20) ? x : T(20)));
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
  const T lo = v < -clamp ? -clamp : v;
  return lo > clamp ? clamp : lo;
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
