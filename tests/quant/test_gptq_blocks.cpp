// The device's blocking of GPTQ (quant/gptq_blocks.hpp: per-row block pass, group tables, trailing GEMM) run
// on the host against quantize_gptq, the reference: codes and group parameters, for every format, with and
// without act-order, dead columns and the in-loop sweep, several block sizes, random and real layers.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>

#include <pq/formats/bundle.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/gptq.hpp>
#include <pq/quant/gptq_blocks.hpp>
#include <pq/quant/quantize_linear.hpp>

#include "real_layer0.hpp"
#include "synthetic.hpp"

using pq::index_t;

namespace {
// Share of equal codes and equal group parameters between two roundings of the same Linear.
template <class F>
std::pair<double, double> blocks_agreement(const pq::quantized_matrix<F>& a, const pq::quantized_matrix<F>& b) {
  std::size_t codes = 0, params = 0;
  for (std::size_t i = 0; i < a.codes.size(); ++i) codes += a.codes[i] == b.codes[i];
  for (std::size_t i = 0; i < a.params.size(); ++i) params += a.params[i] == b.params[i];
  return {static_cast<double>(codes) / static_cast<double>(a.codes.size()),
          static_cast<double>(params) / static_cast<double>(a.params.size())};
}

pq::linear_stats blocks_stats(index_t cols, unsigned seed, bool dead_columns) {
  pq::linear_stats s("blocks", cols);
  auto x = pq::test::correlated_activations(3 * cols, cols, seed);
  if (dead_columns)
    for (index_t t = 0; t < 3 * cols; ++t)
      for (index_t j : {index_t{3}, cols / 2, cols - 1}) x[static_cast<std::size_t>(t * cols + j)] = 0.0f;
  s.add(x.data(), 3 * cols);
  return s;
}
}  // namespace

