// pq/cuda/tuning.cuh: launch shapes of pq's kernels, per format, as CUB's policies are: plain constexpr
// structs the kernels take as template arguments, never literals inside a kernel.
#pragma once
#include <pq/formats/format.hpp>

namespace pq::cuda {

// Elements per thread (a segment: the host loops' unit too) and threads per block.
//
// First values, chosen for Hopper before any measurement (no GPU was lent to the session that wrote
// them; bench/README.md holds the predictions they are to be checked against):
// - 16 elements per thread: 32 bytes of bf16, two 16-byte loads, in flight together; a segment lies inside
//   one group for every group size (16, 32, 128), so NVFP4 reduces its range in-thread, MX formats over
//   2 lanes and INT4_G128 over 8, with shuffles;
// - 256 threads: 8 warps. ptxas (CUDA 13.0, sm_90a, bf16 in) gives the quantize kernels 72 (NVFP4), 58
//   (MXFP8_E4M3) and 56 (INT4_G128) registers and no spills: 3 blocks, 768 threads, 24 KiB of loads in
//   flight per multiprocessor, about what 4.3 TB/s at ~600 ns of latency needs (Little's law: ~20 KiB).
template <Format F>
struct quantize_policy {
  static constexpr int items = 16;
  static constexpr int threads = F::group_size == 0 ? 512 : 256;  // row formats: one block per row
};

template <Format F>
struct dequantize_policy {
  static constexpr int items = 16;
  static constexpr int threads = 256;
};

// The sweep evaluates every candidate of a group sequentially in one thread, in double, in the host's
// order, so that the chosen candidate is the host's bit for bit: one thread per group.
template <Format F>
struct sweep_policy {
  static constexpr int threads = 128;
};

struct amax_policy {
  static constexpr int items = 16;
  static constexpr int threads = 256;
};

}  // namespace pq::cuda
