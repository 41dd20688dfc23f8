// pq/quant/gptq_blocks.hpp: blocked GPTQ restated as the device runs it: one row's pass over one column block
// (quantize, scaled error, in-block update, group parameters at a group's first column, the in-loop sweep) as a
// PQ_HD function over plain pointers and strides, which the CUDA kernel (pq/cuda/gptq.cuh) calls once per
// thread and quantize_gptq_blocked below calls once per row; the trailing update between blocks is a GEMM
// (cuBLAS there, Eigen here). The host driver exists to test the device's blocking and indexing on every
// machine: its codes equal quantize_gptq's (tests/quant/test_gptq_blocks.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>
#include <pq/quant/gptq.hpp>
#include <pq/core/parallel.hpp>
#include <pq/quant/scale_sweep.hpp>

namespace pq {

// What every row of every Linear against one factor reads, as plain pointers (host or device memory).
struct gptq_operands {
  index_t n = 0;                        // columns
  const index_t* order = nullptr;       // [n] original column processed k-th
  const index_t* position = nullptr;    // [n] processing position of original column c
  const std::uint8_t* first = nullptr;  // [n] by position: 1 where the column is its group's first in processing order
  const float* U = nullptr;             // [n, n] row-major, upper triangle, processing order
  const double* saliency = nullptr;     // [n] by ORIGINAL column: 1/U_pp² (the in-loop sweep's weights)
};

// The per-format tables of a factor: where each group starts in processing order (groups are ranges of the
// original columns), and the saliencies. Built on the host (n values); the device uploads them.
struct gptq_tables {
  std::vector<index_t> position;
  std::vector<std::uint8_t> first;
  std::vector<double> saliency;
};
inline gptq_tables make_gptq_tables(std::span<const index_t> order, index_t group_width,
                                    std::span<const float> u_diag /* U_kk by position */) {
  const index_t n = static_cast<index_t>(order.size());
  gptq_tables t;
  t.position.assign(static_cast<std::size_t>(n), 0);
  t.first.assign(static_cast<std::size_t>(n), 0);
  t.saliency.assign(static_cast<std::size_t>(n), 0.0);
  for (index_t k = 0; k < n; ++k) t.position[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] = k;
  for (index_t g = 0; g < n / group_width; ++g) {
    index_t p = n;
    for (index_t j = 0; j < group_width; ++j) p = std::min(p, t.position[static_cast<std::size_t>(g * group_width + j)]);
    t.first[static_cast<std::size_t>(p)] = 1;
  }
  for (index_t c = 0; c < n; ++c) {
    const double d = u_diag[static_cast<std::size_t>(t.position[static_cast<std::size_t>(c)])];
    t.saliency[static_cast<std::size_t>(c)] = 1.0 / (d * d);  // as gptq_rows computes it, from the fp32 U_pp
  }
  return t;
}

// Column blocks of the blocked algorithm: [i1, i2) for i1 = 0, block, 2·block, ...
PQ_HD constexpr index_t gptq_block_count(index_t n, index_t block) { return (n + block - 1) / block; }

// One row's pass over the column block [i1, i2) of processing positions.
//   wb[(k-i1)*ws]   the row's current weight at position k of the block (updated in place);
//   eb[(k-i1)*es]   receives the scaled error (x - x̂)/U_kk of position k (the trailing GEMM's operand);
//   ub[(k-i1)*us + (j-i1)]  U[k, j] inside the block (a copy of the block, e.g. in shared memory);
//   w_ahead[p]      the row's working weight at position p >= i2 (not yet updated by this block's errors);
//   w_source[c]     the row's original weight at ORIGINAL column c (row formats take their range from it);
//   codes[c], params[g]  the row's outputs, original column order.
// Group parameters are taken when a group's first column is reached, from the group's current weights: in the
// block (up to date) or beyond it (plus the block's pending errors E[:, :k-i1]·U[i1:k, p], as gptq_rows adds).
template <Format F>
PQ_HD void gptq_row_block(const gptq_operands& op, index_t i1, index_t i2, float* wb, index_t ws, float* eb, index_t es,
                          const float* ub, index_t us, const float* w_ahead, const float* w_source,
                          typename F::code_type* codes, qparams* params, float tensor_scale,
                          const sweep_options* sweep) {
  const index_t n = op.n, gw = group_width<F>(n);
  for (index_t k = i1; k < i2; ++k) {
    const index_t c = op.order[k], g = c / gw;
    if (op.first[k]) {
      qparams p{};
      if constexpr (F::group_size == 0) {
        // The whole row is the group and its first column is the row's first: nothing is updated yet.
        const value_range vr = range_of(w_source, n);
        p = F::group_params(vr.lo, vr.hi, tensor_scale);
        if (sweep) {
          const double e = group_error_below<F>(w_source, op.saliency, p, n, std::numeric_limits<double>::infinity());
          p = sweep_group<F>(w_source, op.saliency, n, tensor_scale, *sweep, p, e).first;
        }
      } else {
        float x[F::group_size];
        for (index_t j = 0; j < gw; ++j) {
          const index_t q = op.position[g * gw + j];
          if (q < i2) {
            x[j] = wb[(q - i1) * ws];
          } else {
            float pending = 0.0f;
            for (index_t t = 0; t < k - i1; ++t) pending += eb[t * es] * op.U[(i1 + t) * n + q];
            x[j] = w_ahead[q] - pending;
          }
        }
        const value_range vr = range_of(x, gw);  // (only ±0 can differ from gptq_rows' min/max: same parameters)
        p = F::group_params(vr.lo, vr.hi, tensor_scale);
        if (sweep) {
          const double* d = op.saliency + g * gw;
          const double e = group_error_below<F>(x, d, p, gw, std::numeric_limits<double>::infinity());
          p = sweep_group<F>(x, d, gw, tensor_scale, *sweep, p, e).first;
        }
      }
      params[g] = p;
    }
    const qparams p = params[g];
    const float x = wb[(k - i1) * ws];
    const std::uint32_t code = F::quantize(x, p);
    codes[c] = static_cast<typename F::code_type>(code);
    const float e = (x - F::dequantize(code, p)) / ub[(k - i1) * us + (k - i1)];
    eb[(k - i1) * es] = e;
    const float* u = ub + (k - i1) * us;
    for (index_t j = k + 1; j < i2; ++j) wb[(j - i1) * ws] -= e * u[j - i1];
  }
}

// The host driver of the device's algorithm: per block, every row's gptq_row_block, then the trailing update
// W[:, i2:] -= E·U[i1:i2, i2:] (one GEMM). Same arguments and result as quantize_gptq.
template <Format F>
quantized_matrix<F> quantize_gptq_blocked(std::span<const float> w, index_t rows, index_t cols, float tensor_scale,
                                          const gptq_factor& f, index_t block_size = 128, int threads = 0,
                                          const std::optional<sweep_options>& group_sweep = std::nullopt) {
  quantized_matrix<F> q = detail::gptq_output<F>(w, rows, cols, tensor_scale, f);
  const index_t n = cols, gw = group_width<F>(n), gpr = groups_per_row<F>(n);
  const index_t block = std::clamp<index_t>(block_size, 1, n);
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const row_major U = f.U;
  std::vector<float> diag(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) diag[static_cast<std::size_t>(k)] = U(k, k);
  const gptq_tables t = make_gptq_tables(f.order, gw, diag);
  const gptq_operands op{n, f.order.data(), t.position.data(), t.first.data(), U.data(), t.saliency.data()};
  const sweep_options* sweep = group_sweep ? &*group_sweep : nullptr;

  row_major W(rows, n);  // working weights, processing order
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < n; ++k) W(r, k) = w[static_cast<std::size_t>(r * n + f.order[static_cast<std::size_t>(k)])];
  row_major E(rows, block);
  for (index_t i1 = 0; i1 < n; i1 += block) {
    const index_t i2 = std::min(i1 + block, n), bw = i2 - i1;
    const row_major ub = U.block(i1, i1, bw, bw);
    parallel_rows(rows, threads, [&](index_t r0, index_t r1) {
      std::vector<float> wb(static_cast<std::size_t>(bw));
      for (index_t r = r0; r < r1; ++r) {
        for (index_t j = 0; j < bw; ++j) wb[static_cast<std::size_t>(j)] = W(r, i1 + j);
        gptq_row_block<F>(op, i1, i2, wb.data(), 1, E.row(r).data(), 1, ub.data(), bw, W.row(r).data(),
                          w.data() + r * n, q.codes.data() + r * n, q.params.data() + r * gpr, q.tensor_scale, sweep);
      }
    });
    if (i2 < n) W.rightCols(n - i2).noalias() -= E.leftCols(bw) * U.block(i1, i2, bw, n - i2);
  }
  return q;
}

}  // namespace pq
