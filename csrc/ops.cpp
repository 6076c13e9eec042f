// Operator schemas of hpcgan._C and the Python module with build information.
//
// Every op is a torch operator in the `hpcgan` namespace. Device kernels are
// registered next to their implementations (<op>_cpu.cpp with
// TORCH_LIBRARY_IMPL(hpcgan, CPU, m), <op>_cuda.cu with ... CUDA ...);
// autograd formulas and fake (meta) kernels are registered from Python in
// hpcgan/ops/<op>.py.
#include <torch/extension.h>

#include "activations.h"

TORCH_LIBRARY(hpcgan, m) {
  // y = clamp(act(x + b) * gain, -clamp, clamp); b broadcast along `dim`.
  // act is a code from activations.h; clamp < 0 disables clamping.
  m.def("bias_act(Tensor x, Tensor? b, int dim, int act, float alpha, float gain, float clamp) -> Tensor");
  // order 1: dy * d/dx[clamp(act(x + b) * gain)];  order 2: dy * d2/dx2[...]
  m.def(
      "bias_act_grad(Tensor dy, Tensor x, Tensor? b, int dim, int act, float alpha, float gain, float clamp, "
      "int order) -> Tensor");
  // Upsample by zero insertion, pad (negative crops), correlate with the 2-D
  // filter f (flipped first unless flip), keep every down-th pixel; times gain.
  m.def(
      "upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, "
      "int pady0, int pady1, bool flip, float gain) -> Tensor");
  // Modulated convolution pieces (see hpcgan/ops/modulated_conv2d.py):
  // xs[n, c] = x[n, c] * s[n, c], written channels_last (or NCHW-contiguous) for
  // the convolution that follows.
  m.def("modulate(Tensor x, Tensor s, bool channels_last) -> Tensor");
  // Given gxs = dL/dxs: returns (gx = gxs * s, gs[n, c] = sum_hw gxs * x).
  m.def("modulate_backward(Tensor gxs, Tensor x, Tensor s) -> (Tensor, Tensor)");
  // y = clamp(act(z * d[n, c] + noise[n, 0, h, w] + b[c]) * gain); d, noise, b optional.
  m.def(
      "modconv_epilogue(Tensor z, Tensor? d, Tensor? noise, Tensor? b, int act, float alpha, float gain, "
      "float clamp) -> Tensor");
  // Returns (gz, gd, gnoise, gb) of the epilogue in one pass over dy and z.
  m.def(
      "modconv_epilogue_backward(Tensor dy, Tensor z, Tensor? d, Tensor? noise, Tensor? b, int act, "
      "float alpha, float gain, float clamp) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace {

bool cuda_built() {
#ifdef HPCGAN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_archs() {
#ifdef HPCGAN_CUDA_ARCHS
  return HPCGAN_CUDA_ARCHS;
#else
  return "";
#endif
}

// The torch this module was compiled against (setup.py passes torch.__version__
// and torch.version.cuda); hpcgan.build_info compares them with the running torch.
std::string built_torch() {
#ifdef HPCGAN_BUILT_TORCH
  return HPCGAN_BUILT_TORCH;
#else
  return "";
#endif
}

std::string built_torch_cuda() {
#ifdef HPCGAN_BUILT_TORCH_CUDA
  return HPCGAN_BUILT_TORCH_CUDA;
#else
  return "";
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hpcgan native kernels (the ops are under torch.ops.hpcgan)";
  m.def("cuda_built", &cuda_built, "True when the CUDA kernels were compiled in");
  m.def("cuda_archs", &cuda_archs, "TORCH_CUDA_ARCH_LIST the CUDA kernels were compiled for");
  m.def("built_torch", &built_torch, "torch.__version__ this module was compiled against");
  m.def("built_torch_cuda", &built_torch_cuda, "torch.version.cuda this module was compiled against (\"\" for CPU torch)");
  m.def("num_activations", []() { return static_cast<int>(hpcgan::kNumActs); });
}
