// pq/quant/gptq.hpp: GPTQ (one-shot optimal brain surgeon rounding) of a Linear with format F: columns are
// rounded one by one and each rounding error is spread over the not yet rounded columns through the upper
// Cholesky factor of the damped inverse Hessian; lazy blocks make the trailing update one GEMM per block.
#pragma once
#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>
#include <pq/quant/hessian.hpp>
#include <pq/core/parallel.hpp>
#include <pq/quant/scale_sweep.hpp>

namespace pq {

// What GPTQ needs from the Hessian, shared by every format rounded against it: the processing order of
// the columns (identity, or static act-order: decreasing H_jj, ties by index) and the upper-triangular U
// with UᵀU = (P (H + λI) Pᵀ)⁻¹ in that order, λ = damping · mean(diag H). Columns with H_jj = 0 (never
// active) get H_jj = 1 first: their error is then not spread, and they round to nearest.
struct gptq_factor {
  std::vector<index_t> order;  // order[k] = original column processed k-th
  Eigen::MatrixXf U;           // [cols, cols], upper triangle, in processing order
  float damping = 0.0f;
  bool act_order = false;
};

namespace detail {
// L⁻¹ of a lower-triangular L, by column blocks: each block solves only the trailing triangle (n³/3 flops in
// all), and blocks are independent, so they are dealt to the threads round-robin (their costs shrink with j).
inline Eigen::MatrixXd lower_inverse(const Eigen::MatrixXd& L, int threads) {
  const index_t n = L.rows(), b = 128, blocks = (n + b - 1) / b;
  Eigen::MatrixXd X = Eigen::MatrixXd::Zero(n, n);
  const int t = resolve_threads(threads, blocks);
  parallel_slices(t, t, [&](int slice, index_t, index_t) {
    for (index_t k = slice; k < blocks; k += t) {
      const index_t j0 = k * b, bw = std::min(b, n - j0), m = n - j0;
      auto blk = X.block(j0, j0, m, bw);
      blk.topRows(bw).setIdentity();
      L.bottomRightCorner(m, m).triangularView<Eigen::Lower>().solveInPlace(blk);
    }
  });
  return X;
}
}  // namespace detail

// Computes the factor. With J the reversal, J P J = L Lᵀ gives P⁻¹ = UᵀU for U = J L⁻¹ J (upper): one
// Cholesky and one triangular inverse. A Hessian that is not positive definite even after damping is an
// error naming the Linear.
inline gptq_factor make_gptq_factor(const linear_stats& s, float damping, bool act_order, int threads = 0) {
  const index_t n = s.cols;
  Eigen::MatrixXd H = s.hessian();
  for (index_t j = 0; j < n; ++j)
    if (H(j, j) <= 0.0) H(j, j) = 1.0;
  gptq_factor f;
  f.damping = damping;
  f.act_order = act_order;
  f.order.resize(static_cast<std::size_t>(n));
  std::iota(f.order.begin(), f.order.end(), index_t{0});
  if (act_order)
    std::stable_sort(f.order.begin(), f.order.end(), [&](index_t a, index_t b) { return H(a, a) > H(b, b); });
  const double lambda = static_cast<double>(damping) * H.diagonal().mean();
  Eigen::MatrixXd R(n, n);  // J P (H + λI) Pᵀ J
  for (index_t j = 0; j < n; ++j)
    for (index_t i = 0; i < n; ++i)
      R(n - 1 - i, n - 1 - j) = H(f.order[static_cast<std::size_t>(i)], f.order[static_cast<std::size_t>(j)]);
  R.diagonal().array() += lambda;
  const Eigen::LLT<Eigen::MatrixXd> llt(R);
  if (llt.info() != Eigen::Success || !R.allFinite())
    throw quant_error(s.name + ": the damped Hessian is not positive definite (damping " + std::to_string(damping) +
                      "); raise the damping");
  f.U = detail::lower_inverse(llt.matrixL(), threads).reverse().cast<float>();
  return f;
}

// Factors computed once per Linear and shared by every format and call that asks for the same damping and
// order (the cost table rounds one Linear in every format). Safe to share between threads.
class gptq_factor_cache {
 public:
  const gptq_factor& get(const linear_stats& s, float damping, bool act_order) {
    std::lock_guard lock(mutex_);
    if (stats_ != &s) {
      factors_.clear();
      stats_ = &s;
    }
    for (const auto& f : factors_)
      if (f->damping == damping && f->act_order == act_order) return *f;
    factors_.push_back(std::make_unique<gptq_factor>(make_gptq_factor(s, damping, act_order)));
    return *factors_.back();
  }

