// pq/quant/cost.hpp: what a rounding costs: the Linear's mean output error tr(ΔW H ΔWᵀ)/n and the predicted
// loss increase (sensitivity × output error) the allocator prices.
#pragma once
#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <pq/quant/error.hpp>
#include <pq/quant/hessian.hpp>
#include <pq/core/parallel.hpp>

namespace pq {

// The Hessian in the precision the cost GEMM runs in, with its token count; build once per Linear.
struct cost_hessian {
  Eigen::MatrixXf H;  // full symmetric Σ x xᵀ
  index_t count = 0;
  explicit cost_hessian(const linear_stats& s) : H(s.hessian().cast<float>()), count(s.count) {}
};

// tr(ΔW H ΔWᵀ)/n with ΔW = w_hat − w (row-major [rows, cols]): the mean over calibration tokens of
// ‖ΔW x‖². The GEMM runs in fp32 over slices of rows, the sums in fp64.
inline double output_error(std::span<const float> w, std::span<const float> w_hat, index_t rows, index_t cols,
                           const cost_hessian& h, int threads = 0) {
  if (static_cast<index_t>(w.size()) != rows * cols || w_hat.size() != w.size() || h.H.cols() != cols)
    throw quant_error("output_error: weights, rounded weights and Hessian do not match " + std::to_string(rows) + "x" +
                      std::to_string(cols));
  if (h.count <= 0) throw quant_error("output_error: the statistics hold no tokens");
  const int t = resolve_threads(threads, rows);
  std::vector<double> part(static_cast<std::size_t>(t), 0.0);
  parallel_slices(rows, t, [&](int slice, index_t r0, index_t r1) {
    constexpr index_t step = 256;
    using rows_t = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    double sum = 0.0;
    for (index_t a = r0; a < r1; a += step) {
      const index_t m = std::min(step, r1 - a);
      const rows_t d = Eigen::Map<const rows_t>(w_hat.data() + a * cols, m, cols) -
                       Eigen::Map<const rows_t>(w.data() + a * cols, m, cols);
      const rows_t dh = d * h.H;
      sum += dh.cwiseProduct(d).cast<double>().sum();
    }
    part[static_cast<std::size_t>(slice)] = sum;
  });
  double total = 0.0;
  for (double p : part) total += p;
  return total / static_cast<double>(h.count);
}

// Predicted loss increase of a Linear: its sensitivity (from the runtime's calibration; 1 until it exists)
// times its output error.
constexpr double predicted_loss(double output_error, double sensitivity) { return sensitivity * output_error; }

}  // namespace pq
