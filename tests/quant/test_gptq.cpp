// Tests of GPTQ: identities with RTN, agreement with an unblocked textbook reference (act-order included),
// lower output error than RTN on correlated activations, and determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include <Eigen/Dense>

#include <pq/formats/bundle.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/gptq.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/scale_sweep.hpp>

#include "synthetic.hpp"

using pq::index_t;

namespace {
constexpr index_t rows = 48, cols = 256, tokens = 768;

pq::linear_stats diagonal_stats(std::vector<double> diag) {
  pq::linear_stats s("diag", static_cast<index_t>(diag.size()));
  for (index_t j = 0; j < s.cols; ++j) s.H(j, j) = s.x2_sum[j] = diag[j];
  s.count = 1;
  return s;
}

pq::linear_stats correlated_stats(unsigned seed) {
  pq::linear_stats s("correlated", cols);
  const auto x = pq::test::correlated_activations(tokens, cols, seed);
  s.add(x.data(), tokens);
  return s;
}

// Textbook GPTQ, one column at a time with immediate updates, in fp64, from an explicit inverse: the
// independent reference for the blocked implementation. Group parameters come from the current weights of
// the group's (original-order) columns when the first of them is processed.
template <pq::Format F>
std::vector<typename F::code_type> reference_gptq(const std::vector<float>& w, const pq::linear_stats& s,
                                                  float damping, bool act_order, float g) {
  const index_t gw = pq::group_width<F>(cols), gpr = pq::groups_per_row<F>(cols);
  Eigen::MatrixXd H = s.hessian();
  for (index_t j = 0; j < cols; ++j)
    if (H(j, j) == 0.0) H(j, j) = 1.0;
  std::vector<index_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) std::stable_sort(perm.begin(), perm.end(), [&](index_t a, index_t b) { return H(a, a) > H(b, b); });
  const double lambda = damping * H.diagonal().mean();
  Eigen::MatrixXd P(cols, cols);
  for (index_t i = 0; i < cols; ++i)
    for (index_t j = 0; j < cols; ++j) P(i, j) = H(perm[i], perm[j]) + (i == j ? lambda : 0.0);
  const Eigen::MatrixXd Hinv = P.inverse();
  const Eigen::MatrixXd U = Hinv.llt().matrixU();
  std::vector<typename F::code_type> codes(rows * cols);
  for (index_t r = 0; r < rows; ++r) {
    std::vector<double> cur(cols);  // processing order
    for (index_t k = 0; k < cols; ++k) cur[k] = w[r * cols + perm[k]];
    std::vector<pq::qparams> p(gpr);
    std::vector<bool> set(gpr, false);
    for (index_t k = 0; k < cols; ++k) {
      const index_t c = perm[k], grp = c / gw;
      if (!set[grp]) {
        float lo = 1e30f, hi = -1e30f;
        for (index_t l = 0; l < cols; ++l)
          if (perm[l] / gw == grp) {
            lo = std::min(lo, static_cast<float>(cur[l]));
            hi = std::max(hi, static_cast<float>(cur[l]));
          }
        p[grp] = F::group_params(lo, hi, g);
        set[grp] = true;
      }
      const auto code = F::quantize(static_cast<float>(cur[k]), p[grp]);
      codes[r * cols + c] = static_cast<typename F::code_type>(code);
      const double err = (cur[k] - F::dequantize(code, p[grp])) / U(k, k);
      for (index_t l = k + 1; l < cols; ++l) cur[l] -= err * U(k, l);
    }
  }
  return codes;
}