 private:
  std::mutex mutex_;
  const linear_stats* stats_ = nullptr;
  std::vector<std::unique_ptr<gptq_factor>> factors_;
};

namespace detail {
// The checked arguments of a GPTQ run and its output, sized (both drivers: this header's and gptq_blocks.hpp's).
template <Format F>
quantized_matrix<F> gptq_output(std::span<const float> w, index_t rows, index_t cols, float tensor_scale,
                                const gptq_factor& f) {
  require_accepts<F>(rows, cols);
  if (static_cast<index_t>(w.size()) != rows * cols || f.U.cols() != cols)
    throw quant_error(std::string(F::name) + " GPTQ: weights or Hessian factor do not match " + std::to_string(rows) +
                      "x" + std::to_string(cols));
  quantized_matrix<F> q{rows, cols, {}, {}, F::has_tensor_scale ? tensor_scale : 1.0f};
  q.codes.resize(static_cast<std::size_t>(rows * cols));
  q.params.resize(static_cast<std::size_t>(rows * groups_per_row<F>(cols)));
  return q;
}

// GPTQ of rows [r0, r1) of row-major w; writes their codes and parameters into q.
template <Format F>
void gptq_rows(std::span<const float> w, const gptq_factor& f, index_t block, const std::optional<sweep_options>& sweep,
               index_t r0, index_t r1, quantized_matrix<F>& q) {
  const index_t m = r1 - r0, n = q.cols, gw = group_width<F>(n), gpr = groups_per_row<F>(n);
  const auto& order = f.order;
  std::vector<index_t> position(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) position[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] = k;

  Eigen::MatrixXf W(m, n);  // the rows' current weights, columns in processing order
  for (index_t k = 0; k < n; ++k) {
    const index_t c = order[static_cast<std::size_t>(k)];
    for (index_t i = 0; i < m; ++i) W(i, k) = w[static_cast<std::size_t>((r0 + i) * n + c)];
  }
  Eigen::MatrixXf E(m, block);  // scaled errors of the current block
  std::vector<char> seen(static_cast<std::size_t>(gpr), 0);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> G(m, gw);  // a group's current weights
  std::vector<Eigen::Index> ahead;  // the group's columns beyond the block
  std::vector<double> saliency(static_cast<std::size_t>(gw));  // 1/U_pp²: OBS cost per unit² of error

  for (index_t i1 = 0; i1 < n; i1 += block) {
    const index_t i2 = std::min(i1 + block, n);
    for (index_t k = i1; k < i2; ++k) {
      const index_t c = order[static_cast<std::size_t>(k)], g = c / gw;
      if (!seen[static_cast<std::size_t>(g)]) {
        // First column of group g in processing order: its parameters come from the group's current weights
        // (groups are ranges of the ORIGINAL columns, so the export needs no g_idx). Columns beyond this
        // block have not yet received the block's pending errors E[:, :k-i1]; add them here.
        seen[static_cast<std::size_t>(g)] = 1;
        ahead.clear();
        for (index_t j = 0; j < gw; ++j) {
          const index_t p = position[static_cast<std::size_t>(g * gw + j)];
          G.col(j) = W.col(p);
          if (p >= i2) ahead.push_back(static_cast<Eigen::Index>(j));
        }
        if (!ahead.empty() && k > i1)
          for (Eigen::Index j : ahead)
            G.col(j).noalias() -= E.leftCols(k - i1) *
                                  f.U.col(position[static_cast<std::size_t>(g * gw + j)]).segment(i1, k - i1);
        if (sweep)
          for (index_t j = 0; j < gw; ++j) {
            const index_t p = position[static_cast<std::size_t>(g * gw + j)];
            saliency[static_cast<std::size_t>(j)] = 1.0 / (static_cast<double>(f.U(p, p)) * f.U(p, p));
          }
        for (index_t i = 0; i < m; ++i) {
          const float* x = G.row(i).data();
          qparams p = F::group_params(G.row(i).minCoeff(), G.row(i).maxCoeff(), q.tensor_scale);
          if (sweep) {
            const double e = group_error_below<F>(x, saliency.data(), p, gw, std::numeric_limits<double>::infinity());
            p = sweep_group<F>(x, saliency.data(), gw, q.tensor_scale, *sweep, p, e).first;
          }
          q.params[static_cast<std::size_t>((r0 + i) * gpr + g)] = p;
        }
      }
      const float d = f.U(k, k);
      auto* codes = q.codes.data() + r0 * n + c;
      const qparams* params = q.params.data() + r0 * gpr + g;
      for (index_t i = 0; i < m; ++i) {
        const float x = W(i, k);
        const std::uint32_t code = F::quantize(x, params[i * gpr]);
        codes[i * n] = static_cast<typename F::code_type>(code);
        E(i, k - i1) = (x - F::dequantize(code, params[i * gpr])) / d;
      }
      if (k + 1 < i2)
        W.middleCols(k + 1, i2 - k - 1).noalias() -= E.col(k - i1) * f.U.row(k).segment(k + 1, i2 - k - 1);
    }
    if (i2 < n) W.rightCols(n - i2).noalias() -= E.leftCols(i2 - i1) * f.U.block(i1, i2, i2 - i1, n - i2);
  }
}
}  // namespace detail

// GPTQ of row-major w [rows, cols] against a factor of the same Linear's Hessian. Rows are independent
// given the factor and are split over `threads` (0: all cores); a fixed thread count is deterministic.
// With `group_sweep`, each group's parameters are not the scale rule's alone but the best of the sweep's
// candidates for the group's current (error-updated) weights, each weighted by its OBS saliency 1/U_pp²
// (the rule's own parameters are the incumbent): the scale sweep on top of GPTQ, inside its loop, so
// that GPTQ's error feedback sees the scale that ships.
template <Format F>
quantized_matrix<F> quantize_gptq(std::span<const float> w, index_t rows, index_t cols, float tensor_scale,
                                  const gptq_factor& f, index_t block_size = 128, int threads = 0,
                                  const std::optional<sweep_options>& group_sweep = std::nullopt) {
  quantized_matrix<F> q = detail::gptq_output<F>(w, rows, cols, tensor_scale, f);
  const index_t block = std::clamp<index_t>(block_size, 1, cols);
  parallel_rows(rows, threads,
                [&](index_t r0, index_t r1) { detail::gptq_rows<F>(w, f, block, group_sweep, r0, r1, q); });
  return q;
}

}  // namespace pq
