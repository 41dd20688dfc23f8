// pq/quant/rtn.hpp: round-to-nearest of a whole Linear with format F: the format's scale rule per group,
// the decision unit's tensor scale, then every element rounded to its nearest code.
#pragma once
#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>

#include <pq/core/bits.hpp>
#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>

namespace pq {

// Largest |w| of a matrix; throws on a non-finite weight, naming `what`.
inline float weight_amax(std::span<const float> w, std::string_view what = "matrix") {
  float amax = 0.0f;
  for (float x : w) {
    if (!is_finite(x)) throw quant_error("non-finite weight in " + std::string(what));
    amax = std::max(amax, abs_f(x));
  }
  return amax;
}

// Group parameters of row r, group g of a row-major [rows, cols] matrix, from the group's range.
template <Format F>
qparams group_params_of(std::span<const float> w, index_t cols, index_t r, index_t g, float tensor_scale) {
  const index_t gw = group_width<F>(cols);
  const value_range vr = range_of(w.data() + r * cols + g * gw, gw);  // branch-free std::minmax_element
  return F::group_params(vr.lo, vr.hi, tensor_scale);
}

// RTN of a row-major [rows, cols] matrix. `tensor_scale` is F::tensor_scale of the decision unit's amax
// (fused siblings share it); it is ignored by formats without one.
template <Format F>
quantized_matrix<F> quantize_rtn(std::span<const float> w, index_t rows, index_t cols, float tensor_scale) {
  require_accepts<F>(rows, cols);
  if (static_cast<index_t>(w.size()) != rows * cols) throw quant_error("quantize_rtn: size mismatch");
  quantized_matrix<F> q{rows, cols, {}, {}, F::has_tensor_scale ? tensor_scale : 1.0f};
  const index_t gw = group_width<F>(cols), gpr = groups_per_row<F>(cols);
  q.codes.resize(w.size());
  q.params.resize(static_cast<std::size_t>(rows * gpr));
  for (index_t r = 0; r < rows; ++r)
    for (index_t g = 0; g < gpr; ++g) {
      const qparams p = group_params_of<F>(w, cols, r, g, q.tensor_scale);
      q.params[r * gpr + g] = p;
      for (index_t c = g * gw; c < (g + 1) * gw; ++c)
        q.codes[r * cols + c] = static_cast<typename F::code_type>(F::quantize(w[r * cols + c], p));
    }
  return q;
}

// RTN of a matrix that is its own decision unit.
template <Format F>
quantized_matrix<F> quantize_rtn(std::span<const float> w, index_t rows, index_t cols) {
  return quantize_rtn<F>(w, rows, cols, F::tensor_scale(weight_amax(w)));
}

}  // namespace pq
