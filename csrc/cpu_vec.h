// Runtime CPU dispatch for the innermost CPU loops.
//
// The extension is built for the baseline x86-64 ISA (SSE2) so that one build
// runs on every node of a cluster. Hot loops marked HPCGAN_CPU_CLONES are
// compiled three times (AVX-512, AVX2, baseline) and the best version for the
// running CPU is picked when the library loads (GCC/Clang target_clones, an
// ifunc), the way PyTorch dispatches its own kernels by CPU capability.
#pragma once

#include <cstddef>
#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__) && \
    !defined(HPCGAN_NO_CPU_CLONES)
#define HPCGAN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define HPCGAN_CPU_CLONES
#endif

namespace hpcgan {

// A fresh multi-megabyte output is first touched by a kernel, and on Linux its page
// faults (one per 4 KiB page, each zeroing the page) can cost more than the
// filtering itself. Asking for transparent huge pages on the 2 MiB-aligned part
// of the buffer cuts them 512-fold where THP is in "madvise" mode (in "always"
// mode it changes nothing; in "never" mode, or on failure, it is a no-op).
inline void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (e > b) (void)madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace hpcgan
