// pq/quant/scale_sweep.hpp: the closed-form scale sweep: per group, try candidate ranges α·[lo, hi] through
// the format's own scale rule, round at each, keep the one with the least activation-weighted error, or
// keep the incoming rounding when it is at least as good.
#pragma once
#include <algorithm>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <pq/core/widen.hpp>
#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>
#include <pq/core/parallel.hpp>

namespace pq {

struct sweep_options {
  int candidates = 32;  // α evenly spaced over [lo, hi]; 1 tries α = 1 only
  float lo = 0.5f;
  float hi = 1.5f;
};

// α of candidate k.
PQ_HD constexpr float sweep_alpha(const sweep_options& o, int k) {
  return o.candidates <= 1 ? 1.0f : o.lo + (o.hi - o.lo) * static_cast<float>(k) / static_cast<float>(o.candidates - 1);
}

// Σ_j d_j (w_j − ŵ_j)² of n elements whose codes are given, at group parameters p.
template <Format F>
double weighted_group_error(const float* w, const double* d, const typename F::code_type* codes, qparams p, index_t n) {
  double e = 0.0;
  for (index_t j = 0; j < n; ++j) {
    const double r = static_cast<double>(w[j]) - static_cast<double>(F::dequantize(codes[j], p));
    e += d[j] * r * r;
  }
  return e;
}

// Rounds n elements at p into `codes` and returns their weighted error.
template <Format F>
double round_group(const float* w, const double* d, qparams p, index_t n, typename F::code_type* codes) {
  double e = 0.0;
  for (index_t j = 0; j < n; ++j) {
    const std::uint32_t c = F::quantize(w[j], p);
    codes[j] = static_cast<typename F::code_type>(c);
    const double r = static_cast<double>(w[j]) - static_cast<double>(F::dequantize(c, p));
    e += d[j] * r * r;
  }
  return e;
}

// Σ_j d_j (x_j − ŵ_j)² of n elements rounded at p, or some value >= bound as soon as the sum reaches it.
// X: float, or a stored weight type (widened exactly).
template <Format F, class X>
PQ_HD double group_error_below(const X* x, const double* d, qparams p, index_t n, double bound) {
  double e = 0.0;
  for (index_t j = 0; j < n && e < bound; ++j) {
    const float xj = to_float(x[j]);
    const double r = static_cast<double>(xj) - static_cast<double>(F::dequantize(F::quantize(xj, p), p));
    e += d[j] * r * r;
  }
  return e;
}

// The best of the candidates F::group_params(α·lo, α·hi, tensor_scale) for the n values x with weights d,
// [lo, hi] being their range, against an incumbent (params, error): a candidate wins only when its error
// Σ_j d_j (x_j − ŵ_j)² is strictly lower. Neighbouring α that encode to the same scale are evaluated once.
template <Format F, class X>
PQ_HD std::pair<qparams, double> sweep_group(const X* x, const double* d, index_t n, float tensor_scale,
                                             const sweep_options& opt, qparams incumbent, double incumbent_error) {
  value_range vr{to_float(x[0]), to_float(x[0])};
  for (index_t j = 1; j < n; ++j) vr = merge(vr, {to_float(x[j]), to_float(x[j])});
  qparams best = incumbent, last{};
  double best_err = incumbent_error;
  bool have_last = false;
  for (int k = 0; k < opt.candidates; ++k) {
    const float a = sweep_alpha(opt, k);
    const qparams c = F::group_params(a * vr.lo, a * vr.hi, tensor_scale);
    if (have_last && c == last) continue;
    last = c;
    have_last = true;
    const double e = group_error_below<F>(x, d, c, n, best_err);  // stops once it cannot win
    if (e < best_err) {
      best_err = e;
      best = c;
    }
  }
  return {best, best_err};
}

// RTN's parameters for the group, then the sweep against them: what scale_sweep does to an RTN rounding,
// for one group (the sweep kernel's unit of work). Returns the parameters the group is stored with.
template <Format F, class X>
PQ_HD qparams sweep_rtn_group(const X* x, const double* d, index_t n, float tensor_scale, const sweep_options& opt) {
  value_range vr{to_float(x[0]), to_float(x[0])};
  for (index_t j = 1; j < n; ++j) vr = merge(vr, {to_float(x[j]), to_float(x[j])});
  const qparams rtn = F::group_params(vr.lo, vr.hi, tensor_scale);
  const double incumbent = group_error_below<F>(x, d, rtn, n, std::numeric_limits<double>::infinity());
  const auto best = sweep_group<F>(x, d, n, tensor_scale, opt, rtn, incumbent);
  return best.second < incumbent ? best.first : rtn;
}

// Improves `q` (the rounding of row-major `w` [q.rows, q.cols], e.g. RTN's) group by group with
// sweep_group, the incumbent being q's own group (its codes and parameters), the weights
// d_j = col_weight[j] (E[x_j²]). Every candidate comes from the format's scale rule, so every result is
// storable. Formats without a scale (BF16) are left as they are. Returns the number of groups replaced.
template <Format F>
index_t scale_sweep(std::span<const float> w, std::span<const double> col_weight, quantized_matrix<F>& q,
                    const sweep_options& opt = {}, int threads = 0) {
  if constexpr (!requires { typename F::scale_codec; }) {
    return 0;
  } else {
    const index_t rows = q.rows, cols = q.cols, gw = group_width<F>(cols), gpr = groups_per_row<F>(cols);
    if (static_cast<index_t>(w.size()) != rows * cols || static_cast<index_t>(col_weight.size()) != cols)
      throw quant_error(std::string(F::name) + " scale sweep: weights or column weights do not match the matrix");
    std::vector<index_t> replaced_by_row(static_cast<std::size_t>(rows), 0);
    parallel_rows(rows, threads, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r)
        for (index_t g = 0; g < gpr; ++g) {
          const float* x = w.data() + r * cols + g * gw;
          const double* d = col_weight.data() + g * gw;
          auto* codes = q.codes.data() + r * cols + g * gw;
          qparams& p = q.params[static_cast<std::size_t>(r * gpr + g)];
          const double incumbent = weighted_group_error<F>(x, d, codes, p, gw);
          const auto [best, err] = sweep_group<F>(x, d, gw, q.tensor_scale, opt, p, incumbent);
          if (err < incumbent) {
            p = best;
            round_group<F>(x, d, best, gw, codes);
            ++replaced_by_row[static_cast<std::size_t>(r)];
          }
        }
    });
    index_t replaced = 0;
    for (index_t n : replaced_by_row) replaced += n;
    return replaced;
  }
}

}  // namespace pq