TEST_CASE("gptq tables: one first column per group, at the group's least processing position") {
  const std::vector<index_t> identity{0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<float> diag(8, 0.5f);
  const auto t = pq::make_gptq_tables(identity, 4, diag);
  CHECK(t.first == std::vector<std::uint8_t>{1, 0, 0, 0, 1, 0, 0, 0});
  CHECK(t.saliency[5] == doctest::Approx(4.0));
  const std::vector<index_t> order{5, 1, 7, 0, 2, 4, 3, 6};  // position of column c: 3 1 4 6 5 0 7 2
  const auto u = pq::make_gptq_tables(order, 4, diag);
  CHECK(u.position == std::vector<index_t>{3, 1, 4, 6, 5, 0, 7, 2});
  // group 0 = columns 0..3 at positions {3,1,4,6}: first at 1; group 1 = columns 4..7 at {5,0,7,2}: first at 0
  CHECK(u.first == std::vector<std::uint8_t>{1, 1, 0, 0, 0, 0, 0, 0});
}

// The two roundings add the same fp32 products in different orders (one GEMM per block against a rank-1 update
// per column), so a value within an ulp of a decision boundary may round either way, and GPTQ's error feedback
// then carries the difference along the rest of its row. How far that goes is a property of the format, not of
// the blocking: perturbing 24 of these weights by one ulp and rerunning quantize_gptq itself leaves 99.69% of
// FP8_CHANNEL's codes equal (its fine grid has the most near-ties; 99.98% for MXFP8, 100% for the 4-bit
// formats), and one machine's GEMM ordering gave exactly that 99.69% here. The bounds sit below that floor
// and above every wrong indexing tried: without the pending in-block errors in a group's parameters, NVFP4
// keeps 84-97% of its codes, MXFP4 and INT4 94-99.5%, with output errors off by 0.1-4%.
constexpr double min_equal_codes = 0.995, max_error_change = 1e-3;

TEST_CASE_TEMPLATE_DEFINE("the device's blocked GPTQ equals quantize_gptq on the host", F, gptq_blocks_suite) {
  constexpr index_t rows = 24, cols = 256;
  const auto w = pq::test::weights(rows, cols, 31);
  const float g = F::tensor_scale(pq::weight_amax(w));
  for (bool dead : {false, true})
    for (bool act : {false, true}) {
      const auto s = blocks_stats(cols, 41, dead);
      const auto f = pq::make_gptq_factor(s, 0.01f, act);
      const pq::cost_hessian h(s);
      for (index_t block : {index_t{1}, index_t{48}, index_t{128}, index_t{1000}})
        for (bool sweep : {false, true}) {
          CAPTURE(dead);
          CAPTURE(act);
          CAPTURE(block);
          CAPTURE(sweep);
          const auto opt = sweep ? std::optional<pq::sweep_options>(pq::sweep_options{}) : std::nullopt;
          const auto ref = pq::quantize_gptq<F>(w, rows, cols, g, f, block, 2, opt);
          const auto got = pq::quantize_gptq_blocked<F>(w, rows, cols, g, f, block, 2, opt);
          const auto [codes, params] = blocks_agreement(ref, got);
          CHECK(codes >= min_equal_codes);
          CHECK(params >= 0.99);
          const double e_ref = pq::output_error(w, pq::dequantize(ref), rows, cols, h, 2);
          const double e_got = pq::output_error(w, pq::dequantize(got), rows, cols, h, 2);
          CHECK(std::abs(e_got - e_ref) <= max_error_change * e_ref);
          CHECK(got.tensor_scale == ref.tensor_scale);
        }
    }
}
TEST_CASE_TEMPLATE_APPLY(gptq_blocks_suite, pq::test::as_tuple<pq::roundable_formats>::type);

TEST_CASE_TEMPLATE("the device's blocked GPTQ on real layers of tiny-llama-code", F, pq::NVFP4, pq::INT4_G128,
                   pq::FP8_CHANNEL) {
  const std::string dir = std::string(PQ_MODELS_DIR) + "/tiny-llama-code";
  if (!std::filesystem::exists(dir + "/tokens.safetensors")) {
    MESSAGE("skipped: " << dir << " is absent");
    return;
  }
  const pq::test::layer0 L(dir, 4, 1, {"self_attn.q_proj", "mlp.up_proj"});
  for (const auto& l : L.linears) {
    CAPTURE(l.name);
    const float g = F::tensor_scale(pq::weight_amax(l.w));
    const auto f = pq::make_gptq_factor(*l.calib, 0.01f, true);
    const auto ref = pq::quantize_gptq<F>(l.w, l.rows, l.cols, g, f, 128, 2, pq::sweep_options{});
    const auto got = pq::quantize_gptq_blocked<F>(l.w, l.rows, l.cols, g, f, 128, 2, pq::sweep_options{});
    const auto [codes, params] = blocks_agreement(ref, got);
    CHECK(codes >= 0.999);
    const pq::cost_hessian h(*l.calib);
    const double e_ref = pq::output_error(l.w, pq::dequantize(ref), l.rows, l.cols, h, 2);
    const double e_got = pq::output_error(l.w, pq::dequantize(got), l.rows, l.cols, h, 2);
    CHECK(std::abs(e_got - e_ref) <= 0.005 * e_ref);
  }
}

TEST_CASE("quantize_linear: the cuda backend without an installed device rounding is an error naming the format") {
  constexpr index_t rows = 4, cols = 64;
  const auto w = pq::test::weights(rows, cols, 3);
  const auto s = blocks_stats(cols, 4, false);
  const pq::linear_input in{"model.layers.0.mlp.up_proj", w, rows, cols, &s, std::nullopt};
  REQUIRE_FALSE(static_cast<bool>(pq::device_quantize_linear<pq::MXFP4>));  // a host-only program installs none
  CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::MXFP4>(in, {}, nullptr, pq::backend::cuda),
                       doctest::Contains("MXFP4"), pq::quant_error);
  CHECK_NOTHROW(pq::quantize_linear<pq::MXFP4>(in, {}, nullptr, pq::backend::host));
}
