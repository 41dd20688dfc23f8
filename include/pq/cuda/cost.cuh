// pq/cuda/cost.cuh: tr(ΔW H ΔWᵀ)/n on the device for many (Linear, format) pairs against one Hessian in one
// pass: the pairs' ΔW = ŵ − w are stacked by rows, one SGEMM multiplies the stack by H, one kernel sums each
// row's ΔW ⊙ (ΔW H) in fp64; per-pair totals are summed on the host in row order (deterministic). As
// quant/cost.hpp: fp32 products, fp64 sums. Part of pq::cuda_linalg.
#pragma once
#include <span>
#include <vector>

#include <pq/cuda/kernels.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/cuda/memory.cuh>
#include <pq/quant/error.hpp>

namespace pq::cuda {

// One pair: the original and the rounded (dequantized) weights, device fp32 row-major [rows, n].
struct cost_pair {
  const float* w = nullptr;
  const float* w_hat = nullptr;
  index_t rows = 0;
};

namespace detail {
__global__ void difference_kernel(const float* w, const float* w_hat, index_t count, float* d) {
  const index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (e < count) d[e] = w_hat[e] - w[e];
}
// sums[r] = Σ_j (double)(D[r, j]·DH[r, j]): a warp per row.
__global__ void row_dot_kernel(const float* D, const float* DH, index_t rows, index_t n, double* sums) {
  const index_t r = (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (r >= rows) return;
  double s = 0.0;
  for (index_t j = lane; j < n; j += 32) s += static_cast<double>(D[r * n + j] * DH[r * n + j]);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) sums[r] = s;
}
}  // namespace detail

// Mean output error tr(ΔW H ΔWᵀ)/count of every pair against H (device, full symmetric fp32 [n, n]). Rows are
// processed in chunks of at most `chunk_rows` (the stack and its product take 2·chunk_rows·n floats).
inline std::vector<double> output_errors(std::span<const cost_pair> pairs, const float* H, index_t n, index_t count,
                                         const blas& b, cudaStream_t s, index_t chunk_rows = 8192) {
  if (count <= 0) throw quant_error("output_errors: the statistics hold no tokens");
  index_t total = 0;
  for (const auto& p : pairs) total += p.rows;
  std::vector<double> out(pairs.size(), 0.0);
  if (total == 0) return out;
  const index_t chunk = std::min(total, std::max<index_t>(chunk_rows, 1));
  device_buffer<float> D(static_cast<std::size_t>(chunk * n), s), DH(static_cast<std::size_t>(chunk * n), s);
  device_buffer<double> sums(static_cast<std::size_t>(total), s);
  // Pieces (pair, first row, rows) filling chunks in order.
  index_t done = 0;  // stacked rows already summed
  index_t filled = 0;
  auto flush = [&] {
    if (filled == 0) return;
    gemm_row_major(b, filled, n, n, 1.0f, D.data(), n, false, H, n, false, 0.0f, DH.data(), n);
    detail::row_dot_kernel<<<detail::grid_of(detail::ceil_div(filled * 32, 256), "row_dot"), 256, 0, s>>>(
        D.data(), DH.data(), filled, n, sums.data() + done);
    detail::launch_check("row_dot_kernel launch");
    done += filled;
    filled = 0;
  };
  for (const auto& p : pairs)
    for (index_t r0 = 0; r0 < p.rows;) {
      const index_t m = std::min(p.rows - r0, chunk - filled);
      const index_t e = m * n;
      detail::difference_kernel<<<detail::grid_of(detail::ceil_div(e, 256), "difference"), 256, 0, s>>>(
          p.w + r0 * n, p.w_hat + r0 * n, e, D.data() + filled * n);
      detail::launch_check("difference_kernel launch");
      filled += m;
      r0 += m;
      if (filled == chunk) flush();
    }
  flush();
  const auto h = sums.download();
  index_t r = 0;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    double t = 0.0;
    for (index_t k = 0; k < pairs[i].rows; ++k) t += h[static_cast<std::size_t>(r++)];
    out[i] = t / static_cast<double>(count);
  }
  return out;
}

}  // namespace pq::cuda
