// Runtime CPU dispatch for the innermost CPU loops.
//
// The extension is built for the baseline x86-64 ISA (SSE2) so that one build
// runs on every node of a cluster. Hot loops marked HPCGAN_CPU_CLONES are
// compiled three times (AVX-512, AVX2, baseline) and the best version for the
// running CPU is picked when the library loads (GCC/Clang target_clones, an
// ifunc), the way PyTorch dispatches its own kernels by CPU capability.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__) && \
    !defined(HPCGAN_NO_CPU_CLONES)
#define HPCGAN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define HPCGAN_CPU_CLONES
#endif