template <class F>
float unit_scale(const std::vector<float>& w) {
  return F::tensor_scale(pq::weight_amax(w));
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("GPTQ against RTN and the textbook reference", F, gptq_suite) {
  const auto w = pq::test::weights(rows, cols, 11);
  const float g = unit_scale<F>(w);
  const auto rtn = pq::quantize_rtn<F>(w, rows, cols, g);

  SUBCASE("H = I: no error is spread, so GPTQ is RTN exactly") {
    const auto s = diagonal_stats(std::vector<double>(cols, 1.0));
    const auto q = pq::quantize_gptq<F>(w, rows, cols, g, pq::make_gptq_factor(s, 0.01f, false), 128, 2);
    CHECK(q.codes == rtn.codes);
    CHECK(q.params == rtn.params);
  }
  SUBCASE("H = I, no damping: GPTQ with the group sweep is the scale sweep of RTN with unit weights") {
    const auto s = diagonal_stats(std::vector<double>(cols, 1.0));
    const auto q = pq::quantize_gptq<F>(w, rows, cols, g, pq::make_gptq_factor(s, 0.0f, false), 128, 2,
                                        pq::sweep_options{});
    auto swept = rtn;
    pq::scale_sweep<F>(w, std::vector<double>(cols, 1.0), swept);
    CHECK(q.codes == swept.codes);
    CHECK(q.params == swept.params);
  }
  SUBCASE("diagonal H with act-order: permuted processing, groups still of original columns, RTN exactly") {
    std::vector<double> d(cols);
    std::mt19937 rng(5);
    for (auto& v : d) v = std::uniform_real_distribution<double>(0.1, 10.0)(rng);
    const auto s = diagonal_stats(d);
    const auto f = pq::make_gptq_factor(s, 0.01f, true);
    CHECK_FALSE(std::is_sorted(f.order.begin(), f.order.end()));
    const auto q = pq::quantize_gptq<F>(w, rows, cols, g, f, 32, 1);
    CHECK(q.codes == rtn.codes);
    CHECK(q.params == rtn.params);
  }
  SUBCASE("correlated activations: blocked GPTQ matches the reference and beats RTN, with and without act-order") {
    const auto s = correlated_stats(21);
    const pq::cost_hessian h(s);
    const double e_rtn = pq::output_error(w, pq::dequantize(rtn), rows, cols, h);
    for (bool act : {false, true}) {
      CAPTURE(act);
      const auto f = pq::make_gptq_factor(s, 0.01f, act);
      const auto ref = reference_gptq<F>(w, s, 0.01f, act, g);
      for (index_t block : {index_t{1}, index_t{48}, index_t{128}}) {
        CAPTURE(block);
        const auto q = pq::quantize_gptq<F>(w, rows, cols, g, f, block, 2);
        std::size_t same = 0;
        for (std::size_t i = 0; i < ref.size(); ++i) same += q.codes[i] == ref[i];
        CHECK(static_cast<double>(same) >= 0.97 * static_cast<double>(ref.size()));  // fp32 vs fp64 ties
        const double e = pq::output_error(w, pq::dequantize(q), rows, cols, h);
        CHECK(e < e_rtn);
      }
    }
  }
  SUBCASE("a fixed thread count is deterministic") {
    const auto s = correlated_stats(22);
    const auto f = pq::make_gptq_factor(s, 0.01f, true);
    const auto a = pq::quantize_gptq<F>(w, rows, cols, g, f, 64, 2);
    const auto b = pq::quantize_gptq<F>(w, rows, cols, g, f, 64, 2);
    CHECK(a.codes == b.codes);
    CHECK(a.params == b.params);
  }
}
TEST_CASE_TEMPLATE_APPLY(gptq_suite, pq::test::as_tuple<pq::roundable_formats>::type);

TEST_CASE("the factor is the upper Cholesky factor of the damped inverse, dead columns included") {
  auto s = correlated_stats(23);
  for (index_t j = 0; j < cols; ++j) s.H(j, 7) = s.H(7, j) = 0.0;  // channel 7 never active
  s.x2_sum[7] = 0.0;
  const auto f = pq::make_gptq_factor(s, 0.05f, false);
  Eigen::MatrixXd H = s.hessian();
  H(7, 7) = 1.0;
  H.diagonal().array() += 0.05 * H.diagonal().mean();
  const Eigen::MatrixXd UtU = f.U.cast<double>().transpose() * f.U.cast<double>();
  const Eigen::MatrixXd I = UtU * H;
  CHECK((I - Eigen::MatrixXd::Identity(cols, cols)).cwiseAbs().maxCoeff() < 1e-3);
  CHECK(f.U.triangularView<Eigen::StrictlyLower>().toDenseMatrix().isZero());
}

TEST_CASE("a Hessian that stays indefinite after damping is an error naming the Linear") {
  pq::linear_stats s("model.layers.2.mlp.down_proj", 4);
  s.H.setIdentity();
  s.H(1, 0) = 10.0;  // lower triangle: H = [[1,10],[10,1]] block, indefinite
  s.count = 1;
  CHECK_THROWS_WITH_AS(pq::make_gptq_factor(s, 0.01f, false), doctest::Contains("model.layers.2.mlp.down_proj"),
                       pq::quant_error);
}
