// Tests of the scale sweep: its objective never increases, every chosen scale is a candidate of the format's
// own scale rule (so it is storable), and it helps on real-looking data.
#include <doctest/doctest.h>

#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/scale_sweep.hpp>

#include "synthetic.hpp"

using pq::index_t;

namespace {
constexpr index_t sweep_rows = 24, sweep_cols = 256;

std::vector<double> column_weights() {  // E[x_j²] spanning four decades
  std::vector<double> d(sweep_cols);
  for (index_t j = 0; j < sweep_cols; ++j) d[j] = std::pow(10.0, 4.0 * static_cast<double>((j * 53) % sweep_cols) / sweep_cols - 2.0);
  return d;
}

template <class F>
double group_error(const std::vector<float>& w, const std::vector<double>& d, const pq::quantized_matrix<F>& q,
                   index_t r, index_t g) {
  const index_t gw = pq::group_width<F>(sweep_cols), gpr = pq::groups_per_row<F>(sweep_cols);
  return pq::weighted_group_error<F>(w.data() + r * sweep_cols + g * gw, d.data() + g * gw, q.codes.data() + r * sweep_cols + g * gw,
                                     q.params[r * gpr + g], gw);
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("scale sweep", F, sweep_suite) {
  const auto w = pq::test::weights(sweep_rows, sweep_cols, 31);
  const auto d = column_weights();
  const float g = F::tensor_scale(pq::weight_amax(w));
  const auto rtn = pq::quantize_rtn<F>(w, sweep_rows, sweep_cols, g);
  auto q = rtn;
  const index_t replaced = pq::scale_sweep<F>(w, d, q, {}, 2);
  const index_t gw = pq::group_width<F>(sweep_cols), gpr = pq::groups_per_row<F>(sweep_cols);

  double before = 0.0, after = 0.0;
  index_t changed = 0;
  for (index_t r = 0; r < sweep_rows; ++r)
    for (index_t grp = 0; grp < gpr; ++grp) {
      const double e0 = group_error<F>(w, d, rtn, r, grp), e1 = group_error<F>(w, d, q, r, grp);
      CHECK(e1 <= e0);
      before += e0;
      after += e1;
      const pq::qparams p = q.params[r * gpr + grp];
      if (p == rtn.params[r * gpr + grp]) continue;
      ++changed;
      // The scale shipped is one of the candidates F::group_params(α·lo, α·hi, g), and the codes are RTN at it.
      const float* x = w.data() + r * sweep_cols + grp * gw;
      const float lo = *std::min_element(x, x + gw), hi = *std::max_element(x, x + gw);
      bool is_candidate = false;
      for (int k = 0; k < 32; ++k) {
        const float a = 0.5f + static_cast<float>(k) / 31.0f;
        is_candidate = is_candidate || F::group_params(a * lo, a * hi, g) == p;
      }
      CHECK(is_candidate);
      for (index_t j = 0; j < gw; ++j) CHECK(q.codes[r * sweep_cols + grp * gw + j] == F::quantize(x[j], p));
    }
  CHECK(changed == replaced);
  CHECK(after <= before);
  if constexpr (requires { typename F::scale_codec; }) {
    if constexpr (F::group_size > 0 && F::group_size < 32) CHECK(after < before);  // E4M3 scales: many choices
  } else {
    CHECK(replaced == 0);
  }

  SUBCASE("a second sweep of the swept rounding changes nothing (it keeps what is already best)") {
    auto again = q;
    CHECK(pq::scale_sweep<F>(w, d, again, {}, 1) == 0);
    CHECK(again.codes == q.codes);
  }
}
TEST_CASE_TEMPLATE_APPLY(sweep_suite, pq::test::as_tuple<pq::roundable_formats>::type);

TEST_CASE("mismatched column weights are an error") {
  const auto w = pq::test::weights(2, 32, 1);
  auto q = pq::quantize_rtn<pq::MXFP4>(w, 2, 32);
  const std::vector<double> d(31, 1.0);
  CHECK_THROWS_AS(pq::scale_sweep<pq::MXFP4>(w, d, q), pq::quant_error);
}
